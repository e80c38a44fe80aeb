"""Figures (PNG, matplotlib Agg): confusion matrix, per-class accuracy, training curves, and the paper's
qualitative figures — Figure 3 (frame, flow-magnitude gate, predictions of the plain vs the amplified
spatial net) and Figure 4 (frame, top prediction and score of the spatial, temporal and m-fused nets).

Images are H x W x 3 uint8 **BGR** (the frame-store convention) and converted for display. Every function
writes its PNG atomically and returns the path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mfuse.fileio import atomic_path  # noqa: E402
from mfuse.reports.train_log import TrainLog  # noqa: E402


def _save(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 3:
        return image[:, :, ::-1]
    raise ValueError(f"expected an H x W x 3 BGR frame, got shape {image.shape}")


def plot_confusion(confusion: np.ndarray, class_names: Sequence[str], path: str | os.PathLike,
                   title: str = "Confusion matrix", normalize: bool = True) -> Path:
    """Confusion matrix (rows true, columns predicted); ``normalize`` shows row fractions. Cells carry their
    values when there are at most 30 classes."""
    confusion = np.asarray(confusion)
    k = len(class_names)
    if confusion.shape != (k, k):
        raise ValueError(f"confusion is {confusion.shape}, expected ({k}, {k}) for {k} class names")
    totals = confusion.sum(axis=1, keepdims=True)
    shown = np.divide(confusion, totals, out=np.zeros(confusion.shape), where=totals > 0) if normalize else confusion
    size = max(4.0, 0.35 * k + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), class_names, rotation=90, fontsize=7 if k > 20 else 9)
    ax.set_yticks(range(k), class_names, fontsize=7 if k > 20 else 9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if k <= 30:
        for (i, j), value in np.ndenumerate(shown):
            if confusion[i, j]:
                ax.text(j, i, f"{value:.2f}" if normalize else str(int(value)), ha="center", va="center",
                        fontsize=7, color="white" if value > 0.6 * shown.max() else "black")
    return _save(fig, path)


def plot_per_class_accuracy(accuracies: Mapping[str, np.ndarray], class_names: Sequence[str],
                            path: str | os.PathLike, title: str = "Per-class accuracy") -> Path:
    """Grouped bars of per-class accuracy (fractions, NaN = no videos) for one or more models
    ``{model: (K,)}``."""
    if not accuracies:
        raise ValueError("no models to plot")
    k = len(class_names)
    for name, values in accuracies.items():
        if np.asarray(values).shape != (k,):
            raise ValueError(f"{name}: {np.asarray(values).shape} accuracies for {k} classes")
    width = 0.8 / len(accuracies)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.3 * k * max(1, len(accuracies) / 2) + 2.0), 4.0))
    for i, (name, values) in enumerate(accuracies.items()):
        values = np.asarray(values, dtype=float)
        ax.bar(np.arange(k) + (i - (len(accuracies) - 1) / 2) * width, np.nan_to_num(100 * values), width,
               label=f"{name} (mean {100 * np.nanmean(values):.1f})")
    ax.set_xticks(range(k), class_names, rotation=90, fontsize=7 if k > 20 else 9)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_training_curves(log: TrainLog, path: str | os.PathLike, title: str = "Training") -> Path:
    """Three panels against iteration: train (smoothed) and test loss; test accuracy; learning rate."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(*log.series("train", "smoothed_loss"), label="train loss (smoothed)")
    for column in ("loss", "test_loss"):
        if column in log.columns("test"):
            axes[0].plot(*log.series("test", column), "o-", label=f"test {column.replace('test_', '')}")
            break
    axes[0].set_title("loss")
    accuracy_columns = [c for c in log.columns("test") if "acc" in c.lower()]
    for column in accuracy_columns:
        axes[1].plot(*log.series("test", column), "o-", label=column)
    axes[1].set_title("test accuracy" if accuracy_columns else "test accuracy (none logged)")
    lr_it, lr = log.series("train", "lr")
    axes[2].plot(lr_it, lr, drawstyle="steps-post")
    if lr and min(lr) > 0:
        axes[2].set_yscale("log")
    axes[2].set_title("learning rate")
    for ax in axes:
        ax.set_xlabel("iteration")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _top_k(scores: np.ndarray, class_names: Sequence[str], k: int) -> tuple[list[str], np.ndarray]:
    order = np.argsort(-np.asarray(scores))[:k]
    return [class_names[i] for i in order], np.asarray(scores)[order]


def _prediction_bars(ax, scores: np.ndarray, class_names: Sequence[str], label: int, k: int, title: str) -> None:
    names, values = _top_k(scores, class_names, k)
    colours = ["tab:green" if n == class_names[label] else "tab:gray" for n in names]
    ax.barh(range(len(names))[::-1], values, color=colours)
    ax.set_yticks(range(len(names))[::-1], names, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_title(title, fontsize=9)


@dataclass(frozen=True)
class AmplificationExample:
    """Figure 3 input: an RGB ``frame`` (BGR), its flow ``magnitude`` (H x W, 0..255), the ``gate`` the
    amplification applied (``offset + scale * magnitude``; ``None`` -> computed from ``magnitude`` with
    offset 1, scale 1/255 for display), the ``label`` and the plain and amplified nets' video scores (K,)."""

    frame: np.ndarray
    magnitude: np.ndarray
    label: int
    plain_scores: np.ndarray
    amplified_scores: np.ndarray
    gate: np.ndarray | None = None


def plot_amplification_examples(examples: Sequence[AmplificationExample], class_names: Sequence[str],
                                path: str | os.PathLike, top_k: int = 5) -> Path:
    """Figure 3 style: per example, the frame, the magnitude gate, and the top-``top_k`` predictions of the
    plain and the amplified spatial nets (the true class in green)."""
    if not examples:
        raise ValueError("no examples to plot")
    fig, axes = plt.subplots(len(examples), 4, figsize=(13, 2.6 * len(examples)), squeeze=False)
    for row, example in zip(axes, examples):
        row[0].imshow(_rgb(example.frame))
        row[0].set_title(f"true: {class_names[example.label]}", fontsize=9)
        gate = example.gate if example.gate is not None else 1.0 + np.asarray(example.magnitude, float) / 255.0
        shown = row[1].imshow(gate, cmap="inferno")
        fig.colorbar(shown, ax=row[1], fraction=0.046, pad=0.04)
        row[1].set_title("magnitude gate", fontsize=9)
        for ax in row[:2]:
            ax.axis("off")
        _prediction_bars(row[2], example.plain_scores, class_names, example.label, top_k, "plain spatial net")
        _prediction_bars(row[3], example.amplified_scores, class_names, example.label, top_k, "amplified net")
    fig.tight_layout()
    return _save(fig, path)


@dataclass(frozen=True)
class FusionExample:
    """Figure 4 input: a ``frame`` (BGR), the ``label`` and video scores (K,) per net, e.g.
    ``{"spatial": ..., "temporal": ..., "m-fusion": ...}``."""

    frame: np.ndarray
    label: int
    scores: Mapping[str, np.ndarray]


def plot_fusion_examples(examples: Sequence[FusionExample], class_names: Sequence[str],
                         path: str | os.PathLike, columns: int = 4) -> Path:
    """Figure 4 style: a grid of frames, each with the top prediction and score of every net (a tick for a
    correct prediction, a cross for a wrong one) and the true class."""
    if not examples:
        raise ValueError("no examples to plot")
    rows = -(-len(examples) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.3 * columns, 3.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, example in zip(axes.flat, examples):
        ax.imshow(_rgb(example.frame))
        lines = [f"true: {class_names[example.label]}"]
        for net, scores in example.scores.items():
            best = int(np.argmax(scores))
            mark = "✓" if best == example.label else "✗"
            lines.append(f"{mark} {net}: {class_names[best]} {float(np.asarray(scores)[best]):.2f}")
        ax.set_title("\n".join(lines), fontsize=8, loc="left")
    fig.tight_layout()
    return _save(fig, path)
