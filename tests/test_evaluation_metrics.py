"""Top-1, mean class accuracy, confusion matrix and split means on hand-made scores."""

import numpy as np
import pytest

from mfuse.evaluation.metrics import (confusion_matrix, evaluate, mean_class_accuracy, mean_over_splits,
                                      per_class_accuracy, top1_accuracy)
from mfuse.evaluation.scores import ScoreSet

SCORES = np.array([[0.7, 0.2, 0.1],   # label 0 -> 0
                   [0.1, 0.8, 0.1],   # label 0 -> 1
                   [0.2, 0.3, 0.5],   # label 0 -> 2
                   [0.1, 0.6, 0.3],   # label 1 -> 1
                   [0.3, 0.3, 0.4]])  # label 2 -> 2
LABELS = np.array([0, 0, 0, 1, 2])


def test_by_hand():
    assert top1_accuracy(SCORES, LABELS) == pytest.approx(3 / 5)
    confusion = confusion_matrix(LABELS, SCORES.argmax(1), 3)
    np.testing.assert_array_equal(confusion, [[1, 1, 1], [0, 1, 0], [0, 0, 1]])
    np.testing.assert_allclose(per_class_accuracy(confusion), [1 / 3, 1, 1])
    assert mean_class_accuracy(confusion) == pytest.approx((1 / 3 + 1 + 1) / 3)


def test_classes_without_videos_are_left_out_of_the_mean():
    confusion = confusion_matrix(np.array([0, 0]), np.array([0, 1]), 3)
    assert np.isnan(per_class_accuracy(confusion)[2])
    assert mean_class_accuracy(confusion) == pytest.approx(0.5)


def test_evaluate_and_split_mean():
    s = ScoreSet([f"v{i}" for i in range(5)], LABELS, SCORES, {"split": 1, "subset": "test"})
    first = evaluate(s)
    assert first.accuracy == pytest.approx(0.6) and first.num_videos == 5
    second = evaluate(ScoreSet(s.video_ids, np.array([0, 1, 2, 1, 2]), SCORES, {"split": 2, "subset": "test"}))
    assert second.accuracy == pytest.approx(1.0)
    summary = mean_over_splits({2: second, 1: first})
    assert summary["splits"] == [1, 2] and summary["accuracy"] == pytest.approx(0.8)
    assert summary["per_split"] == {1: pytest.approx(0.6), 2: pytest.approx(1.0)}
    assert first.as_dict()["confusion"][0] == [1, 1, 1]


def test_bad_inputs():
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError):
        top1_accuracy(SCORES, LABELS[:3])
    with pytest.raises(ValueError):
        mean_over_splits({})
