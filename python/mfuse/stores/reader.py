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

Damaged data fails with :class:`FrameStoreError` naming the database (or file) and the record: an LMDB whose
``data.mdb`` is shorter than its environment says (a truncated copy, which would otherwise kill the reader
with SIGBUS at the first read past the end) is refused when it is opened; a record that is not a ``Datum`` or
a JPEG that does not decode names the key, the video and the frame.
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


class FrameStoreError(ValueError):
    """A frame store that cannot be read: a damaged database or a bad record (the message names both)."""


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

    def record_name(self, video_id: str, t: int) -> str:
        """Where image ``t`` of ``video_id`` is stored, for messages (database and key, or file)."""
        raise NotImplementedError

    def get_image(self, video_id: str, t: int) -> np.ndarray:
        """Decoded image ``t`` (1-based) of ``video_id``: see the module docstring for shapes.

        Raises :class:`FrameStoreError` naming the record, the video and the frame when it does not decode.
        """
        try:
            return decode_image(self.get_bytes(video_id, t), self.modality)
        except ValueError as error:
            if isinstance(error, FrameStoreError):
                raise
            raise FrameStoreError(f"{self.record_name(video_id, t)} (video {video_id}, {self.modality} image {t}): "
                                  f"{error}") from error

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
    """The read-only environment of the database at ``path`` in this process (opened once, shared).

    Raises :class:`FrameStoreError` naming the database when it is not an LMDB database or is damaged
    (:func:`check_data_file`).
    """
    key = os.path.realpath(path)
    cached = _READ_ENVS.get(key)
    if cached is not None and cached[1] == os.getpid():
        return cached[0]
    if cached is not None:
        cached[0].close()        # inherited through fork(): unusable here, and it blocks reopening
    try:
        env = lmdb.open(key, readonly=True, lock=False, readahead=False, max_readers=512)
    except lmdb.Error as error:
        raise FrameStoreError(f"cannot open the LMDB database {path}: {error}") from error
    try:
        check_data_file(env, Path(key))
    except FrameStoreError:
        env.close()
        raise
    _READ_ENVS[key] = (env, os.getpid())
    return env


def check_data_file(env: lmdb.Environment, path: Path) -> None:
    """Raises :class:`FrameStoreError` when ``data.mdb`` of the database at ``path`` is shorter than the pages
    its environment uses (a truncated copy: reading those pages would kill the process with SIGBUS)."""
    needed = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    size = (path / "data.mdb").stat().st_size
    if size < needed:
        raise FrameStoreError(f"the LMDB database {path} is damaged: data.mdb has {size} bytes but its pages need "
                              f"{needed} (a truncated copy?); copy it again or rebuild it "
                              f"(tools/prepare.py --stages stores)")


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
        try:
            self.index = StoreIndex.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError) as error:
            raise FrameStoreError(f"LMDB database {self.path}, key {INDEX_KEY.decode()!r}: not a frame-store index "
                                  f"({type(error).__name__}: {error})") from error

    def _env(self) -> lmdb.Environment:
        env = self.__dict__.get("_open")
        if env is None or env[1] != os.getpid():
            env = self._open = (open_readonly(self.path), os.getpid())
        return env[0]

    def _get(self, key: bytes) -> bytes | None:
        with self._env().begin(buffers=False) as txn:
            return txn.get(key)

    def record_name(self, video_id: str, t: int) -> str:
        return f"LMDB database {self.path}, key {frame_key(video_id, t).decode()!r}"

    def get_bytes(self, video_id: str, t: int) -> bytes:
        """The JPEG bytes of image ``t`` of ``video_id`` (one LMDB ``get``)."""
        self._check_frame(video_id, t)
        value = self._get(frame_key(video_id, t))
        if value is None:
            raise KeyError(f"{self.record_name(video_id, t)} is missing (video {video_id}, {self.modality} image {t})")
        try:
            return parse_datum(value)[0]
        except ValueError as error:
            raise FrameStoreError(f"{self.record_name(video_id, t)} (video {video_id}, {self.modality} image {t}): "
                                  f"{error}") from error

    def close(self) -> None:
        self.__dict__.pop("_open", None)
        close_readonly(self.path)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_open", None)           # an environment belongs to the process that opened it
        return state


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

    def record_name(self, video_id: str, t: int) -> str:
        return f"image file {self.image_path(video_id, t)}"

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
