"""Accuracy metrics of per-video scores: top-1 accuracy, mean class accuracy, confusion matrix, and their
mean over splits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from mfuse.evaluation.scores import ScoreSet


def predictions(scores: np.ndarray) -> np.ndarray:
    """(V,) arg-max class of each row of (V, K) ``scores`` (ties: the lowest class index)."""
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (videos, classes), got shape {scores.shape}")
    return scores.argmax(axis=1)


def top1_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of videos whose arg-max class is the label."""
    labels = np.asarray(labels)
    predicted = predictions(scores)
    if predicted.shape != labels.shape or labels.size == 0:
        raise ValueError(f"{predicted.shape[0]} score rows for {labels.shape} labels")
    return float(np.mean(predicted == labels))


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts: row = true class, column = predicted class."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    if labels.shape != predicted.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predicted.shape} differ in shape")
    for name, values in (("labels", labels), ("predictions", predicted)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} outside 0..{num_classes - 1}")
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """(K,) recall of each class; NaN for classes without videos."""
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(confusion) / totals, np.nan)


def mean_class_accuracy(confusion: np.ndarray) -> float:
    """Mean of the per-class accuracies over the classes that have videos."""
    return float(np.nanmean(per_class_accuracy(confusion)))


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one score set: ``accuracy`` (top-1), ``mean_class_accuracy``, ``confusion`` (K x K)."""

    accuracy: float
    mean_class_accuracy: float
    confusion: np.ndarray
    num_videos: int

    def as_dict(self) -> dict:
        return {"accuracy": self.accuracy, "mean_class_accuracy": self.mean_class_accuracy,
                "num_videos": self.num_videos, "confusion": self.confusion.tolist()}


def evaluate(score_set: ScoreSet) -> Evaluation:
    """Top-1 accuracy, mean class accuracy and confusion matrix of a score set."""
    confusion = confusion_matrix(score_set.labels, predictions(score_set.scores), score_set.num_classes)
    return Evaluation(accuracy=top1_accuracy(score_set.scores, score_set.labels),
                      mean_class_accuracy=mean_class_accuracy(confusion), confusion=confusion,
                      num_videos=len(score_set))


def mean_over_splits(per_split: Mapping[int, Evaluation]) -> dict:
    """``{"splits": [...], "accuracy": mean, "mean_class_accuracy": mean, "per_split": {k: accuracy}}``
    (the paper's 3-split mean is the plain mean of the per-split accuracies)."""
    if not per_split:
        raise ValueError("no splits to average")
    splits = sorted(per_split)
    return {"splits": splits,
            "accuracy": float(np.mean([per_split[k].accuracy for k in splits])),
            "mean_class_accuracy": float(np.mean([per_split[k].mean_class_accuracy for k in splits])),
            "per_split": {k: per_split[k].accuracy for k in splits}}
