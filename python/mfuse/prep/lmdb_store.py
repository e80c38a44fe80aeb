"""Frame stores: LMDB databases of Caffe ``Datum`` s (build and read) and the plain frame-folder twin.

Layout (docs/conventions.md): one database per (dataset, split, subset, modality) at
``<out>/lmdb/split<k>_<subset>_<modality>/``, modality in ``rgb``, ``flow``, ``mag``.

- Key ``<video_id>/<t:05d>`` (UTF-8, t 1-based as the file number) -> serialized ``caffe.Datum`` with
  ``encoded = true``, ``data`` = the JPEG file's bytes, ``label`` and the decoded image's
  ``channels/height/width`` (rgb 3 x H x W, flow 1 x H x 2W, mag 1 x H x W).
- Key ``__index__`` -> UTF-8 JSON of :class:`StoreIndex`: ``{"version": 1, "dataset", "split",
  "subset", "modality", "classes": [...], "videos": [{"video_id", "label", "num_frames"}],
  "extract_settings": {...}}``; ``num_frames`` counts the images of that modality (N for rgb, N-1
  for flow and mag).

The folder mode keeps the images in ``<out>/frames/<video_id>/`` and writes the same index as
``<out>/lists/split<k>_<subset>_<modality>.json`` (plus ``"frames_root"``, relative to the JSON file).

Reader API (shared by both storage modes, used by the data layer and the evaluation)::

    store = LmdbFrameStore("data/ucf101/lmdb/split1_test_rgb")       # or
    store = FolderFrameStore("data/ucf101/lists/split1_test_rgb.json")  # or
    store = open_frame_store("data/ucf101", split=1, subset="test", modality="rgb", storage="lmdb")
    store.index.videos            # [VideoEntry(video_id, label, num_frames)], sorted by video id
    store.num_frames(video_id)    # images of this modality, t runs 1..num_frames
    store.get_bytes(video_id, t)  # the JPEG bytes
    store.get_image(video_id, t)  # uint8: rgb (H, W, 3) BGR; flow (H, 2W) x|y; mag (H, W)

Stores open their files lazily in the process that reads them, so they may be created before a
``fork`` or pickled into worker processes (LMDB environments are never used across ``fork``).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType

import cv2
import lmdb
import numpy as np

from multiprocessing.pool import Pool

from .parallel import imap_progress
from mfuse.fileio import write_atomic

INDEX_KEY = b"__index__"
INDEX_VERSION = 1
MODALITIES = ("rgb", "flow", "mag")
IMAGE_KIND = {"rgb": "img", "flow": "flow", "mag": "mag"}


def caffe_pb2() -> ModuleType:
    """Caffe's protobuf module (``caffe.proto.caffe_pb2``), imported on first use.

    Importing it runs ``caffe/__init__``, so pycaffe must be built (tools/setup.sh).
    """
    try:
        from caffe.proto import caffe_pb2 as module
    except ImportError as error:
        raise ImportError("the LMDB store needs pycaffe's caffe.proto.caffe_pb2 (run tools/setup.sh, "
                          f"or put a built pycaffe on PYTHONPATH): {error}") from error
    return module


def database_name(split: int, subset: str, modality: str) -> str:
    """``split<k>_<subset>_<modality>``: the folder name of a database (and of a folder index)."""
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    return f"split{split}_{subset}_{modality}"


def frame_key(video_id: str, t: int) -> bytes:
    """The LMDB key of image ``t`` (1-based) of ``video_id``."""
    return f"{video_id}/{t:05d}".encode("utf-8")


def image_shape(modality: str, height: int, width: int) -> tuple[int, int, int]:
    """``(channels, height, width)`` of a decoded image of ``modality`` for frames of ``height x width``."""
    return {"rgb": (3, height, width), "flow": (1, height, 2 * width), "mag": (1, height, width)}[modality]


def make_datum(jpeg: bytes, label: int, shape: tuple[int, int, int]) -> bytes:
    """Serialized encoded ``Datum`` holding ``jpeg`` with ``label`` and ``shape = (C, H, W)``."""
    datum = caffe_pb2().Datum(channels=shape[0], height=shape[1], width=shape[2], data=jpeg,
                              label=int(label), encoded=True)
    return datum.SerializeToString()


def parse_datum(value: bytes) -> tuple[bytes, int, tuple[int, int, int]]:
    """``(jpeg bytes, label, (C, H, W))`` of a serialized encoded ``Datum``."""
    datum = caffe_pb2().Datum.FromString(value)
    if not datum.encoded:
        raise ValueError("Datum is not encoded (expected JPEG bytes with encoded = true)")
    return datum.data, datum.label, (datum.channels, datum.height, datum.width)


def decode_image(jpeg: bytes, modality: str) -> np.ndarray:
    """Decode JPEG bytes: rgb -> ``(H, W, 3)`` BGR uint8, flow/mag -> ``(H, W')`` uint8."""
    flag = cv2.IMREAD_COLOR if modality == "rgb" else cv2.IMREAD_GRAYSCALE
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), flag)
    if image is None:
        raise ValueError(f"cannot decode a {modality} JPEG of {len(jpeg)} bytes")
    return image


@dataclass(frozen=True)
class VideoEntry:
    """One video of a store: id, 0-based label and the number of images of the store's modality."""

    video_id: str
    label: int
    num_frames: int


@dataclass
class StoreIndex:
    """The index of one (dataset, split, subset, modality) store."""

    dataset: str
    split: int
    subset: str
    modality: str
    classes: list[str]
    videos: list[VideoEntry]
    extract_settings: dict = field(default_factory=dict)

    def __post_init__(self):
        self._by_id = {v.video_id: v for v in self.videos}

    def video(self, video_id: str) -> VideoEntry:
        """The entry of ``video_id``; ``KeyError`` naming it if the store does not have it."""
        try:
            return self._by_id[video_id]
        except KeyError:
            raise KeyError(f"video {video_id!r} is not in the {self.modality} store of "
                           f"{self.dataset} split {self.split} {self.subset}") from None

    def to_json(self) -> dict:
        return {"version": INDEX_VERSION, "dataset": self.dataset, "split": self.split,
                "subset": self.subset, "modality": self.modality, "classes": list(self.classes),
                "videos": [asdict(v) for v in self.videos], "extract_settings": self.extract_settings}

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), ensure_ascii=False, sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, data: dict) -> "StoreIndex":
        if data.get("version") != INDEX_VERSION:
            raise ValueError(f"unsupported frame-store index version {data.get('version')!r}")
        return cls(dataset=data["dataset"], split=int(data["split"]), subset=data["subset"],
                   modality=data["modality"], classes=list(data["classes"]),
                   videos=[VideoEntry(v["video_id"], int(v["label"]), int(v["num_frames"]))
                           for v in data["videos"]],
                   extract_settings=data.get("extract_settings", {}))


class _FrameStore:
    """Shared part of the two stores: index look-ups and decoding."""

    index: StoreIndex

    @property
    def modality(self) -> str:
        return self.index.modality

    def num_frames(self, video_id: str) -> int:
        return self.index.video(video_id).num_frames

    def _check_frame(self, video_id: str, t: int) -> None:
        n = self.num_frames(video_id)
        if not 1 <= t <= n:
            raise IndexError(f"{self.modality} image {t} of video {video_id!r} is out of range 1..{n}")

    def get_bytes(self, video_id: str, t: int) -> bytes:
        raise NotImplementedError

    def get_image(self, video_id: str, t: int) -> np.ndarray:
        """Decoded image ``t`` (1-based) of ``video_id``: see the module docstring for shapes."""
        return decode_image(self.get_bytes(video_id, t), self.modality)


# One read-only environment per database and process: LMDB allows a path to be opened only once per
# process, and an environment must not be used across fork().
_READ_ENVS: dict[str, tuple[lmdb.Environment, int]] = {}


def _open_readonly(path: Path) -> lmdb.Environment:
    key = os.path.realpath(path)
    cached = _READ_ENVS.get(key)
    if cached is not None and cached[1] == os.getpid():
        return cached[0]
    if cached is not None:
        cached[0].close()        # inherited through fork(): unusable here, and it blocks reopening
    env = lmdb.open(key, readonly=True, lock=False, readahead=False, max_readers=512)
    _READ_ENVS[key] = (env, os.getpid())
    return env


def _close_readonly(path: Path) -> None:
    cached = _READ_ENVS.pop(os.path.realpath(path), None)
    if cached is not None:
        cached[0].close()


class LmdbFrameStore(_FrameStore):
    """Read-only access to one LMDB database built by :func:`build_lmdb`.

    Stores of the same database share one environment per process; ``close()`` closes it for all.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        if not (self.path / "data.mdb").is_file():
            raise FileNotFoundError(f"no LMDB database at {self.path}")
        raw = self._get(INDEX_KEY)
        if raw is None:
            raise ValueError(f"LMDB database {self.path} has no {INDEX_KEY.decode()} key (unfinished build?)")
        self.index = StoreIndex.from_json(json.loads(raw))

    def _get(self, key: bytes) -> bytes | None:
        with _open_readonly(self.path).begin(buffers=False) as txn:
            return txn.get(key)

    def get_bytes(self, video_id: str, t: int) -> bytes:
        """The JPEG bytes of image ``t`` of ``video_id`` (one LMDB ``get``)."""
        self._check_frame(video_id, t)
        value = self._get(frame_key(video_id, t))
        if value is None:
            raise KeyError(f"{self.path}: key {frame_key(video_id, t).decode()!r} is missing")
        return parse_datum(value)[0]

    def close(self) -> None:
        _close_readonly(self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FolderFrameStore(_FrameStore):
    """The frame-folder twin of :class:`LmdbFrameStore`, reading a ``lists/<name>.json`` index."""

    def __init__(self, index_path: Path):
        self.index_path = Path(index_path)
        data = json.loads(self.index_path.read_text(encoding="utf-8"))
        self.frames_root = (self.index_path.parent / data["frames_root"]).resolve()
        self.index = StoreIndex.from_json(data)

    def image_path(self, video_id: str, t: int) -> Path:
        """``<frames_root>/<video_id>/<kind>_<t:05d>.jpg``."""
        return self.frames_root / video_id / f"{IMAGE_KIND[self.modality]}_{t:05d}.jpg"

    def get_bytes(self, video_id: str, t: int) -> bytes:
        self._check_frame(video_id, t)
        return self.image_path(video_id, t).read_bytes()

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_frame_store(out_root: Path, split: int, subset: str, modality: str, storage: str = "lmdb"
                     ) -> LmdbFrameStore | FolderFrameStore:
    """The store of one (split, subset, modality) under a prepared dataset folder ``out_root``."""
    name = database_name(split, subset, modality)
    if storage == "lmdb":
        return LmdbFrameStore(Path(out_root) / "lmdb" / name)
    if storage == "folder":
        return FolderFrameStore(Path(out_root) / "lists" / f"{name}.json")
    raise ValueError(f"storage must be 'lmdb' or 'folder', got {storage!r}")


# --------------------------------------------------------------------------------------- writers

BATCH_BYTES = 64 << 20
INTENT_NAME = "build.json"


@dataclass(frozen=True)
class VideoSource:
    """Where the images of one video of a store come from: its frame folder and frame size."""

    video_dir: Path
    height: int
    width: int


def write_folder_index(path: Path, index: StoreIndex, frames_root: Path) -> None:
    """Write the frame-folder index of :class:`FolderFrameStore` at ``path`` (atomically)."""
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
                _put_batch(env, batch)
                batch, batch_bytes = [], 0
        batch.append((INDEX_KEY, index_bytes))
        _put_batch(env, batch)
        env.sync(True)
    finally:
        env.close()
    (partial / INTENT_NAME).unlink()
    _close_readonly(db_path)
    if db_path.exists():
        shutil.rmtree(db_path)
    os.replace(partial, db_path)
    stats["bytes"] = _folder_bytes(db_path)
    return stats


def _read_video_items(job: tuple[VideoEntry, VideoSource, str]) -> list[tuple[bytes, bytes]]:
    """``[(key, serialized Datum)]`` of every image of one video (runs in a worker)."""
    entry, source, modality = job
    shape = image_shape(modality, source.height, source.width)
    kind = IMAGE_KIND[modality]
    items = []
    for t in range(1, entry.num_frames + 1):
        jpeg = (source.video_dir / f"{kind}_{t:05d}.jpg").read_bytes()
        items.append((frame_key(entry.video_id, t), make_datum(jpeg, entry.label, shape)))
    return items


def _put_batch(env: lmdb.Environment, batch: list[tuple[bytes, bytes]]) -> None:
    """Write ``batch`` in one transaction, doubling the map size while it does not fit."""
    while True:
        try:
            with env.begin(write=True) as txn:
                for key, value in batch:
                    txn.put(key, value)
            return
        except lmdb.MapFullError:
            env.set_mapsize(env.info()["map_size"] * 2)


def _estimate_map_size(index: StoreIndex, sources: dict[str, VideoSource]) -> int:
    """Twice the image bytes, estimated from each video's first image, and at least 64 MiB."""
    kind = IMAGE_KIND[index.modality]
    estimate = 0
    for video in index.videos:
        first = sources[video.video_id].video_dir / f"{kind}_00001.jpg"
        estimate += (first.stat().st_size + 256) * video.num_frames
    return max(64 << 20, 2 * estimate + (16 << 20))


def _is_complete_database(db_path: Path, index_bytes: bytes, total_images: int) -> bool:
    if not (db_path / "data.mdb").is_file():
        return False
    with _open_readonly(db_path).begin() as txn:
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
