"""The measurements behind the report's mechanism check and stage times, gathered from a run folder as plain data.

- :func:`final_losses`: each net's final smoothed training loss, one value per split and seed (from its log);
- :func:`gate_measurement`: the FlowAmplify gate on moving discs vs background of the synthetic test videos
  (:func:`mfuse.evaluation.mechanism.gate_contrast`, from the generator's masks), or why it cannot be measured;
- :func:`stage_seconds`: ``{stage: seconds}`` from the provenance records (the time each stage took when it ran).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from mfuse.evaluation.mechanism import gate_contrast
from mfuse.nets.backbones import get_backbone
from mfuse.recipe.provenance import Provenance
from mfuse.reports.train_log import read_train_log
from mfuse.stores.reader import open_frame_store

#: Displayed iterations averaged for a net's final training loss.
LAST_DISPLAYS = 5


def final_losses(logs: Iterable[tuple[str, Path]], last: int = LAST_DISPLAYS) -> dict[str, list[float]]:
    """``{net: [final loss per log]}``: the mean smoothed loss of each log's last ``last`` displayed iterations.

    Args:
        logs: ``(net, Caffe log)`` pairs; a missing log or one without a displayed loss is left out.
    """
    losses: dict[str, list[float]] = {}
    for net, path in logs:
        if not Path(path).is_file():
            continue
        _, values = read_train_log(path).series("train", "smoothed_loss")
        if values:
            losses.setdefault(net, []).append(float(np.mean(values[-last:])))
    return losses


def gate_measurement(dataset_root: Path, data_root: Path, split: int, storage: str, backbone: str,
                     at_video_size: bool) -> tuple[dict | None, str]:
    """The gate's means on moving discs and background of the split's test videos, on the frames and on the
    backbone's last conv grid: ``(GateContrast fields + grid, "")``, or ``(None, why not)``.

    Args:
        dataset_root: the synthetic dataset (its ``masks/``).
        data_root: the prepared data; ``at_video_size``: whether its frames kept the videos' size (the masks'),
            the only case the masks describe.
    """
    if not at_video_size:
        return None, "the frames were resized in preparation, so the generator's masks do not fit them"
    spec = get_backbone(backbone)
    grid = spec.spatial_sizes(spec.crop_size)[spec.last_conv]
    store = open_frame_store(data_root, split, "test", "mag", storage)
    gate = gate_contrast(dataset_root, store, grid, spec.crop_size)
    return {**dataclasses.asdict(gate), "grid": grid}, ""


def stage_seconds(provenance_root: Path) -> dict[str, float]:
    """``{stage: seconds}`` of every stage recorded under ``provenance_root``, in the order they finished."""
    return {record["stage"]: float(record.get("seconds", 0.0)) for record in Provenance(provenance_root).records()}
