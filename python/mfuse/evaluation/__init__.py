"""Evaluation: test-time sampling and crops (paper §5.2), score files, per-video aggregation, metrics and
late fusion. The runner that feeds nets (``testing.py``) is built on these."""

from .aggregate import ScoreCollector, softmax, video_score
from .crops import (FLOW_MEAN, FLOW_X_CHANNELS, RGB_MEAN, CropBox, crop_boxes, crop_image, crop_modalities,
                    split_flow_image, stack_flow)
from .fusion import (PAPER_FINAL_WEIGHTS, TestSubsetError, WeightSearchResult, average_fusion, fuse, l2_normalize,
                     paper_weighted_fusion, search_weights, weight_grid)
from .metrics import Evaluation, confusion_matrix, evaluate, mean_class_accuracy, mean_over_splits, per_class_accuracy
from .sampling import flow_stack_indices, rgb_index, sample_positions
from .scores import ScoreFileError, ScoreSet, load_scores, save_scores

__all__ = [
    "FLOW_MEAN", "FLOW_X_CHANNELS", "PAPER_FINAL_WEIGHTS", "RGB_MEAN", "CropBox", "Evaluation", "ScoreCollector",
    "ScoreFileError", "ScoreSet", "TestSubsetError", "WeightSearchResult", "average_fusion", "confusion_matrix",
    "crop_boxes", "crop_image", "crop_modalities", "evaluate", "flow_stack_indices", "fuse", "l2_normalize",
    "load_scores", "mean_class_accuracy", "mean_over_splits", "paper_weighted_fusion", "per_class_accuracy",
    "rgb_index", "sample_positions", "save_scores", "search_weights", "softmax", "split_flow_image", "stack_flow",
    "video_score", "weight_grid",
]
