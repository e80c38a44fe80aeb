"""Data preparation: videos -> frame folders (frames, optical flow, magnitude) -> frame stores.

- ``frames``: decode, resize and write a video's frame folder; ``flow``: optical flow and its 8-bit encodings;
- ``lmdb_store``: the store writers (LMDB databases, frame-folder indexes; the format and the reader are
  :mod:`mfuse.stores`);
- ``parallel``: the process pool with a progress bar; ``pipeline``: the stages, sharding, resume, summary.
"""
from __future__ import annotations

from mfuse.prep.flow import ALGORITHMS, DEFAULT_BOUND, create_flow_function, dequantize_flow, quantize_flow
from mfuse.prep.frames import ExtractSettings, VideoError, extract_video, is_video_complete, read_meta
from mfuse.prep.lmdb_store import VideoSource, build_lmdb, write_folder_index
from mfuse.prep.parallel import imap_progress, worker_pool
from mfuse.prep.pipeline import (STAGES, STORE_CHOICES, Summary, build_stores, extract_videos, format_summary,
                                 parse_shard, prepare_dataset)

__all__ = ["ALGORITHMS", "DEFAULT_BOUND", "STAGES", "STORE_CHOICES", "ExtractSettings", "Summary", "VideoError",
           "VideoSource", "build_lmdb", "build_stores", "create_flow_function", "dequantize_flow", "extract_video",
           "extract_videos", "format_summary", "imap_progress", "is_video_complete", "parse_shard",
           "prepare_dataset", "quantize_flow", "read_meta", "worker_pool", "write_folder_index"]
