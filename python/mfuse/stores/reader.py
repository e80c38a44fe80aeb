"""Reading frame stores: the LMDB databases and the frame-folder twin written by :mod:`mfuse.prep`.

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
The format: :mod:`mfuse.stores.format`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import lmdb
import numpy as np

from mfuse.conventions import STORAGES
from mfuse.stores.format import (INDEX_KEY, StoreIndex, database_name, decode_image, frame_key,
                                 modality_image_name, parse_datum)


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

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# One read-only environment per database and process: LMDB allows a path to be opened only once per
# process, and an environment must not be used across fork().
_READ_ENVS: dict[str, tuple[lmdb.Environment, int]] = {}


def open_readonly(path: Path) -> lmdb.Environment:
    """The read-only environment of the database at ``path`` in this process (opened once, shared)."""
    key = os.path.realpath(path)
    cached = _READ_ENVS.get(key)
    if cached is not None and cached[1] == os.getpid():
        return cached[0]
    if cached is not None:
        cached[0].close()        # inherited through fork(): unusable here, and it blocks reopening
    env = lmdb.open(key, readonly=True, lock=False, readahead=False, max_readers=512)
    _READ_ENVS[key] = (env, os.getpid())
    return env


def close_readonly(path: Path) -> None:
    """Closes this process's read-only environment of ``path`` (before a writer replaces the database)."""
    cached = _READ_ENVS.pop(os.path.realpath(path), None)
    if cached is not None:
        cached[0].close()


class LmdbFrameStore(_FrameStore):
    """Read-only access to one LMDB database built by :func:`mfuse.prep.lmdb_store.build_lmdb`.

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
        with open_readonly(self.path).begin(buffers=False) as txn:
            return txn.get(key)

    def get_bytes(self, video_id: str, t: int) -> bytes:
        """The JPEG bytes of image ``t`` of ``video_id`` (one LMDB ``get``)."""
        self._check_frame(video_id, t)
        value = self._get(frame_key(video_id, t))
        if value is None:
            raise KeyError(f"{self.path}: key {frame_key(video_id, t).decode()!r} is missing")
        return parse_datum(value)[0]

    def close(self) -> None:
        close_readonly(self.path)


class FolderFrameStore(_FrameStore):
    """The frame-folder twin of :class:`LmdbFrameStore`, reading a ``lists/<name>.json`` index."""

    def __init__(self, index_path: Path):
        self.index_path = Path(index_path)
        data = json.loads(self.index_path.read_text(encoding="utf-8"))
        self.frames_root = (self.index_path.parent / data["frames_root"]).resolve()
        self.index = StoreIndex.from_json(data)

    def image_path(self, video_id: str, t: int) -> Path:
        """``<frames_root>/<video_id>/<kind>_<t:05d>.jpg``."""
        return self.frames_root / video_id / modality_image_name(self.modality, t)

    def get_bytes(self, video_id: str, t: int) -> bytes:
        self._check_frame(video_id, t)
        return self.image_path(video_id, t).read_bytes()


FrameStore = LmdbFrameStore | FolderFrameStore


def open_frame_store(out_root: Path, split: int, subset: str, modality: str, storage: str = "lmdb") -> FrameStore:
    """The store of one (split, subset, modality) under a prepared dataset folder ``out_root``."""
    name = database_name(split, subset, modality)
    if storage == "lmdb":
        return LmdbFrameStore(Path(out_root) / "lmdb" / name)
    if storage == "folder":
        return FolderFrameStore(Path(out_root) / "lists" / f"{name}.json")
    raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")


def open_frame_stores(out_root: Path, split: int, subset: str, modalities, storage: str = "lmdb"
                      ) -> dict[str, FrameStore]:
    """``{modality: store}`` of one (split, subset) for each of ``modalities``, in their order."""
    return {m: open_frame_store(out_root, split, subset, m, storage) for m in modalities}
