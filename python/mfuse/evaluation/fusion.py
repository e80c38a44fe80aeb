"""Late fusion of score sets (paper Table 1 '+': average of L2-normalised softmax scores; §5.4: weighted
average of m-fusion, spatial and temporal predictions, 2:3:4) and the search for fusion weights.

The weight search works on a held-out part of the TRAIN split only. It takes ``ScoreSet`` objects (never
raw arrays), whose metadata must say ``subset`` ``"val"`` (held out of training) or ``"train"``; a score
set of the ``"test"`` subset is refused with ``TestSubsetError`` before any score is read, and the caller
must pass the split's test videos (``test_video_ids``, a required argument): a score set holding any of
them is refused too.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mfuse.evaluation.metrics import evaluate
from mfuse.evaluation.scores import ScoreSet

PAPER_FINAL_WEIGHTS = {"mfusion": 2.0, "spatial": 3.0, "temporal": 4.0}
SEARCH_SUBSETS = ("val", "train")


class TestSubsetError(ValueError):
    """A weight search was given scores of test videos."""

    __test__ = False  # not a pytest class


def l2_normalize(scores: np.ndarray) -> np.ndarray:
    """Each row of (V, K) ``scores`` divided by its L2 norm (all-zero rows stay zero)."""
    scores = np.asarray(scores, dtype=np.float64)
    norms = np.linalg.norm(scores, axis=1, keepdims=True)
    return np.divide(scores, norms, out=np.zeros_like(scores), where=norms > 0)


def _aligned(streams: Mapping[str, ScoreSet]) -> dict[str, ScoreSet]:
    """The streams reordered to the first stream's video order; checks videos, labels, classes, split."""
    if not streams:
        raise ValueError("fusion needs at least one score set")
    names = list(streams)
    first = streams[names[0]]
    reference = set(first.video_ids.tolist())
    aligned = {}
    for name in names:
        s = streams[name]
        if not isinstance(s, ScoreSet):
            raise TypeError(f"stream {name!r}: expected a ScoreSet, got {type(s).__name__}")
        if set(s.video_ids.tolist()) != reference:
            diff = sorted(reference.symmetric_difference(s.video_ids.tolist()))
            raise ValueError(f"streams {names[0]!r} and {name!r} cover different videos, e.g. {diff[0]!r}")
        if s.num_classes != first.num_classes:
            raise ValueError(f"stream {name!r} has {s.num_classes} classes, {names[0]!r} has {first.num_classes}")
        if (s.split, s.subset) != (first.split, first.subset):
            raise ValueError(f"stream {name!r} is split {s.split} {s.subset}, "
                             f"{names[0]!r} is split {first.split} {first.subset}")
        s = s.select(first.video_ids)
        if not np.array_equal(s.labels, first.labels):
            bad = str(first.video_ids[np.argmax(s.labels != first.labels)])
            raise ValueError(f"streams {names[0]!r} and {name!r} disagree on the label of {bad!r}")
        aligned[name] = s
    return aligned


def _weights_for(names: Sequence[str], weights: Mapping[str, float] | None) -> dict[str, float]:
    if weights is None:
        return {name: 1.0 for name in names}
    if set(weights) != set(names):
        raise ValueError(f"weights are for {sorted(weights)}, streams are {sorted(names)}")
    if not all(math.isfinite(w) and w >= 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
        raise ValueError(f"weights must be finite, >= 0 and not all 0, got {dict(weights)}")
    return {name: float(weights[name]) for name in names}


def fuse(streams: Mapping[str, ScoreSet], weights: Mapping[str, float] | None = None,
         normalize: bool = True) -> ScoreSet:
    """Weighted average of the streams' (L2-normalised, if ``normalize``) video scores.

    ``streams``: ``{name: ScoreSet}`` over the same videos, split and subset. ``weights``: ``{name: w}``
    (default: equal, the paper's '+'). The result's scores are ``sum_i w_i s_i / sum_i w_i`` in the first
    stream's video order; its meta records the streams, weights and normalisation.
    """
    aligned = _aligned(streams)
    weights = _weights_for(list(aligned), weights)
    total = sum(weights.values())
    fused = sum(weights[name] * (l2_normalize(s.scores) if normalize else s.scores)
                for name, s in aligned.items()) / total
    first = next(iter(aligned.values()))
    meta = {key: first.meta[key] for key in ("dataset", "split", "subset") if key in first.meta}
    meta.update({"net": "late_fusion", "streams": {name: s.meta.get("net", name) for name, s in aligned.items()},
                 "fusion_weights": weights, "l2_normalized": normalize})
    return ScoreSet(first.video_ids, first.labels, fused.astype(np.float32), meta)


def average_fusion(streams: Mapping[str, ScoreSet]) -> ScoreSet:
    """The paper's '+': equal-weight average of the L2-normalised softmax scores."""
    return fuse(streams, None, normalize=True)


def paper_weighted_fusion(mfusion: ScoreSet, spatial: ScoreSet, temporal: ScoreSet) -> ScoreSet:
    """§5.4: m-fusion : spatial : temporal = 2 : 3 : 4 on L2-normalised scores."""
    return fuse({"mfusion": mfusion, "spatial": spatial, "temporal": temporal}, PAPER_FINAL_WEIGHTS)


@dataclass(frozen=True)
class WeightSearchResult:
    """Outcome of ``search_weights``: the chosen weights and their held-out accuracy, and every candidate
    tried as ``(weights, accuracy, mean class accuracy)``, best first."""

    weights: dict[str, float]
    accuracy: float
    mean_class_accuracy: float
    subset: str
    split: int
    num_videos: int
    candidates: list[tuple[dict[str, float], float, float]]

    def as_dict(self) -> dict:
        return {"weights": self.weights, "accuracy": self.accuracy,
                "mean_class_accuracy": self.mean_class_accuracy, "subset": self.subset, "split": self.split,
                "num_videos": self.num_videos,
                "candidates": [{"weights": w, "accuracy": a, "mean_class_accuracy": m}
                               for w, a, m in self.candidates]}


def weight_grid(names: Sequence[str], values: Iterable[float] = range(0, 6)) -> list[dict[str, float]]:
    """Every combination of ``values`` per stream, all-zero and proportional duplicates removed
    (integer ``values`` are reduced by their gcd, so 2:2:2 is tried once, as 1:1:1)."""
    values = sorted(set(float(v) for v in values))
    seen, grid = set(), []
    for combo in itertools.product(values, repeat=len(names)):
        if not any(combo):
            continue
        if all(v.is_integer() for v in combo):
            divisor = math.gcd(*(int(v) for v in combo))
            key = tuple(v / divisor for v in combo)
        else:
            key = tuple(round(v / sum(combo), 9) for v in combo)
        if key not in seen:
            seen.add(key)
            grid.append(dict(zip(names, combo)))
    return grid


def _check_heldout(streams: Mapping[str, ScoreSet], test_video_ids: Iterable[str]) -> None:
    """Refuse test-subset score sets and score sets that hold a test video."""
    for name, s in streams.items():
        if not isinstance(s, ScoreSet):
            raise TypeError(f"stream {name!r}: the weight search takes ScoreSet objects, got {type(s).__name__}")
        if s.subset not in SEARCH_SUBSETS:
            raise TestSubsetError(f"stream {name!r} holds scores of the {s.subset!r} subset; fusion weights may "
                                  f"only be searched on {SEARCH_SUBSETS} (a held-out part of the train split)")
    if isinstance(test_video_ids, str):
        raise TypeError("test_video_ids must be a collection of video ids, not one string")
    forbidden = set(test_video_ids)
    for name, s in streams.items():
        leaked = forbidden.intersection(s.video_ids.tolist())
        if leaked:
            raise TestSubsetError(f"stream {name!r} holds {len(leaked)} test video(s), "
                                  f"e.g. {sorted(leaked)[0]!r}")


def search_weights(streams: Mapping[str, ScoreSet], *, test_video_ids: Iterable[str],
                   values: Iterable[float] = range(0, 6), normalize: bool = True) -> WeightSearchResult:
    """Choose fusion weights by top-1 accuracy on held-out TRAIN-split videos.

    ``streams``: ``{name: ScoreSet}`` of subset ``val`` or ``train`` (``TestSubsetError`` otherwise, and if
    any video is in ``test_video_ids``, the video ids of the split's test list). Every weight combination of ``weight_grid(names, values)`` is
    scored; ties go to the higher mean class accuracy, then to the earlier combination of the grid.
    """
    _check_heldout(streams, test_video_ids)
    aligned = _aligned(streams)
    names = list(aligned)
    candidates = []
    for order, weights in enumerate(weight_grid(names, values)):
        result = evaluate(fuse(aligned, weights, normalize))
        candidates.append((-result.accuracy, -result.mean_class_accuracy, order, weights))
    candidates.sort(key=lambda c: c[:3])
    best = candidates[0]
    first = next(iter(aligned.values()))
    return WeightSearchResult(weights=best[3], accuracy=-best[0], mean_class_accuracy=-best[1],
                              subset=first.subset, split=first.split, num_videos=len(first),
                              candidates=[(w, -a, -m) for a, m, _, w in candidates])
