"""From per-crop net outputs to per-video scores (paper §5.2: the average of the 25 x 10 crop scores).

``ScoreCollector`` is what a test runner feeds, one video at a time::

    collector = ScoreCollector(num_classes)
    for video in videos:
        probs = ...  # (frames, crops, K) softmax outputs, or logits with apply_softmax=True
        collector.add(video.video_id, video.label, probs)
    save_scores(path, collector.result(meta))
"""

from __future__ import annotations

import numpy as np

from mfuse.evaluation.scores import ScoreSet


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax of ``logits`` along ``axis`` (float64)."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def video_score(crop_scores: np.ndarray, apply_softmax: bool = False) -> np.ndarray:
    """(K,) average over every leading axis of ``crop_scores`` (..., K); softmax per crop first if asked."""
    crop_scores = np.asarray(crop_scores, dtype=np.float64)
    if crop_scores.ndim < 1 or crop_scores.shape[-1] < 1:
        raise ValueError(f"crop scores must end in a class axis, got shape {crop_scores.shape}")
    probs = softmax(crop_scores) if apply_softmax else crop_scores
    return probs.reshape(-1, probs.shape[-1]).mean(axis=0)


class ScoreCollector:
    """Accumulates per-video (frames, crops, K) scores into a ``ScoreSet``.

    Every video must have the same (frames, crops) shape; ``frame_scores`` are kept as float16 when
    ``keep_frame_scores`` (the default), the video scores are averaged in float64.
    """

    def __init__(self, num_classes: int, keep_frame_scores: bool = True) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.keep_frame_scores = keep_frame_scores
        self._ids: list[str] = []
        self._labels: list[int] = []
        self._scores: list[np.ndarray] = []
        self._frame_scores: list[np.ndarray] = []
        self._shape: tuple[int, int] | None = None

    def add(self, video_id: str, label: int, crop_scores: np.ndarray, apply_softmax: bool = False) -> np.ndarray:
        """Add one video's (frames, crops, K) outputs (or (frames * crops, K), read as frames x 1);
        returns its (K,) score."""
        crop_scores = np.asarray(crop_scores, dtype=np.float64)
        if crop_scores.ndim == 2:
            crop_scores = crop_scores[:, None, :]
        if crop_scores.ndim != 3 or crop_scores.shape[2] != self.num_classes:
            raise ValueError(f"{video_id}: expected (frames, crops, {self.num_classes}) scores, "
                             f"got {crop_scores.shape}")
        if self._shape is not None and crop_scores.shape[:2] != self._shape:
            raise ValueError(f"{video_id}: {crop_scores.shape[:2]} frames x crops, earlier videos had {self._shape}")
        if video_id in self._ids:
            raise ValueError(f"{video_id}: added twice")
        self._shape = crop_scores.shape[:2]
        probs = softmax(crop_scores) if apply_softmax else crop_scores
        score = video_score(probs)
        self._ids.append(video_id)
        self._labels.append(int(label))
        self._scores.append(score)
        if self.keep_frame_scores:
            self._frame_scores.append(probs.astype(np.float16))
        return score

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def video_ids(self) -> list[str]:
        return list(self._ids)

    def snapshot(self) -> dict[str, np.ndarray]:
        """``video_ids``, ``labels`` and (frames, crops, K) ``frame_scores`` added so far, to resume later
        by re-adding them; needs ``keep_frame_scores``."""
        if not self.keep_frame_scores:
            raise ValueError("a snapshot needs keep_frame_scores=True")
        return {"video_ids": np.array(self._ids), "labels": np.array(self._labels, dtype=np.int64),
                "frame_scores": np.stack(self._frame_scores)}

    def result(self, meta: dict) -> ScoreSet:
        """The collected ``ScoreSet`` with ``meta`` (needs ``split`` and ``subset``)."""
        if not self._ids:
            raise ValueError("no videos were added")
        frame_scores = np.stack(self._frame_scores) if self.keep_frame_scores else None
        meta = {**meta, "frames": int(self._shape[0]), "crops": int(self._shape[1])}
        return ScoreSet(np.array(self._ids), np.array(self._labels, dtype=np.int64),
                        np.stack(self._scores).astype(np.float32), meta, frame_scores)
