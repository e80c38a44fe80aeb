"""The built-in main job: the paper's whole pipeline on the synthetic action dataset, on a CPU.

Stages (each skipped when its outputs are complete, so re-running is cheap):

1. ``dataset/``: synthetic videos in UCF101 layout (:mod:`mfuse.synthetic`).
2. ``data/``: frames, TV-L1 flow, magnitude, LMDBs (:func:`mfuse.prep.pipeline.prepare_dataset`).
3. ``seed<k>/``, for every seed: tiny-backbone nets and solvers (:mod:`mfuse.nets`), then ``caffe train`` of
   spatial, temporal, amplified spatial (from the spatial net), and the four fusion nets (towers from the
   trained streams by :func:`mfuse.surgery.init_fusion`); the 25-frame x 10-crop test of every net
   (:mod:`mfuse.evaluation.testing`); late fusion (S+T, S(amp)+T, 2:3:4 with m-fusion).
4. ``results/``: a table shaped like the paper's Tables 1-3 (mean +- std over seeds), per-class bars,
   confusion matrix, training curves, Figure 3/4-style examples (:mod:`mfuse.demo.report`, which takes the
   results as plain data); ``results/results.md`` is printed.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mfuse.conventions import FUSION_KINDS, MODALITIES, NET_NAMES
from mfuse.demo.report import example_videos, write_report
from mfuse.evaluation import (Protocol, ScoreSet, average_fusion, evaluate_net, load_scores, load_test_net,
                              paper_weighted_fusion)
from mfuse.nets.build_all import custom_set, write_all
from mfuse.prep.frames import ExtractSettings
from mfuse.prep.pipeline import prepare_dataset
from mfuse.stores.reader import open_frame_store, open_frame_stores
from mfuse.surgery import init_fusion
from mfuse.synthetic import UCF101_LIST_DIR, SyntheticConfig, generate
from mfuse.training import train

#: The nets trained first, from their fillers; spatial_amp starts from spatial, the fusion nets from both.
STREAMS = ("spatial", "temporal")


@dataclass(frozen=True)
class DemoConfig:
    """Settings of one demo run.

    Args:
        out: the run directory.
        seeds: training seeds (the table reports mean +- std over them).
        split: the split trained and tested.
        synthetic: the dataset's parameters.
        flow_algorithm: ``tvl1`` (the paper's successors), ``farneback`` or ``dis``.
        frames, crop_mode: the test protocol (25 and ``ten`` in the paper).
        max_iter: shorten every solver to this many iterations (None: the tiny schedules).
        workers: processes for data preparation.
    """
    out: Path
    seeds: tuple[int, ...] = (1, 2, 3)
    split: int = 1
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    flow_algorithm: str = "tvl1"
    frames: int = 25
    crop_mode: str = "ten"
    max_iter: int | None = None
    workers: int = 2
    progress: bool = True


def quick_config(out: Path, progress: bool = False) -> DemoConfig:
    """A few videos and iterations: every stage and artifact in about two minutes (for the tests)."""
    return DemoConfig(out=Path(out), seeds=(1,), synthetic=SyntheticConfig(num_groups=4, clips_per_group=1,
                                                                           num_frames=14),
                      frames=3, max_iter=6, progress=progress)


def prepare_data(config: DemoConfig) -> Path:
    """Stages 1-2: the synthetic videos and their frames, flow and LMDBs; returns the data folder."""
    dataset_root, data_root = config.out / "dataset", config.out / "data"
    generate(dataset_root, config.synthetic, progress=config.progress)
    summary = prepare_dataset("ucf101", dataset_root, dataset_root / UCF101_LIST_DIR, data_root,
                              ExtractSettings(short_side=None, flow_algorithm=config.flow_algorithm),
                              splits=(config.split,), workers=config.workers, progress=config.progress)
    if summary.failures:
        raise RuntimeError(f"data preparation failed for {len(summary.failures)} videos; see {data_root}/failures.tsv")
    return data_root


def _shortened(schedule, max_iter: int):
    return replace(schedule, max_iter=max_iter, steps=(max(1, max_iter // 2),), snapshot=max_iter,
                   test_interval=10 * max_iter)


def seed_net_set(config: DemoConfig, data_root: Path, seed: int):
    """The tiny nets of one seed, reading ``data_root`` and snapshotting under ``seed<k>/runs``."""
    net_set = custom_set("tiny", "synthetic", source=str(data_root.resolve()), split=config.split,
                         runs_dir=str((config.out / f"seed{seed}" / "runs").resolve()), seed=seed)
    if config.max_iter:
        net_set = replace(net_set, **{name: _shortened(getattr(net_set, name), config.max_iter)
                                      for name in ("spatial_schedule", "temporal_schedule", "fusion_schedule")})
    return net_set


def train_seed(config: DemoConfig, data_root: Path, seed: int) -> dict[str, Path]:
    """Writes one seed's prototxts and trains its nets; returns ``{net: final caffemodel}``."""
    seed_dir = config.out / f"seed{seed}"
    proto = (seed_dir / "prototxt").resolve()
    write_all(proto, [seed_net_set(config, data_root, seed)], net_root=str(proto))
    logs = seed_dir / "logs"
    kwargs = dict(cwd=seed_dir, progress=config.progress)
    models = {net: train(proto / f"{net}_solver.prototxt", logs / f"{net}.log", **kwargs) for net in STREAMS}
    models["spatial_amp"] = train(proto / "spatial_amp_solver.prototxt", logs / "spatial_amp.log",
                                  weights=models["spatial"], **kwargs)
    for net in FUSION_KINDS:
        init = seed_dir / "init" / f"{net}.caffemodel"
        if not init.exists():
            init_fusion(proto / f"{net}_deploy.prototxt", models["spatial"], models["temporal"], init)
        models[net] = train(proto / f"{net}_solver.prototxt", logs / f"{net}.log", weights=init, **kwargs)
    return models


def evaluate_seed(config: DemoConfig, data_root: Path, seed: int, models: dict[str, Path]) -> dict[str, ScoreSet]:
    """The 25 x 10 test of every net of one seed (crops of each net's input size), then late fusion; returns
    ``{name: ScoreSet}``."""
    seed_dir = config.out / f"seed{seed}"
    protocol = Protocol(frames=config.frames, crop_mode=config.crop_mode)
    stores = open_frame_stores(data_root, config.split, "test", MODALITIES)
    scores = {}
    for net_name, weights in models.items():
        path = seed_dir / "scores" / f"{net_name}.npz"
        if path.exists():
            scores[net_name] = load_scores(path)
            continue
        net = load_test_net(seed_dir / "prototxt" / f"{net_name}_deploy.prototxt", weights)
        meta = {"dataset": "synthetic", "split": config.split, "subset": "test", "net": net_name,
                "weights": str(weights), "seed": seed}
        scores[net_name] = evaluate_net(net, stores, path, meta, protocol, workers=config.workers,
                                        progress=config.progress)
    scores["S+T"] = average_fusion({"spatial": scores["spatial"], "temporal": scores["temporal"]})
    scores["Samp+T"] = average_fusion({"spatial_amp": scores["spatial_amp"], "temporal": scores["temporal"]})
    for kind in ("conv5", "fc7"):
        scores[f"final_{kind}"] = paper_weighted_fusion(scores[f"mfuse_{kind}"], scores["spatial_amp"],
                                                        scores["temporal"])
    return scores


def run_seed(config: DemoConfig, data_root: Path, seed: int) -> dict[str, ScoreSet]:
    """Train and test every net of one seed."""
    return evaluate_seed(config, data_root, seed, train_seed(config, data_root, seed))


def load_examples(data_root: Path, split: int, video_ids: Sequence[str]
                  ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{video_id: (BGR frame, magnitude map)}`` at the middle flow image of each video (test subset)."""
    rgb = open_frame_store(data_root, split, "test", "rgb")
    mag = open_frame_store(data_root, split, "test", "mag")
    examples = {}
    for video_id in video_ids:
        t = max(1, mag.num_frames(video_id) // 2)
        examples[video_id] = (rgb.get_image(video_id, t), mag.get_image(video_id, t))
    return examples


def describe(config: DemoConfig) -> dict:
    """What the run is, for the report header (plain JSON data)."""
    return {"dataset": "synthetic (mfuse.synthetic), UCF101 layout", "config": json.loads(json.dumps(
        {k: getattr(config.synthetic, k) for k in ("num_groups", "clips_per_group", "size", "num_frames", "seed")})),
            "seeds": list(config.seeds), "split": config.split, "flow": config.flow_algorithm,
            "protocol": f"{config.frames} frames x {config.crop_mode} crops", "max_iter": config.max_iter,
            "nets": list(NET_NAMES)}


def run_demo(config: DemoConfig) -> Path:
    """Runs every stage; returns the path of ``results/results.md``."""
    config = replace(config, out=Path(config.out).resolve())
    config.out.mkdir(parents=True, exist_ok=True)
    data_root = prepare_data(config)
    per_seed = {seed: run_seed(config, data_root, seed) for seed in config.seeds}
    first_seed = min(per_seed)
    classes = open_frame_store(data_root, config.split, "test", "rgb").index.classes
    examples = load_examples(data_root, config.split, example_videos(per_seed[first_seed]["spatial"]))
    logs = sorted((config.out / f"seed{first_seed}" / "logs").glob("*.log"))
    return write_report(config.out / "results", describe(config), per_seed, classes, examples, logs)
