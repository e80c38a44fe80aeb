"""Figures are written as sensible PNGs (size, not blank) and refuse bad inputs."""

import numpy as np
import pytest
from matplotlib.image import imread

from mfuse.reports.plots import (AmplificationExample, FusionExample, plot_amplification_examples, plot_confusion,
                                 plot_fusion_examples, plot_per_class_accuracy, plot_training_curves)
from mfuse.reports.train_log import parse_train_log
from mfuse.synthetic import SyntheticConfig, class_names, plan_videos, render_video

CLASSES = class_names()


def check_png(path, min_width=300, min_height=200):
    assert path.is_file() and path.stat().st_size > 5000
    image = imread(path)
    assert image.shape[1] >= min_width and image.shape[0] >= min_height
    assert image[..., :3].std() > 0.05  # something is drawn
    assert not list(path.parent.glob(".*"))  # no temporary left (mfuse.fileio.atomic_path)


def frames_and_scores(rng):
    config = SyntheticConfig(num_groups=4, clips_per_group=1, num_frames=3)
    videos = plan_videos(config)[::4][:4]
    out = []
    for video in videos:
        frame = render_video(config, video).frames[1]
        scores = {net: rng.dirichlet(np.ones(8)) for net in ("spatial", "temporal", "m-fusion")}
        scores["m-fusion"] = np.eye(8)[video.label] * 0.7 + 0.3 / 8
        out.append((video, frame, scores))
    return out


def test_confusion_and_per_class(tmp_path):
    rng = np.random.default_rng(0)
    confusion = rng.integers(0, 5, (8, 8)) + np.diag(np.full(8, 20))
    check_png(plot_confusion(confusion, CLASSES, tmp_path / "confusion.png", title="synthetic split 1"))
    check_png(plot_confusion(confusion, CLASSES, tmp_path / "counts.png", normalize=False))
    per_class = {"S + T": np.linspace(0.2, 1.0, 8), "m-fusion": np.r_[np.full(7, 0.9), np.nan]}
    check_png(plot_per_class_accuracy(per_class, CLASSES, tmp_path / "per_class.png"))
    with pytest.raises(ValueError, match=r"\(8, 8\)"):
        plot_confusion(confusion, CLASSES[:7], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="accuracies for 8 classes"):
        plot_per_class_accuracy({"x": np.ones(3)}, CLASSES, tmp_path / "bad.png")


def test_training_curves(tmp_path):
    lines = []
    for it in range(0, 200, 20):
        lines.append(f"I1 solver.cpp:239] Iteration {it} (3 iter/s, 6s/20 iters), loss = {2.0 * np.exp(-it / 80):.4f}")
        lines.append(f"I1 sgd_solver.cpp:112] Iteration {it}, lr = {1e-3 if it < 100 else 1e-4}")
        if it % 40 == 0:
            lines.append(f"I1 solver.cpp:347] Iteration {it}, Testing net (#0)")
            lines.append(f"I1 solver.cpp:414]     Test net output #0: accuracy = {min(0.95, it / 160):.3f}")
    check_png(plot_training_curves(parse_train_log(lines), tmp_path / "curves.png"), min_width=800)


def test_figure3_and_figure4(tmp_path):
    rng = np.random.default_rng(1)
    examples3, examples4 = [], []
    for video, frame, scores in frames_and_scores(rng)[:2]:
        magnitude = np.zeros(frame.shape[:2]); magnitude[10:20, 20:35] = 200.0
        examples3.append(AmplificationExample(frame, magnitude, video.label, scores["spatial"], scores["m-fusion"]))
    for video, frame, scores in frames_and_scores(rng):
        examples4.append(FusionExample(frame, video.label, scores))
    check_png(plot_amplification_examples(examples3, CLASSES, tmp_path / "figure3.png"), min_width=800)
    check_png(plot_fusion_examples(examples4, CLASSES, tmp_path / "figure4.png", columns=2), min_width=400)
    with pytest.raises(ValueError, match="no examples"):
        plot_fusion_examples([], CLASSES, tmp_path / "empty.png")
    with pytest.raises(ValueError, match="BGR"):
        plot_fusion_examples([FusionExample(np.zeros((4, 4)), 0, {})], CLASSES, tmp_path / "grey.png")
