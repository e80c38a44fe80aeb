"""Split parsers of the supported datasets (the videos stage).

Each dataset module exposes ``NAME``, ``load_classes(splits_dir) -> list[str]`` and
``load_split(splits_dir, split, subset, videos_root=None) -> list[VideoRecord]``. Splits and subsets:
``mfuse.conventions.SPLITS`` and ``SUBSETS``.
"""
from __future__ import annotations

from types import ModuleType

from mfuse.datasets import hmdb51, ucf101
from mfuse.datasets.common import SplitError, SplitProblem, VideoRecord, union_of_splits

DATASETS: dict[str, ModuleType] = {ucf101.NAME: ucf101, hmdb51.NAME: hmdb51}


def get_dataset(name: str) -> ModuleType:
    """The parser module of dataset ``name`` (``ucf101`` or ``hmdb51``)."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}") from None


__all__ = ["DATASETS", "SplitError", "SplitProblem", "VideoRecord", "get_dataset", "hmdb51", "ucf101",
           "union_of_splits"]
