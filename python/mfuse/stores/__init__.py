"""Frame stores: the format written by :mod:`mfuse.prep.lmdb_store` (``format``) and the reader used by the data
layer and the evaluation (``reader``)."""
from __future__ import annotations

from mfuse.stores.format import INDEX_KEY, StoreIndex, VideoEntry, database_name, decode_image, frame_key
from mfuse.stores.reader import (FolderFrameStore, FrameStoreError, LmdbFrameStore, open_frame_store,
                                 open_frame_stores)

__all__ = ["INDEX_KEY", "FolderFrameStore", "FrameStoreError", "LmdbFrameStore", "StoreIndex", "VideoEntry",
           "database_name", "decode_image", "frame_key", "open_frame_store", "open_frame_stores"]
