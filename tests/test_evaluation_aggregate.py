"""Per-crop scores to per-video scores, checked against a hand computation."""

import numpy as np
import pytest

from mfuse.evaluation.aggregate import ScoreCollector, softmax, video_score


def test_softmax_by_hand():
    np.testing.assert_allclose(softmax(np.array([0.0, np.log(3.0)])), [0.25, 0.75])
    np.testing.assert_allclose(softmax(np.array([[1000.0, 1000.0]])), [[0.5, 0.5]])


def test_video_score_is_the_mean_of_all_crops():
    crops = np.array([[[1.0, 0.0], [0.5, 0.5]],
                      [[0.0, 1.0], [0.25, 0.75]]])  # 2 frames x 2 crops x 2 classes
    np.testing.assert_allclose(video_score(crops), [(1 + 0.5 + 0 + 0.25) / 4, (0 + 0.5 + 1 + 0.75) / 4])
    logits = np.log(np.array([[[1.0, 3.0]], [[1.0, 1.0]]]))
    np.testing.assert_allclose(video_score(logits, apply_softmax=True), [(0.25 + 0.5) / 2, (0.75 + 0.5) / 2])


def test_collector_builds_a_score_set():
    collector = ScoreCollector(num_classes=2)
    probs = np.array([[[0.9, 0.1]] * 10, [[0.3, 0.7]] * 10])  # 2 frames x 10 crops
    np.testing.assert_allclose(collector.add("A/v1", 0, probs), [0.6, 0.4])
    collector.add("B/v2", 1, np.log(probs[::-1]), apply_softmax=True)
    result = collector.result({"split": 2, "subset": "test", "net": "temporal"})
    assert result.video_ids.tolist() == ["A/v1", "B/v2"] and result.labels.tolist() == [0, 1]
    np.testing.assert_allclose(result.scores, [[0.6, 0.4], [0.6, 0.4]], atol=1e-6)
    assert result.frame_scores.shape == (2, 2, 10, 2) and result.frame_scores.dtype == np.float16
    assert result.meta["frames"] == 2 and result.meta["crops"] == 10
    with pytest.raises(ValueError, match="added twice"):
        collector.add("A/v1", 0, probs)
    with pytest.raises(ValueError, match="earlier videos"):
        collector.add("C/v3", 0, probs[:1])
    with pytest.raises(ValueError, match=r"expected \(frames, crops, 2\)"):
        collector.add("C/v3", 0, np.ones((2, 10, 3)))
    with pytest.raises(ValueError, match="no videos"):
        ScoreCollector(2).result({"split": 1, "subset": "test"})
