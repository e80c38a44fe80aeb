"""The plan of a run: every stage, in order, with its files, settings, equivalent command and time estimate.

Stages (``<k>``: split, ``<s>``: seed; one run folder ``<out>``)::

    dataset                       the synthetic videos (format "synthetic" only)        <out>/dataset/
    data                          frames, flow, frame stores of every split (+ held out)  <data>/
    pretrain                      the tiny backbone's pretraining stand-in (pretrain = "standin" only)
    split<k>/seed<s>/nets         nets and solvers of the split and seed                  prototxt/
    split<k>/seed<s>/init_spatial, init_temporal    ImageNet init (temporal: cross-modality)   init/
    split<k>/seed<s>/spatial, spatial_amp, temporal     the streams (S(amp) from S)          runs/, logs/
    split<k>/seed<s>/init_<fusion>, <fusion>        fusion init, then baseline_a, baseline_b, mfuse_conv5, mfuse_fc7
    split<k>/seed<s>/test_<net>   the 25 x 10 test of every net                         scores/
    split<k>/seed<s>/heldout_<net>    the final fusion's streams on the held-out training videos   scores/heldout/
    split<k>/seed<s>/fusion       S + T, S (amp) + T, 2 : 3 : 4, searched weights           fusion/
    report                        Tables 1-3 per split and over splits, pictures           results/

Every path under a split/seed folder is ``<out>/split<k>/seed<s>/...``. A stage's inputs and outputs are
computed when it runs (the dataset's videos exist only after ``dataset``).
"""
from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mfuse.conventions import FUSION_KINDS, MODALITIES, NET_NAMES, SPLITS, SUBSETS
from mfuse.evaluation import Protocol, load_scores
from mfuse.fileio import write_atomic
from mfuse.nets.build_all import COMMITTED, NetSet, custom_set, set_files
from mfuse.recipe.data import (HELDOUT_SEED, HELDOUT_SUBSET, DatasetLists, dataset_lists, heldout_root, prepare_data,
                               store_path, store_paths)
from mfuse.recipe.estimates import Estimate, Speeds
from mfuse.recipe.report import example_videos, write_report
from mfuse.recipe.experiment import Experiment
from mfuse.recipe.mechanism import final_losses, gate_measurement, stage_seconds
from mfuse.recipe.stages import (HELDOUT_NETS, RecipeError, fusion_score_names, late_fusion, eval_gpu, test_net,
                                 train_net)
from mfuse.pretrain import PRETRAINED_MODEL, pretrain_backbone
from mfuse.stores.reader import open_frame_store
from mfuse.surgery import init_from_imagenet, init_fusion
from mfuse.synthetic import generate
from mfuse.training import BATCH_SPLIT

#: The schedule table of each net.
TABLE_OF = {"spatial": "spatial", "spatial_amp": "spatial", "temporal": "temporal",
            **{net: "fusion" for net in FUSION_KINDS}}


@dataclass
class Stage:
    """One step of the plan. ``action(identity)`` does it; ``identity`` holds its settings and its inputs'
    fingerprints (resumable stages keep it beside their partial work). ``always``: cheap stages that run
    every time (their outputs' fingerprints still decide whether later stages rerun)."""
    name: str
    command: str
    settings: dict
    inputs: Callable[[], list[Path]]
    outputs: Callable[[], list[Path]]
    action: Callable[[Mapping], object]
    estimate: Estimate = field(default_factory=lambda: Estimate(0.0, "seconds"))
    always: bool = False


@dataclass(frozen=True)
class Facts:
    """What the plan needs to know of the dataset: class count, and per split the training (after holding out),
    held-out and test videos; the frames of all videos when known (for the preparation estimate)."""
    classes: int
    videos: int
    train: Mapping[int, int]
    heldout: Mapping[int, int]
    test: Mapping[int, int]
    frames: int | None = None
    frame_size: tuple[int, int] | None = None

    @classmethod
    def from_lists(cls, lists: DatasetLists, frames: int | None = None, frame_size: tuple[int, int] | None = None
                   ) -> Facts:
        return cls(len(lists.classes), len(lists.videos), {k: len(v) for k, v in lists.train.items()},
                   {k: len(v) for k, v in lists.heldout.items()},
                   {k: len(lists.official[(k, "test")]) for k in lists.train}, frames, frame_size)

    def describe(self, name: str) -> str:
        lines = [f"dataset: {name}, {self.classes} classes, {self.videos} videos"
                 + (f", {self.frames} frames" if self.frames else "")
                 + (f" of {self.frame_size[0]}x{self.frame_size[1]} after resizing" if self.frame_size else "")]
        for split in sorted(self.train):
            held = self.heldout.get(split, 0)
            lines.append(f"  split {split}: {self.train[split]} training videos"
                         + (f" (+ {held} held out for the fusion weights)" if held else "")
                         + f", {self.test[split]} test videos")
        return "\n".join(lines)


def rel(path: Path | str) -> str:
    """``path`` relative to the working directory when it lies below it (for printed commands)."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def command(*parts) -> str:
    return " ".join(shlex.quote(rel(p) if isinstance(p, Path) else str(p)) for p in parts)


class Recipe:
    """The stages of one experiment; ``lists`` (the parsed split lists) are read when first needed."""

    def __init__(self, experiment: Experiment, progress: bool = True, speeds: Speeds | None = None):
        self.exp = dataclasses.replace(experiment, out=Path(experiment.out).resolve())
        self.progress = progress
        self.speeds = speeds or Speeds.load()
        self._lists: DatasetLists | None = None

    # ----------------------------------------------------------------------------------------- paths
    @property
    def lists(self) -> DatasetLists:
        if self._lists is None:
            exp = self.exp
            self._lists = dataset_lists(exp.list_format, exp.lists_dir, exp.videos_root, exp.dataset.splits,
                                        exp.train.heldout_fraction)
        return self._lists

    @property
    def data_root(self) -> Path:
        return Path(self.exp.data_root).resolve()

    def seed_dir(self, split: int, seed: int) -> Path:
        return self.exp.out / f"split{split}" / f"seed{seed}"

    def proto(self, split: int, seed: int, net: str, kind: str) -> Path:
        return self.seed_dir(split, seed) / "prototxt" / f"{net}_{kind}.prototxt"

    def final(self, split: int, seed: int, net: str) -> Path:
        max_iter = self.exp.schedule(TABLE_OF[net]).max_iter
        return self.seed_dir(split, seed) / "runs" / net / f"snap_iter_{max_iter}.caffemodel"

    def init(self, split: int, seed: int, net: str) -> Path:
        return self.seed_dir(split, seed) / "init" / f"{net}.caffemodel"

    def scores(self, split: int, seed: int, net: str, heldout: bool = False) -> Path:
        return self.seed_dir(split, seed) / "scores" / ("heldout" if heldout else "") / f"{net}.npz"

    def fused(self, split: int, seed: int, name: str) -> Path:
        return self.seed_dir(split, seed) / "fusion" / f"{name}.npz"

    def log(self, split: int, seed: int, net: str) -> Path:
        return self.seed_dir(split, seed) / "logs" / f"{net}.log"

    @property
    def results(self) -> Path:
        return self.exp.out / "results"

    @property
    def pretrained(self) -> Path | None:
        """The model the stream nets' backbone layers start from: ImageNet, the stand-in, or None."""
        if self.exp.model.imagenet is not None:
            return Path(self.exp.model.imagenet).resolve()
        if self.exp.model.pretrain == "standin":
            return self.pretrain_dir / PRETRAINED_MODEL
        return None

    @property
    def pretrain_dir(self) -> Path:
        """Where the pretraining stand-in is trained (``model.pretrain = "standin"``)."""
        return self.exp.out / "pretrain"

    @property
    def heldout(self) -> bool:
        return self.exp.train.heldout_fraction > 0

    def stores(self, split: int, heldout: bool = False) -> list[Path]:
        """The frame stores of one split: its train and test stores, or its held-out stores."""
        storage = self.exp.data.storage
        if heldout:
            return [store_path(heldout_root(self.data_root), split, HELDOUT_SUBSET, m, storage) for m in MODALITIES]
        return [store_path(self.data_root, split, subset, m, storage) for subset in SUBSETS for m in MODALITIES]

    def net_set(self, split: int, seed: int, num_classes: int) -> NetSet:
        """The backbone's set for this run's data, split and seed, with its batches, schedules and sizes."""
        exp, base = self.exp, COMMITTED[self.exp.model.backbone]
        net_set = custom_set(exp.model.backbone, num_classes, str(self.data_root), split, exp.data.storage,
                             exp.model.fusion_activation, str(self.seed_dir(split, seed) / "runs"), seed)
        return dataclasses.replace(
            net_set, stream_batch=exp.batch("spatial"), fusion_batch=exp.batch("fusion"),
            spatial_schedule=exp.schedule("spatial"), temporal_schedule=exp.schedule("temporal"),
            fusion_schedule=exp.schedule("fusion"), freeze_spatial_convs=self.pretrained is not None,
            fusion_k=exp.model.fusion_k or base.fusion_k, fusion_head=exp.model.fusion_head or base.fusion_head)

    # ---------------------------------------------------------------------------------------- stages
    def stages(self, facts: Facts) -> list[Stage]:
        """Every stage of the run, in order."""
        stages = []
        if self.exp.dataset.format == "synthetic":
            stages.append(self._dataset_stage())
        stages.append(self._data_stage(facts))
        if self.exp.model.pretrain == "standin":
            stages.append(self._pretrain_stage())
        for split in self.exp.dataset.splits:
            for seed in self.exp.train.seeds:
                stages += self._seed_stages(split, seed, facts)
        stages.append(self._report_stage())
        return stages

    def _dataset_stage(self) -> Stage:
        config = self.exp.dataset.synthetic
        root = self.exp.videos_root
        settings = dataclasses.asdict(config)
        return Stage("dataset", command("python", "tools/make_synthetic.py", root, "--num-groups", config.num_groups,
                                        "--clips-per-group", config.clips_per_group, "--size", *config.size,
                                        "--num-frames", config.num_frames, "--seed", config.seed, "--layout",
                                        config.layout),
                     settings, lambda: [], lambda: [root / "synthetic.json"],
                     lambda _: generate(root, config, progress=self.progress))

    def _data_stage(self, facts: Facts) -> Stage:
        exp = self.exp
        extract = exp.data.extract
        settings = {"format": exp.list_format, "splits": list(exp.dataset.splits), "extract": extract.as_json(),
                    "storage": exp.data.storage, "heldout_fraction": exp.train.heldout_fraction,
                    "heldout_seed": HELDOUT_SEED}
        text = command("python", "tools/prepare.py", exp.list_format, "--videos", Path(exp.videos_root), "--splits",
                       Path(exp.lists_dir), "--out", self.data_root, "--split-ids", *exp.dataset.splits, "--flow",
                       extract.flow_algorithm, "--flow-subtract", extract.flow_subtract, "--bound", extract.bound,
                       "--storage", exp.data.storage, "--workers", exp.data.workers)
        if self.heldout:
            text += f"   # training lists minus the held-out videos ({rel(self.data_root / 'heldout.json')})"

        def inputs():
            return sorted(p for p in Path(exp.lists_dir).iterdir() if p.is_file()) + [r.path for r in self.lists.videos]

        def outputs():
            return store_paths(self.data_root, self.lists, MODALITIES, exp.data.storage) + [
                self.data_root / "heldout.json"]

        estimate = (self.speeds.preparation(facts.frames, extract.flow_algorithm, exp.data.workers, facts.frame_size)
                    if facts.frames
                    else Estimate(None, "frame count unknown (the dry run counts them)"))
        return Stage("data", text, settings, inputs, outputs,
                     lambda _: prepare_data(self.lists, self.data_root, extract, exp.data.storage, exp.data.workers,
                                            self.progress), estimate)

    def _pretrain_stage(self) -> Stage:
        config = self.exp.pretrain
        return Stage("pretrain", f"mfuse.pretrain.pretrain_backbone({rel(self.pretrain_dir)}, <[pretrain] settings>)"
                                 f"   # {config.images.num_classes} synthetic image categories, "
                                 f"{config.schedule.max_iter} iterations",
                     {"config": config.as_json()}, lambda: [], lambda: [self.pretrained],
                     lambda _: pretrain_backbone(self.pretrain_dir, config, overwrite=True, progress=self.progress),
                     self.speeds.training("cpu", config.backbone, "pretrain", config.schedule.max_iter,
                                          config.schedule.batch))

    def _seed_stages(self, split: int, seed: int, facts: Facts) -> list[Stage]:
        prefix = f"split{split}/seed{seed}"
        exp = self.exp
        gpus = exp.train.gpus
        kind = "gpu" if gpus else "cpu"
        backbone = exp.model.backbone
        net_set = self.net_set(split, seed, facts.classes)
        proto_dir = self.seed_dir(split, seed) / "prototxt"
        files = sorted(proto_dir / name for name in set_files(net_set, str(proto_dir)))

        def write_nets(_):
            for name, text in set_files(net_set, str(proto_dir)).items():
                path = proto_dir / name
                if not path.is_file() or path.read_text() != text:
                    write_atomic(path, text)

        stages = [Stage(f"{prefix}/nets", f"mfuse.nets.build_all.write_all({rel(proto_dir)}, [{backbone} set: "
                                          f"{facts.classes} classes, split {split}, seed {seed}])",
                        {}, lambda: [], lambda: files, write_nets, always=True)]
        stores = self.stores(split)
        gpu_flag = ["--gpus", ",".join(map(str, gpus))] if gpus else []
        if len(gpus) > 1:
            gpu_flag += ["--batch", BATCH_SPLIT]

        def init_stage(net: str, cross: bool) -> Stage:
            deploy, out = self.proto(split, seed, net, "deploy"), self.init(split, seed, net)
            model = self.pretrained
            return Stage(f"{prefix}/init_{net}",
                         command("python", "tools/surgery.py", "imagenet-init", deploy, "--imagenet", model,
                                 *(["--cross-modality"] if cross else []), "--out", out),
                         {"cross_modality": cross}, lambda: [deploy, model], lambda: [out],
                         lambda _: init_from_imagenet(deploy, model, out, cross_modality=cross))

        def train_stage(net: str, weights: Path | None) -> Stage:
            solver, final, log = self.proto(split, seed, net, "solver"), self.final(split, seed, net), \
                self.log(split, seed, net)
            schedule = exp.schedule(TABLE_OF[net])
            return Stage(f"{prefix}/{net}",
                         command("python", "tools/train.py", solver, "--log", log,
                                 *(["--weights", weights] if weights else []), *gpu_flag, "--cwd",
                                 self.seed_dir(split, seed)),
                         {"gpus": list(gpus)},
                         lambda: [solver, self.proto(split, seed, net, "train_val"), *([weights] if weights else []),
                                  *stores],
                         lambda: [final],
                         lambda identity: train_net(solver, log, weights, self.seed_dir(split, seed), gpus, identity,
                                                    self.progress),
                         self.speeds.training(kind, backbone, net, schedule.max_iter, schedule.batch))

        pretrained = self.pretrained
        if pretrained is not None:
            stages.append(init_stage("spatial", False))
            if exp.model.temporal_init == "cross_modality":
                stages.append(init_stage("temporal", True))
        spatial_init = self.init(split, seed, "spatial") if pretrained else None
        temporal_init = self.init(split, seed, "temporal") if pretrained and \
            exp.model.temporal_init == "cross_modality" else None
        stages.append(train_stage("spatial", spatial_init))
        stages.append(train_stage("spatial_amp", self.final(split, seed, "spatial")))
        stages.append(train_stage("temporal", temporal_init))
        spatial_final, temporal_final = self.final(split, seed, "spatial"), self.final(split, seed, "temporal")
        for net in FUSION_KINDS:
            deploy, out = self.proto(split, seed, net, "deploy"), self.init(split, seed, net)
            stages.append(Stage(
                f"{prefix}/init_{net}",
                command("python", "tools/surgery.py", "fusion-init", deploy, "--spatial", spatial_final, "--temporal",
                        temporal_final, "--out", out),
                {}, lambda deploy=deploy: [deploy, spatial_final, temporal_final], lambda out=out: [out],
                lambda _, deploy=deploy, out=out: init_fusion(deploy, spatial_final, temporal_final, out)))
            stages.append(train_stage(net, out))
        stages += self._test_stages(split, seed, facts)
        return stages

    def _test_stages(self, split: int, seed: int, facts: Facts) -> list[Stage]:
        prefix = f"split{split}/seed{seed}"
        exp = self.exp
        kind = "gpu" if exp.train.gpus else "cpu"
        protocol = Protocol(frames=exp.test.frames, crop_mode=exp.test.crops, max_batch=exp.test.max_batch)
        crops = protocol.crops_per_frame
        gpu_flag = ["--gpu", eval_gpu(exp.train.gpus)] if exp.train.gpus else []
        stages = []

        def test_stage(net: str, heldout: bool) -> Stage:
            deploy, weights = self.proto(split, seed, net, "deploy"), self.final(split, seed, net)
            out = self.scores(split, seed, net, heldout)
            root = heldout_root(self.data_root) if heldout else self.data_root
            store_subset = HELDOUT_SUBSET if heldout else "test"
            meta = {"dataset": exp.list_format, "split": split, "subset": "val" if heldout else "test", "net": net,
                    "weights": str(weights), "seed": seed}
            videos = facts.heldout.get(split, 0) if heldout else facts.test[split]
            return Stage(
                f"{prefix}/{'heldout' if heldout else 'test'}_{net}",
                command("python", "tools/test_net.py", "--deploy", deploy, "--weights", weights, "--data", root,
                        "--split", split, "--subset", store_subset, "--out", out, "--frames", exp.test.frames,
                        "--crops", exp.test.crops, *gpu_flag),
                {"protocol": dataclasses.asdict(protocol), "meta": meta},
                lambda: [deploy, weights, *self.stores(split, heldout)], lambda: [out],
                lambda identity: test_net(deploy, weights, root, split, store_subset, exp.data.storage, out, meta,
                                          protocol, exp.train.gpus, identity, exp.test.workers, self.progress),
                self.speeds.testing(kind, exp.model.backbone, net, videos, exp.test.frames, crops))

        stages += [test_stage(net, False) for net in NET_NAMES]
        if self.heldout:
            stages += [test_stage(net, True) for net in HELDOUT_NETS]
        test_scores = {net: self.scores(split, seed, net) for net in NET_NAMES}
        heldout_scores = {net: self.scores(split, seed, net, True) for net in HELDOUT_NETS} if self.heldout else {}
        names = fusion_score_names(self.heldout)
        out_dir = self.seed_dir(split, seed) / "fusion"
        stages.append(Stage(
            f"{prefix}/fusion",
            command("python", "tools/fuse_scores.py", f"mfusion={rel(test_scores['mfuse_conv5'])}",
                    f"spatial={rel(test_scores['spatial_amp'])}", f"temporal={rel(test_scores['temporal'])}",
                    "--weights", "mfusion=2", "spatial=3", "temporal=4", "--out", out_dir / "final_conv5.npz")
            + "   # and S+T, S(amp)+T, fc7" + (", weights searched on the held-out videos" if self.heldout else ""),
            {"fusions": names}, lambda: [*test_scores.values(), *heldout_scores.values()],
            lambda: [*(out_dir / f"{n}.npz" for n in names), out_dir / "weights.json"],
            lambda _: late_fusion(test_scores, heldout_scores, out_dir)))
        return stages

    def score_files(self) -> dict[tuple[int, int], dict[str, Path]]:
        """``{(split, seed): {score-set name: file}}`` of every net's test scores and every late fusion."""
        names = fusion_score_names(self.heldout)
        return {(k, s): {**{net: self.scores(k, s, net) for net in NET_NAMES},
                         **{name: self.fused(k, s, name) for name in names}}
                for k in self.exp.dataset.splits for s in self.exp.train.seeds}

    def write_report(self) -> Path:
        """Loads every score file and writes the report (:func:`mfuse.recipe.report.write_report`)."""
        runs = {key: {name: load_scores(path) for name, path in files.items()}
                for key, files in self.score_files().items()}
        split, seed = min(runs)
        rgb = open_frame_store(self.data_root, split, "test", "rgb", self.exp.data.storage)
        mag = open_frame_store(self.data_root, split, "test", "mag", self.exp.data.storage)
        examples = {}
        for video_id in example_videos(runs[(split, seed)]["spatial"]):
            t = max(1, mag.num_frames(video_id) // 2)
            examples[video_id] = (rgb.get_image(video_id, t), mag.get_image(video_id, t))
        logs = [self.log(split, seed, net) for net in NET_NAMES]
        return write_report(self.results, self.about(), runs, rgb.index.classes, examples, logs, self.mechanism(),
                            stage_seconds(self.exp.out / "provenance"))

    def mechanism(self) -> dict | None:
        """The synthetic set's mechanism measurements (final training losses of every split and seed, the gate
        on moving discs vs background), or None for other datasets."""
        exp = self.exp
        if exp.dataset.format != "synthetic":
            return None
        losses = final_losses((net, self.log(k, s, net)) for k in exp.dataset.splits for s in exp.train.seeds
                              for net in NET_NAMES)
        extract = exp.data.extract
        gate, note = gate_measurement(exp.videos_root, self.data_root, exp.dataset.splits[0], exp.data.storage,
                                      exp.model.backbone, extract.short_side is None and extract.fixed_size is None)
        return {"losses": losses, "gate": gate, "gate_note": note}

    def _report_stage(self) -> Stage:
        return Stage("report", f"mfuse.recipe.report.write_report -> {rel(self.results / 'results.md')}",
                     {"about": self.about()},
                     lambda: [path for files in self.score_files().values() for path in files.values()],
                     lambda: [self.results / "results.md"], lambda _: self.write_report())

    def about(self) -> dict:
        """What the run is (JSON-able), for the report's header and the provenance of the report."""
        exp = self.exp
        pretrained = ("ImageNet model " + Path(exp.model.imagenet).name if exp.model.imagenet is not None else
                      "the pretraining stand-in" if exp.model.pretrain == "standin" else "no pretrained model")
        defaults = COMMITTED[exp.model.backbone]
        changed = {table: dict(values) for table, values in exp.train.schedules.items()}
        return {"format": exp.dataset.format, "splits": list(exp.dataset.splits), "seeds": list(exp.train.seeds),
                "backbone": exp.model.backbone, "pretrained": pretrained,
                "temporal_init": exp.model.temporal_init if self.pretrained is not None else "scratch",
                "fusion_activation": exp.model.fusion_activation, "flow": exp.data.extract.flow_algorithm,
                "protocol": f"{exp.test.frames} frames x {exp.test.crops} crops",
                "heldout_fraction": exp.train.heldout_fraction, "schedules_changed": changed,
                "synthetic": dataclasses.asdict(exp.dataset.synthetic) if exp.dataset.synthetic else None,
                "paper_splits": list(SPLITS), "default_batches": [defaults.stream_batch, defaults.fusion_batch]}
