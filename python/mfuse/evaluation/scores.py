"""Score files: the evaluation output shared by the test runner, fusion, metrics and reports.

An ``.npz`` file (``docs/conventions.md``) with

- ``video_ids``:    (V,) str, unique;
- ``labels``:       (V,) int, 0-based, ``0 <= label < K``;
- ``scores``:       (V, K) float, the video's averaged softmax (finite, >= 0);
- ``frame_scores``: (V, F, C, K) float (float16 allowed), per sampled frame and crop; optional (fused score
  files have none); when present its mean over frames and crops must equal ``scores``;
- ``meta``:         a JSON object string with at least ``split`` (1, 2, 3) and ``subset`` (``train``,
  ``val`` = a held-out part of the train split, or ``test``); by convention also ``dataset``, ``net``,
  ``weights``, ``frames``, ``crops``.

``save_scores`` writes atomically (:func:`mfuse.fileio.atomic_path`); ``load_scores`` validates and raises
``ScoreFileError`` naming the file and the problem.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mfuse.conventions import SCORE_SUBSETS, SPLITS
from mfuse.fileio import atomic_path

REQUIRED_META = ("split", "subset")
_ARRAYS = ("video_ids", "labels", "scores")
_FRAME_SCORE_ATOL = 2e-3  # float16 frame scores


class ScoreFileError(ValueError):
    """A score file or score set is malformed."""


@dataclass(frozen=True)
class ScoreSet:
    """Per-video scores of one net (or one fusion) on one split and subset; see the module docstring."""

    video_ids: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    meta: dict = field(default_factory=dict)
    frame_scores: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "video_ids", np.asarray(self.video_ids, dtype=str))
        object.__setattr__(self, "labels", np.asarray(self.labels))
        object.__setattr__(self, "scores", np.asarray(self.scores))
        if self.frame_scores is not None:
            object.__setattr__(self, "frame_scores", np.asarray(self.frame_scores))
        object.__setattr__(self, "meta", dict(self.meta))
        problems = _problems(self)
        if problems:
            raise ScoreFileError("invalid scores: " + "; ".join(problems))

    @property
    def num_classes(self) -> int:
        return int(self.scores.shape[1])

    @property
    def split(self) -> int:
        return int(self.meta["split"])

    @property
    def subset(self) -> str:
        return str(self.meta["subset"])

    def __len__(self) -> int:
        return len(self.video_ids)

    def select(self, video_ids) -> ScoreSet:
        """The scores of ``video_ids`` in that order (KeyError naming the first unknown id)."""
        index = {vid: i for i, vid in enumerate(self.video_ids)}
        missing = [str(vid) for vid in video_ids if vid not in index]
        if missing:
            raise KeyError(f"{len(missing)} video(s) not in the score set, e.g. {missing[0]!r}")
        rows = np.array([index[vid] for vid in video_ids], dtype=np.int64)
        return ScoreSet(self.video_ids[rows], self.labels[rows], self.scores[rows], self.meta,
                        None if self.frame_scores is None else self.frame_scores[rows])


def _problems(s: ScoreSet) -> list[str]:
    problems = []
    if s.video_ids.ndim != 1:
        problems.append(f"video_ids must be 1-D, got shape {s.video_ids.shape}")
    num_videos = s.video_ids.shape[0] if s.video_ids.ndim else 0
    if len(set(s.video_ids.tolist())) != num_videos:
        problems.append("video_ids are not unique")
    if s.labels.shape != (num_videos,) or not np.issubdtype(s.labels.dtype, np.integer):
        problems.append(f"labels must be ({num_videos},) integers, got {s.labels.dtype} {s.labels.shape}")
    if s.scores.ndim != 2 or s.scores.shape[0] != num_videos or not np.issubdtype(s.scores.dtype, np.floating):
        problems.append(f"scores must be ({num_videos}, K) floats, got {s.scores.dtype} {s.scores.shape}")
        return problems
    num_classes = s.scores.shape[1]
    if num_classes < 1:
        problems.append("scores have no classes")
    if not np.all(np.isfinite(s.scores)) or np.any(s.scores < 0):
        problems.append("scores must be finite and >= 0 (averaged softmax)")
    if s.labels.size and np.issubdtype(s.labels.dtype, np.integer) and (s.labels.min() < 0 or s.labels.max() >= num_classes):
        problems.append(f"labels must be in 0..{num_classes - 1}, got {s.labels.min()}..{s.labels.max()}")
    if s.frame_scores is not None:
        fs = s.frame_scores
        if fs.ndim != 4 or fs.shape[0] != num_videos or fs.shape[3] != num_classes:
            problems.append(f"frame_scores must be ({num_videos}, F, C, {num_classes}), got {fs.shape}")
        elif not np.allclose(fs.mean(axis=(1, 2), dtype=np.float64), s.scores, atol=_FRAME_SCORE_ATOL):
            problems.append("scores are not the mean of frame_scores over frames and crops")
    for key in REQUIRED_META:
        if key not in s.meta:
            problems.append(f"meta lacks {key!r}")
    if "subset" in s.meta and s.meta["subset"] not in SCORE_SUBSETS:
        problems.append(f"meta subset must be one of {SCORE_SUBSETS}, got {s.meta['subset']!r}")
    if "split" in s.meta and s.meta["split"] not in SPLITS:
        problems.append(f"meta split must be one of {SPLITS}, got {s.meta['split']!r}")
    return problems


def save_scores(path: str | os.PathLike, score_set: ScoreSet) -> Path:
    """Write ``score_set`` to ``path`` (an ``.npz``) atomically; returns the path."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"score files end in .npz, got {path}")
    arrays = {"video_ids": score_set.video_ids, "labels": score_set.labels.astype(np.int64),
              "scores": score_set.scores, "meta": np.array(json.dumps(score_set.meta, sort_keys=True))}
    if score_set.frame_scores is not None:
        arrays["frame_scores"] = score_set.frame_scores
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    return path


def load_scores(path: str | os.PathLike) -> ScoreSet:
    """Read and validate a score file; ``ScoreFileError`` names the file and every problem."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in _ARRAYS + ("meta",) if key not in data.files]
            if missing:
                raise ScoreFileError(f"{path}: missing arrays {missing} (has {sorted(data.files)})")
            arrays = {key: data[key] for key in data.files}
    except ScoreFileError:
        raise
    except (OSError, ValueError) as error:
        raise ScoreFileError(f"{path}: not a readable npz score file ({error})") from error
    try:
        meta = json.loads(str(arrays["meta"]))
    except json.JSONDecodeError as error:
        raise ScoreFileError(f"{path}: meta is not JSON ({error})") from error
    if not isinstance(meta, dict):
        raise ScoreFileError(f"{path}: meta must be a JSON object, got {type(meta).__name__}")
    try:
        return ScoreSet(arrays["video_ids"], arrays["labels"], arrays["scores"], meta, arrays.get("frame_scores"))
    except ScoreFileError as error:
        raise ScoreFileError(f"{path}: {error}") from None
