"""Writing frame stores: LMDB databases of Caffe ``Datum`` s and frame-folder index files.

The format is :mod:`mfuse.stores.format`; :mod:`mfuse.stores.reader` reads what these functions write.

- :func:`build_lmdb`: one database ``<out>/lmdb/split<k>_<subset>_<modality>/`` from extracted frame folders,
  resumable after a kill, replaced atomically when done;
- :func:`write_folder_index`: the ``<out>/lists/<name>.json`` index of the frame-folder mode.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from multiprocessing.pool import Pool
from pathlib import Path

import lmdb

from mfuse.fileio import write_atomic
from mfuse.prep.parallel import imap_progress
from mfuse.stores.format import (INDEX_KEY, StoreIndex, VideoEntry, frame_key, image_shape, make_datum,
                                 modality_image_name)
from mfuse.stores.reader import FrameStoreError, close_readonly, open_readonly

BATCH_BYTES = 64 << 20
INTENT_NAME = "build.json"


@dataclass(frozen=True)
class VideoSource:
    """Where the images of one video of a store come from: its frame folder and frame size."""

    video_dir: Path
    height: int
    width: int


def write_folder_index(path: Path, index: StoreIndex, frames_root: Path) -> None:
    """Write the frame-folder index of :class:`mfuse.stores.reader.FolderFrameStore` at ``path`` (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = index.to_json()
    data["frames_root"] = os.path.relpath(Path(frames_root).resolve(), path.parent.resolve())
    write_atomic(path, json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True).encode("utf-8"))


def build_lmdb(db_path: Path, index: StoreIndex, sources: dict[str, VideoSource], pool: Pool | None = None,
               progress: bool = True) -> dict:
    """Build (or finish, or keep) the LMDB database ``db_path`` holding every image of ``index``.

    ``sources[video_id]`` gives each video's frame folder and frame size; the files are read on
    ``pool`` (see :func:`mfuse.prep.parallel.worker_pool`; None reads inline). The database is written
    into ``<db_path>.partial/`` in transactions that each hold whole videos, so after a kill the
    next call skips the videos already committed; ``__index__`` is written last and the folder is
    then renamed to ``db_path``. An existing ``db_path`` with the same index and entry count is kept
    as it is. The map size is estimated from the files and doubled whenever it runs out.

    Returns ``{"videos": n, "images": n, "bytes": n, "skipped": bool}``.
    """
    db_path = Path(db_path)
    index_bytes = index.to_bytes()
    total_images = sum(v.num_frames for v in index.videos)
    stats = {"videos": len(index.videos), "images": total_images, "bytes": 0, "skipped": False}
    if _is_complete_database(db_path, index_bytes, total_images):
        stats["skipped"] = True
        stats["bytes"] = _folder_bytes(db_path)
        return stats
    partial = db_path.with_name(db_path.name + ".partial")
    _reset_partial_if_stale(partial, index_bytes)
    env = lmdb.open(os.fspath(partial), map_size=_estimate_map_size(index, sources), subdir=True,
                    meminit=False, map_async=False)
    try:
        with env.begin() as txn:
            todo = [v for v in index.videos if txn.get(frame_key(v.video_id, 1)) is None]
        jobs = [(v, sources[v.video_id], index.modality) for v in todo]
        batch: list[tuple[bytes, bytes]] = []
        batch_bytes = 0
        for items in imap_progress(_read_video_items, jobs, pool, f"lmdb {db_path.name}",
                                   progress=progress):
            batch.extend(items)
            batch_bytes += sum(len(value) for _, value in items)
            if batch_bytes >= BATCH_BYTES:
                _put_batch(env, batch, db_path)
                batch, batch_bytes = [], 0
        batch.append((INDEX_KEY, index_bytes))
        _put_batch(env, batch, db_path)
        env.sync(True)
    finally:
        env.close()
    (partial / INTENT_NAME).unlink()
    close_readonly(db_path)
    if db_path.exists():
        shutil.rmtree(db_path)
    os.replace(partial, db_path)
    stats["bytes"] = _folder_bytes(db_path)
    return stats


def _read_video_items(job: tuple[VideoEntry, VideoSource, str]) -> list[tuple[bytes, bytes]]:
    """``[(key, serialized Datum)]`` of every image of one video (runs in a worker)."""
    entry, source, modality = job
    shape = image_shape(modality, source.height, source.width)
    items = []
    for t in range(1, entry.num_frames + 1):
        jpeg = (source.video_dir / modality_image_name(modality, t)).read_bytes()
        items.append((frame_key(entry.video_id, t), make_datum(jpeg, entry.label, shape)))
    return items


def _put_batch(env: lmdb.Environment, batch: list[tuple[bytes, bytes]], db_path: Path) -> None:
    """Write ``batch`` in one transaction, doubling the map size while it does not fit.

    Raises OSError naming the database being built (``db_path``) and the keys of the transaction when LMDB
    fails otherwise (a full disk shows as ``mdb_txn_commit: Input/output error`` or ``No space left``).
    """
    while True:
        try:
            with env.begin(write=True) as txn:
                for key, value in batch:
                    txn.put(key, value)
            return
        except lmdb.MapFullError:
            env.set_mapsize(env.info()["map_size"] * 2)
        except lmdb.Error as error:
            keys = [key.decode("utf-8", "replace") for key, _ in batch]
            raise OSError(f"writing the LMDB database {db_path} failed at the transaction of keys {keys[0]!r} .. "
                          f"{keys[-1]!r} ({len(keys)} images, {sum(len(v) for _, v in batch) >> 20} MiB): {error} "
                          f"(disk full? free space under {db_path.parent})") from error


def _estimate_map_size(index: StoreIndex, sources: dict[str, VideoSource]) -> int:
    """Twice the image bytes, estimated from each video's first image, and at least 64 MiB."""
    estimate = 0
    for video in index.videos:
        first = sources[video.video_id].video_dir / modality_image_name(index.modality, 1)
        estimate += (first.stat().st_size + 256) * video.num_frames
    return max(64 << 20, 2 * estimate + (16 << 20))


def _is_complete_database(db_path: Path, index_bytes: bytes, total_images: int) -> bool:
    """True when ``db_path`` holds a finished build of the same index; a damaged one (truncated) is not."""
    if not (db_path / "data.mdb").is_file():
        return False
    try:
        env = open_readonly(db_path)
    except FrameStoreError:
        return False
    with env.begin() as txn:
        return txn.get(INDEX_KEY) == index_bytes and txn.stat()["entries"] == total_images + 1


def _reset_partial_if_stale(partial: Path, index_bytes: bytes) -> None:
    """Keep ``partial`` only if it was started for the same index; otherwise start it afresh."""
    intent = partial / INTENT_NAME
    if partial.exists() and (not intent.is_file() or intent.read_bytes() != index_bytes):
        shutil.rmtree(partial)
    if not partial.exists():
        partial.mkdir(parents=True)
        write_atomic(intent, index_bytes)


def _folder_bytes(path: Path) -> int:
    """Bytes used on disk by the files of ``path`` (LMDB files are sparse)."""
    return sum(f.stat().st_blocks * 512 for f in Path(path).rglob("*") if f.is_file())
