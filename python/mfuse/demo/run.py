"""The built-in main job: the paper's whole pipeline on the synthetic action dataset, on a CPU.

Stages (each skipped when its outputs are complete, so re-running is cheap; ``timings.json`` keeps the
seconds every stage took when it ran):

1. ``dataset/``: synthetic videos in UCF101 layout, with the discs' masks (:mod:`mfuse.synthetic`).
2. ``data/``: frames, TV-L1 flow with mean flow subtraction, magnitude, LMDBs
   (:func:`mfuse.prep.pipeline.prepare_dataset`).
3. ``pretrain/``: the tiny backbone pretrained on the synthetic image task, the stand-in for ImageNet
   (:func:`mfuse.pretrain.pretrain_backbone`).
4. ``seed<k>/``, for every seed: tiny-backbone nets and solvers (:mod:`mfuse.nets`); the spatial and temporal
   nets initialised from the pretrained model as from an ImageNet model (:func:`mfuse.surgery.init_from_imagenet`,
   cross-modality for the temporal net); ``caffe train`` of spatial (FC layers on frozen convs), temporal,
   amplified spatial (from the spatial net), and the four fusion nets (towers from the trained streams by
   :func:`mfuse.surgery.init_fusion`); the frames x 10-crop test of every net (:mod:`mfuse.evaluation.testing`);
   late fusion (S+T, S(amp)+T, 2:3:4 with m-fusion).
5. ``results/``: a table shaped like the paper's Tables 1-3 (mean +- std over seeds), the mechanism check
   (streams against their designed ceilings, training losses, the gate's contrast on moving discs, the
   binding pairs), per-class bars, confusion matrix, training curves, Figure 3/4-style examples
   (:mod:`mfuse.demo.report`, which takes the results as plain data); ``results/results.md`` is printed.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from mfuse.conventions import FUSION_KINDS, MODALITIES, NET_NAMES
from mfuse.demo.report import example_videos, write_report
from mfuse.evaluation import (Protocol, ScoreSet, average_fusion, evaluate_net, load_scores, load_test_net,
                              paper_weighted_fusion)
from mfuse.fileio import write_atomic
from mfuse.nets.backbones import get_backbone
from mfuse.nets.build_all import custom_set, write_all
from mfuse.prep.frames import ExtractSettings
from mfuse.prep.pipeline import prepare_dataset
from mfuse.pretrain import ImageTaskConfig, PretrainConfig, pretrain_backbone
from mfuse.reports.train_log import read_train_log
from mfuse.stores.reader import open_frame_store, open_frame_stores
from mfuse.surgery import init_fusion, init_from_imagenet
from mfuse.synthetic import UCF101_LIST_DIR, SyntheticConfig, generate
from mfuse.demo.mechanism import gate_contrast
from mfuse.training import train

#: The nets trained first, from the pretrained backbone; spatial_amp starts from spatial, the fusion nets from
#: both.
STREAMS = ("spatial", "temporal")
BACKBONE = "tiny"
TIMINGS = "timings.json"

#: The demo's dataset (docs/demo-design-notes.md says how it was chosen): 96 x 72 frames, so that 64 x 64
#: crops give the tiny backbone CNN-M's 13 x 13 conv5 and 6 x 6 pool5 grid and the discs move ~3 px a frame.
DEMO_SYNTHETIC = SyntheticConfig(num_groups=8, clips_per_group=4, size=(96, 72), num_frames=20, seed=0)
#: Flow quantisation bound (px): TSN's 20 px at 256-pixel frames scaled to the 72-pixel frames (a 3 px motion
#: then reaches the tiny temporal net with ~1/3 of the input range instead of ~1/13, which left it at chance).
DEMO_FLOW_BOUND = 6.0
#: Test frames per video: a 20-frame clip has 10 flow-stack starts, so the paper's 25 positions would repeat
#: each start 2-3 times; 10 take each once (x 10 crops, as the paper).
DEMO_TEST_FRAMES = 10
#: The stand-in for ImageNet: the tiny backbone on the synthetic image task, 72 x 72 images, 64 x 64 crops.
DEMO_PRETRAIN = PretrainConfig(images=ImageTaskConfig(), backbone=BACKBONE)


@dataclass(frozen=True)
class DemoConfig:
    """Settings of one demo run.

    Args:
        out: the run directory.
        seeds: training seeds (the table reports mean +- std over them).
        split: the split trained and tested.
        synthetic: the dataset's parameters.
        flow_algorithm: ``tvl1`` (the paper's successors), ``farneback`` or ``dis``.
        flow_subtract: camera-motion compensation of the flow, ``mean`` ([18] and the paper), ``median``,
            ``none`` (see :mod:`mfuse.prep.flow`).
        flow_bound: the flow's quantisation bound in pixels.
        pretrain: the pretraining stand-in for ImageNet.
        frames, crop_mode: the test protocol (25 and ``ten`` in the paper; 10 frames cover every flow-stack
            start of the demo's 20-frame clips).
        max_iter: shorten every solver to this many iterations (None: the tiny schedules).
        workers: processes for data preparation.
    """
    out: Path
    seeds: tuple[int, ...] = (1, 2, 3)
    split: int = 1
    synthetic: SyntheticConfig = DEMO_SYNTHETIC
    flow_algorithm: str = "tvl1"
    flow_subtract: str = "mean"
    flow_bound: float = DEMO_FLOW_BOUND
    pretrain: PretrainConfig = DEMO_PRETRAIN
    frames: int = DEMO_TEST_FRAMES
    crop_mode: str = "ten"
    max_iter: int | None = None
    workers: int = 2
    progress: bool = True


def quick_config(out: Path, progress: bool = False) -> DemoConfig:
    """A few videos and iterations: every stage and artifact in about two minutes (for the tests)."""
    quick_pretrain = replace(DEMO_PRETRAIN, images=replace(DEMO_PRETRAIN.images, num_shapes=2, num_hues=2,
                                                            num_textures=1, train_per_class=4, val_per_class=2),
                             schedule=_shortened(DEMO_PRETRAIN.schedule, 6), batch_size=8)
    return DemoConfig(out=Path(out), seeds=(1,), synthetic=replace(DEMO_SYNTHETIC, num_groups=4, clips_per_group=1,
                                                                   num_frames=14),
                      flow_algorithm="dis", pretrain=quick_pretrain, frames=3, max_iter=6, progress=progress)


@contextmanager
def timed(out: Path, stage: str) -> Iterator[None]:
    """Records the wall-clock seconds of the block in ``<out>/timings.json`` under ``stage``; a stage that
    is skipped later (done already, under a second) keeps the time it took when it ran."""
    start = time.perf_counter()
    yield
    seconds = time.perf_counter() - start
    path = out / TIMINGS
    timings = json.loads(path.read_text()) if path.is_file() else {}
    if seconds > 1.0 or stage not in timings:
        timings[stage] = round(seconds, 1)
        write_atomic(path, json.dumps(timings, indent=1) + "\n")


def extract_settings(config: DemoConfig) -> ExtractSettings:
    """How the demo's frames and flow are made: at the videos' own size (the masks' size)."""
    return ExtractSettings(short_side=None, flow_algorithm=config.flow_algorithm, flow_subtract=config.flow_subtract,
                           bound=config.flow_bound)


def prepare_data(config: DemoConfig) -> Path:
    """Stages 1-2: the synthetic videos and their frames, flow and LMDBs; returns the data folder."""
    dataset_root, data_root = config.out / "dataset", config.out / "data"
    with timed(config.out, "dataset"):
        generate(dataset_root, config.synthetic, progress=config.progress)
    with timed(config.out, "prepare"):
        summary = prepare_dataset("ucf101", dataset_root, dataset_root / UCF101_LIST_DIR, data_root,
                                  extract_settings(config), splits=(config.split,), workers=config.workers,
                                  progress=config.progress)
    if summary.failures:
        raise RuntimeError(f"data preparation failed for {len(summary.failures)} videos; see {data_root}/failures.tsv")
    return data_root


def pretrain(config: DemoConfig) -> Path:
    """Stage 3: the pretrained tiny backbone (the stand-in for an ImageNet caffemodel)."""
    with timed(config.out, "pretrain"):
        return pretrain_backbone(config.out / "pretrain", config.pretrain, progress=config.progress)


def _shortened(schedule, max_iter: int):
    return replace(schedule, max_iter=max_iter, steps=(max(1, max_iter // 2),), snapshot=max_iter,
                   test_interval=10 * max_iter)


def seed_net_set(config: DemoConfig, data_root: Path, seed: int):
    """The tiny nets of one seed, reading ``data_root`` and snapshotting under ``seed<k>/runs``."""
    net_set = custom_set(BACKBONE, "synthetic", source=str(data_root.resolve()), split=config.split,
                         runs_dir=str((config.out / f"seed{seed}" / "runs").resolve()), seed=seed)
    if config.max_iter:
        net_set = replace(net_set, **{name: _shortened(getattr(net_set, name), config.max_iter)
                                      for name in ("spatial_schedule", "temporal_schedule", "fusion_schedule")})
    return net_set


def train_seed(config: DemoConfig, data_root: Path, seed: int, pretrained: Path) -> dict[str, Path]:
    """Writes one seed's prototxts and trains its nets; returns ``{net: final caffemodel}``.

    The streams start from ``pretrained`` as the paper's start from ImageNet (:func:`init_from_imagenet`): the
    spatial net copies every layer but the classifier and trains its FC layers only, the temporal net gets
    conv1 by cross-modality averaging and trains everything."""
    seed_dir = config.out / f"seed{seed}"
    proto = (seed_dir / "prototxt").resolve()
    write_all(proto, [seed_net_set(config, data_root, seed)], net_root=str(proto))
    logs = seed_dir / "logs"
    kwargs = dict(cwd=seed_dir, progress=config.progress)
    models = {}
    for net in STREAMS:
        init = seed_dir / "init" / f"{net}.caffemodel"
        if not init.exists():
            init_from_imagenet(proto / f"{net}_deploy.prototxt", pretrained, init, cross_modality=net == "temporal")
        with timed(config.out, f"seed{seed}/train/{net}"):
            models[net] = train(proto / f"{net}_solver.prototxt", logs / f"{net}.log", weights=init, **kwargs)
    with timed(config.out, f"seed{seed}/train/spatial_amp"):
        models["spatial_amp"] = train(proto / "spatial_amp_solver.prototxt", logs / "spatial_amp.log",
                                      weights=models["spatial"], **kwargs)
    for net in FUSION_KINDS:
        init = seed_dir / "init" / f"{net}.caffemodel"
        if not init.exists():
            init_fusion(proto / f"{net}_deploy.prototxt", models["spatial"], models["temporal"], init)
        with timed(config.out, f"seed{seed}/train/{net}"):
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
        with timed(config.out, f"seed{seed}/test/{net_name}"):
            scores[net_name] = evaluate_net(net, stores, path, meta, protocol, workers=config.workers,
                                            progress=config.progress)
    scores["S+T"] = average_fusion({"spatial": scores["spatial"], "temporal": scores["temporal"]})
    scores["Samp+T"] = average_fusion({"spatial_amp": scores["spatial_amp"], "temporal": scores["temporal"]})
    for kind in ("conv5", "fc7"):
        scores[f"final_{kind}"] = paper_weighted_fusion(scores[f"mfuse_{kind}"], scores["spatial_amp"],
                                                        scores["temporal"])
    return scores


def run_seed(config: DemoConfig, data_root: Path, seed: int, pretrained: Path) -> dict[str, ScoreSet]:
    """Train and test every net of one seed."""
    return evaluate_seed(config, data_root, seed, train_seed(config, data_root, seed, pretrained))


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
            "flow_subtract": config.flow_subtract, "flow_bound": config.flow_bound,
            "pretrain": {"categories": config.pretrain.images.num_classes,
                         "iterations": config.pretrain.schedule.max_iter},
            "protocol": f"{config.frames} frames x {config.crop_mode} crops", "max_iter": config.max_iter,
            "nets": list(NET_NAMES)}


def final_losses(config: DemoConfig, nets: Sequence[str], last: int = 5) -> dict[str, list[float]]:
    """Per net, one value per seed: the mean smoothed training loss of its last ``last`` displayed iterations."""
    losses: dict[str, list[float]] = {}
    for seed in config.seeds:
        for net in nets:
            path = config.out / f"seed{seed}" / "logs" / f"{net}.log"
            _, values = read_train_log(path).series("train", "smoothed_loss") if path.is_file() else ([], [])
            if values:
                losses.setdefault(net, []).append(float(np.mean(values[-last:])))
    return losses


def mechanism(config: DemoConfig, data_root: Path) -> dict:
    """The mechanism check's measurements as plain data: the amplification gate (offset 1, scale 1, as the
    committed nets) on moving discs vs background of the test videos, the final training losses, the
    seconds per stage."""
    backbone = get_backbone(BACKBONE)
    grid = backbone.spatial_sizes(backbone.crop_size)[backbone.last_conv]
    gate = gate_contrast(config.out / "dataset", open_frame_store(data_root, config.split, "test", "mag"), grid,
                         backbone.crop_size)
    timings = config.out / TIMINGS
    return {"gate": {**asdict(gate), "grid": grid}, "losses": final_losses(config, NET_NAMES),
            "timings": json.loads(timings.read_text()) if timings.is_file() else {}}


def run_demo(config: DemoConfig) -> Path:
    """Runs every stage; returns the path of ``results/results.md``."""
    config = replace(config, out=Path(config.out).resolve())
    config.out.mkdir(parents=True, exist_ok=True)
    data_root = prepare_data(config)
    pretrained = pretrain(config)
    per_seed = {seed: run_seed(config, data_root, seed, pretrained) for seed in config.seeds}
    first_seed = min(per_seed)
    classes = open_frame_store(data_root, config.split, "test", "rgb").index.classes
    examples = load_examples(data_root, config.split, example_videos(per_seed[first_seed]["spatial"]))
    logs = sorted((config.out / f"seed{first_seed}" / "logs").glob("*.log"))
    return write_report(config.out / "results", describe(config), per_seed, classes, examples, logs,
                        mechanism(config, data_root))
