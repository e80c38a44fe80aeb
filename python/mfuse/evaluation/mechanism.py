"""Mechanism checks on the synthetic dataset: does the amplification gate single out the moving discs, and
which nets resolve the binding pairs.

- :func:`gate_contrast`: the FlowAmplify gate ``offset + scale * magnitude`` (the paper's "scaled from 1"),
  computed from a prepared dataset's magnitude store, averaged over the pixels of MOVING discs and over the
  background (from the generator's masks, ``masks/<video_id>.npz``); the contrast is their ratio. It is
  measured at the frame's resolution and on the conv5 grid the net multiplies (the centre crop resized as
  ``FlowAmplify`` resizes it, a cell counting as moving / background when the mask covers at least half /
  all of it).
- :func:`pair_accuracies`: per-class accuracy of a score set on the classes of every confusable pair.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mfuse.conventions import FLOW_AMPLIFY_DEFAULTS
from mfuse.layers.flow_amplify_ops import resize_matrices
from mfuse.synthetic import APPEARANCE_CONFUSED, BINDING_CONFUSED, MOTION_CONFUSED, read_masks


@dataclass(frozen=True)
class GateContrast:
    """Mean gate on moving discs and on the background, at the frame's resolution and on the conv5 grid."""
    moving: float
    background: float
    grid_moving: float
    grid_background: float
    frames: int

    @property
    def contrast(self) -> float:
        return self.moving / self.background

    @property
    def grid_contrast(self) -> float:
        return self.grid_moving / self.grid_background


def _centre(image: np.ndarray, size: int) -> np.ndarray:
    height, width = image.shape[:2]
    top, left = (height - size) // 2, (width - size) // 2
    return image[top:top + size, left:left + size]


def gate_contrast(dataset_root: str | Path, mag_store, grid: int, crop_size: int,
                  offset: float = FLOW_AMPLIFY_DEFAULTS["offset"], scale: float = FLOW_AMPLIFY_DEFAULTS["scale"],
                  resize: str = FLOW_AMPLIFY_DEFAULTS["resize"], max_videos: int | None = None) -> GateContrast:
    """The gate's means over the videos of ``mag_store`` (a magnitude frame store of the dataset generated
    under ``dataset_root``, prepared at the videos' own size).

    Args:
        grid: side of the conv map the gate multiplies (13 for the tiny backbone's conv5 at 64 x 64).
        crop_size: the net's input side (the centre crop is resized to ``grid``).
        offset, scale, resize: the FlowAmplify parameters.
        max_videos: use only the first videos (sorted by id).
    """
    sums = np.zeros(4)
    counts = np.zeros(4)
    frames = 0
    videos = sorted(v.video_id for v in mag_store.index.videos)[:max_videos]
    wy, wx = resize_matrices((crop_size, crop_size), (grid, grid), resize)
    for video_id in videos:
        discs, moving = read_masks(dataset_root, video_id)
        for t in range(1, mag_store.num_frames(video_id) + 1):
            gate = offset + scale * mag_store.get_image(video_id, t).astype(np.float64)
            mask = moving[t - 1]
            if gate.shape != mask.shape:
                raise ValueError(f"{video_id}: magnitude {gate.shape} and mask {mask.shape} differ: prepare the "
                                 "data at the videos' own size to check the gate against the masks")
            background = discs[t - 1] == 0  # no disc, still or moving
            sums[:2] += gate[mask].sum(), gate[background].sum()
            counts[:2] += mask.sum(), background.sum()
            cell_gate = wy @ _centre(gate, crop_size) @ wx.T
            cover = wy @ _centre(mask.astype(np.float64), crop_size) @ wx.T
            bg_cover = wy @ _centre(background.astype(np.float64), crop_size) @ wx.T
            cells_moving, cells_bg = cover >= 0.5, bg_cover >= 1 - 1e-6
            sums[2:] += cell_gate[cells_moving].sum(), cell_gate[cells_bg].sum()
            counts[2:] += cells_moving.sum(), cells_bg.sum()
            frames += 1
    if not frames or counts.min() == 0:
        raise ValueError(f"no moving-disc or background pixels found in {len(videos)} videos")
    means = sums / counts
    return GateContrast(*means.tolist(), frames=frames)


#: The kinds of confusable pairs, in report order.
PAIR_KINDS = {"binding": BINDING_CONFUSED, "appearance": APPEARANCE_CONFUSED, "motion": MOTION_CONFUSED}


def pair_accuracies(per_class: Mapping[str, Sequence[float]], classes: Sequence[str],
                    kind: str = "binding") -> list[tuple[str, str, dict[str, tuple[float, float]]]]:
    """For every pair of ``kind``: ``(class a, class b, {name: (accuracy on a, accuracy on b)})``.

    Args:
        per_class: ``{name: per-class accuracy in label order}`` (e.g. one entry per net).
        classes: class names in label order (UCF101 spelling).
    """
    if kind not in PAIR_KINDS:
        raise ValueError(f"unknown pair kind {kind!r}; choose one of {sorted(PAIR_KINDS)}")
    index = {name: i for i, name in enumerate(classes)}
    missing = sorted({c for pair in PAIR_KINDS[kind] for c in pair} - set(index))
    if missing:
        raise ValueError(f"classes {missing} of the {kind} pairs are not among {list(classes)}")
    return [(a, b, {name: (float(acc[index[a]]), float(acc[index[b]])) for name, acc in per_class.items()})
            for a, b in PAIR_KINDS[kind]]
