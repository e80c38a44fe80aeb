"""Evaluation: score files, per-video aggregation, metrics, late fusion, and the 25-frame x 10-crop test of a
net (paper §5.2; its sampling and crops are :mod:`mfuse.sampling`)."""
from __future__ import annotations

from mfuse.evaluation.aggregate import ScoreCollector, softmax, video_score
from mfuse.evaluation.fusion import (PAPER_FINAL_WEIGHTS, TestSubsetError, WeightSearchResult, average_fusion, fuse,
                                     l2_normalize, paper_weighted_fusion, search_weights, weight_grid)
from mfuse.evaluation.metrics import (Evaluation, confusion_matrix, evaluate, mean_class_accuracy, mean_over_splits,
                                      per_class_accuracy)
from mfuse.evaluation.resume import (PartialMismatchError, PartialScores, file_digest, params_digest, partial_path,
                                     run_identity)
from mfuse.evaluation.scores import ScoreFileError, ScoreSet, load_scores, save_scores
from mfuse.evaluation.testing import (Protocol, evaluate_net, forward_crops, load_test_net, net_geometry,
                                      protocol_crops, protocol_for, score_videos, video_crops)

__all__ = [
    "Evaluation", "PAPER_FINAL_WEIGHTS", "PartialMismatchError", "PartialScores", "Protocol", "ScoreCollector",
    "ScoreFileError", "ScoreSet", "TestSubsetError", "WeightSearchResult", "average_fusion", "confusion_matrix",
    "evaluate", "evaluate_net", "file_digest", "forward_crops", "fuse", "l2_normalize", "load_scores",
    "load_test_net", "mean_class_accuracy", "mean_over_splits", "net_geometry", "paper_weighted_fusion",
    "params_digest", "partial_path", "per_class_accuracy", "protocol_crops", "protocol_for", "run_identity",
    "save_scores", "score_videos", "search_weights", "softmax", "video_crops", "video_score", "weight_grid",
]
