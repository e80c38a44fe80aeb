"""Experiment files: what one reproduction run is, read from TOML (stdlib ``tomllib``) and/or command-line flags,
validated before anything runs.

A file has a top-level ``out`` and the tables ``[dataset]``, ``[data]``, ``[model]``, ``[train]`` (with the
schedule overrides ``[train.spatial]``, ``[train.temporal]``, ``[train.fusion]``) and ``[test]``; every key is
optional except the dataset's (see ``experiments/*.toml`` and docs/reproducing.md); ``[pretrain]`` (with
``[pretrain.images]`` and ``[pretrain.schedule]``) sets the pretraining stand-in of ``model.pretrain = "standin"``::

    out = "runs/ucf101_vgg19"
    [dataset]
    format = "ucf101"                 # the list format: ucf101 | hmdb51 | synthetic (generated in <out>/dataset)
    videos = "UCF-101"                # <class>/<video>.avi
    lists = "ucfTrainTestlist"        # the official split lists (or yours in the same format)
    splits = [1, 2, 3]
    [model]
    backbone = "vgg19"                # cnn_m_2048 | vgg19 | tiny
    imagenet = "models/VGG_ILSVRC_19_layers.caffemodel"
    [train]
    gpus = [0]

Relative paths are relative to the directory the command runs in. Flags given beside a file override its keys
(``FLAGS`` maps each flag to its key). A bad value raises ``ExperimentError`` whose one-line message names the
file (or ``command line``), the key and the problem. The class count is never configured: it is read from the
split lists.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfuse.conventions import CROP_MODES, SPLITS, STORAGES
from mfuse.nets.build_all import COMMITTED
from mfuse.nets.solvers import Schedule
from mfuse.prep.frames import ExtractSettings
from mfuse.pretrain import ImageTaskConfig, PretrainConfig
from mfuse.synthetic import HMDB51_SPLIT_DIR, UCF101_LIST_DIR, SyntheticConfig

#: List formats: the two official ones (also for your own videos in their layout) and the built-in synthetic set.
FORMATS = ("ucf101", "hmdb51", "synthetic")
#: How the temporal net starts when an ImageNet model is given: the RGB filters averaged and replicated
#: (``cross_modality``, the usual start for deep temporal nets) or the fillers ([18]'s from-scratch training).
TEMPORAL_INITS = ("cross_modality", "scratch")
#: Where the spatial towers' pretrained weights come from when no ImageNet model is given: nowhere (the spatial
#: net then trains its convs too), or the tiny backbone's built-in pretraining stand-in (issue 15).
PRETRAINING = ("none", "standin")
FUSION_ACTIVATIONS = ("NONE", "RELU")
#: The nets trained with each schedule table of ``[train]``.
SCHEDULE_TABLES = ("spatial", "temporal", "fusion")
#: A net trained with each schedule table (``NetSet.schedule`` takes a net name).
SCHEDULE_NETS = {"spatial": "spatial", "temporal": "temporal", "fusion": "mfuse_conv5"}
COMMAND_LINE = "command line"


class ExperimentError(ValueError):
    """An experiment that cannot run; ``str()`` is one line: ``<file>: <key>: <problem>``."""

    def __init__(self, source: str, key: str, problem: str):
        super().__init__(f"{source}: {key}: {problem}")
        self.source, self.key, self.problem = source, key, problem


@dataclass(frozen=True)
class DatasetSpec:
    """The videos and their split lists. ``videos``/``lists`` are None for ``synthetic`` (generated under the run
    folder from ``synthetic``, the fields of :class:`mfuse.synthetic.SyntheticConfig`)."""
    format: str
    videos: Path | None
    lists: Path | None
    splits: tuple[int, ...] = SPLITS
    synthetic: SyntheticConfig | None = None


@dataclass(frozen=True)
class DataSpec:
    """Data preparation: where the prepared data goes (None: ``<out>/data``), the storage, worker processes, and
    the frame/flow settings (:class:`mfuse.prep.frames.ExtractSettings`)."""
    root: Path | None = None
    storage: str = "lmdb"
    workers: int = 2
    extract: ExtractSettings = field(default_factory=ExtractSettings)


@dataclass(frozen=True)
class ModelSpec:
    """The nets: backbone, pretrained start, fusion activation and optional sizes (None: the backbone's)."""
    backbone: str = "cnn_m_2048"
    imagenet: Path | None = None
    pretrain: str = "none"
    temporal_init: str = "cross_modality"
    fusion_activation: str = "NONE"
    fusion_k: int | None = None
    fusion_head: tuple[int, ...] | None = None


@dataclass(frozen=True)
class TrainSpec:
    """Training: devices (no GPU: CPU), seeds, the held-out share of each train list (for the fusion weight
    search; 0 trains on the whole list, as the paper, and skips the search), per-pass batches (None: the
    backbone's) and the schedule overrides ``{table: {Schedule field: value}}``."""
    gpus: tuple[int, ...] = ()
    seeds: tuple[int, ...] = (1,)
    heldout_fraction: float = 0.1
    stream_batch: int | None = None
    fusion_batch: int | None = None
    schedules: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class TestSpec:
    """The test protocol (25 frames x 10 crops in the paper) and its decoding threads."""
    frames: int = 25
    crops: str = "ten"
    max_batch: int = 250
    workers: int = 2

    __test__ = False  # not a pytest class


@dataclass(frozen=True)
class Experiment:
    """One reproduction run; ``source`` names where it was read from (for messages)."""
    out: Path
    dataset: DatasetSpec
    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    test: TestSpec = field(default_factory=TestSpec)
    pretrain: PretrainConfig | None = None
    source: str = COMMAND_LINE

    @property
    def data_root(self) -> Path:
        """The prepared data (``[data] root``, default ``<out>/data``)."""
        return self.data.root if self.data.root is not None else self.out / "data"

    @property
    def videos_root(self) -> Path:
        """The videos (the synthetic dataset's: ``<out>/dataset``)."""
        return self.dataset.videos if self.dataset.videos is not None else self.out / "dataset"

    @property
    def lists_dir(self) -> Path:
        """The split lists (the synthetic dataset's are generated with its videos)."""
        if self.dataset.lists is not None:
            return self.dataset.lists
        layout = self.dataset.synthetic.layout
        return self.videos_root / (UCF101_LIST_DIR if layout == "ucf101" else HMDB51_SPLIT_DIR)

    @property
    def list_format(self) -> str:
        """The split parser (``mfuse.datasets``) that reads the lists."""
        return self.dataset.synthetic.layout if self.dataset.format == "synthetic" else self.dataset.format

    def schedule(self, table: str) -> Schedule:
        """The backbone's schedule of ``table`` (spatial / temporal / fusion) with this experiment's overrides."""
        base = COMMITTED[self.model.backbone].schedule(SCHEDULE_NETS[table])
        return dataclasses.replace(base, **dict(self.train.schedules.get(table, {})))

    def batch(self, table: str) -> int:
        """Samples per pass of the nets of schedule ``table`` (the solver's iter_size makes up the rest)."""
        backbone = COMMITTED[self.model.backbone]
        if table == "fusion":
            return self.train.fusion_batch or backbone.fusion_batch
        return self.train.stream_batch or backbone.stream_batch

    def as_json(self) -> dict:
        """Every setting, JSON-able (paths as strings): recorded in the run folder and the provenance."""
        def plain(value):
            if dataclasses.is_dataclass(value):
                return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
            if isinstance(value, Mapping):
                return {str(k): plain(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            return str(value) if isinstance(value, Path) else value
        return {k: v for k, v in plain(self).items() if k != "source"}


# ------------------------------------------------------------------------------------------ value checks

Check = Callable[[Any], Any]   # returns the converted value or raises ValueError(problem)


def _type_name(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def integer(low: int | None = None) -> Check:
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {_type_name(value)}")
        if low is not None and value < low:
            raise ValueError(f"must be >= {low}, got {value}")
        return value
    return check


def number(low: float | None = None, high: float | None = None, below: bool = False) -> Check:
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {_type_name(value)}")
        if (low is not None and value < low) or (high is not None and (value >= high if below else value > high)):
            raise ValueError(f"must be in [{low}, {high}{')' if below else ']'}, got {value}")
        return float(value)
    return check


def boolean(value):
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_type_name(value)}")
    return value


def choice(options) -> Check:
    def check(value):
        if value not in options:
            raise ValueError(f"expected one of {list(options)}, got {value!r}")
        return value
    return check


def text(value):
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {_type_name(value)}")
    return value


def path(value):
    return Path(text(value)).expanduser()


def optional_path(value):
    """A path; "" or "none" means none (e.g. no ImageNet model: from scratch)."""
    if isinstance(value, str) and value.lower() in ("", "none"):
        return None
    return path(value)


def int_list(low: int | None = None, options=None, empty: bool = False) -> Check:
    def check(value):
        if not isinstance(value, (list, tuple)) or (not value and not empty):
            raise ValueError(f"expected a {'' if empty else 'non-empty '}list of integers, got {_type_name(value)}")
        items = [integer(low)(v) for v in value]
        if options is not None and not set(items) <= set(options):
            raise ValueError(f"expected values among {list(options)}, got {items}")
        if len(set(items)) != len(items):
            raise ValueError(f"values repeat: {items}")
        return tuple(items)
    return check


def _dataclass_check(cls) -> Callable[[str, Any], Check]:
    """Per-field checks of a dataclass's fields, typed from their annotations (``int``, ``float``, ``bool``,
    ``str``, ``tuple[...]`` from a list; the string "none" is None for a field that may be None). The
    dataclass's own checks run when it is built."""
    types = {f.name: str(f.type) for f in dataclasses.fields(cls)}

    def for_key(key: str, value: Any) -> Any:
        kinds = {part.strip() for part in types[key].split("|")}
        if isinstance(value, str) and value.lower() == "none" and "None" in kinds:
            return None
        kinds.discard("None")
        kind = kinds.pop() if len(kinds) == 1 else ""
        if kind == "bool":
            return boolean(value)
        if kind == "int":
            return integer()(value)
        if kind == "float":
            return number()(value)
        if kind.startswith("tuple"):
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"expected a list, got {_type_name(value)}")
            return tuple(integer()(v) for v in value) if "int" in kind else tuple(value)
        if kind == "str" and not isinstance(value, str):
            raise ValueError(f"expected a string, got {_type_name(value)}")
        return value
    return for_key


# --------------------------------------------------------------------------------------------- schema

#: ``{table: {key: check}}`` of the keys that are not fields of a dataclass of another module.
SCHEMA: dict[str, dict[str, Check]] = {
    "": {"out": path},
    "dataset": {"format": choice(FORMATS), "videos": path, "lists": path, "splits": int_list(options=SPLITS)},
    "data": {"root": path, "storage": choice(STORAGES), "workers": integer(1)},
    "model": {"backbone": choice(sorted(COMMITTED)), "imagenet": optional_path, "pretrain": choice(PRETRAINING),
              "temporal_init": choice(TEMPORAL_INITS), "fusion_activation": choice(FUSION_ACTIVATIONS),
              "fusion_k": integer(1), "fusion_head": int_list(low=1)},
    "train": {"gpus": int_list(low=0, empty=True), "seeds": int_list(), "heldout_fraction": number(0.0, 1.0, True),
              "stream_batch": integer(1), "fusion_batch": integer(1)},
    "test": {"frames": integer(1), "crops": choice(CROP_MODES), "max_batch": integer(1), "workers": integer(1)},
    "pretrain": {"batch_size": integer(1), "dropout": number(0.0, 1.0, True), "seed": integer(),
                 "crop_size": integer(1)},
}
#: Fields of other modules' settings that a table takes as its own keys.
FIELD_TABLES = {"data": ExtractSettings, "dataset.synthetic": SyntheticConfig,
                **{f"train.{name}": Schedule for name in SCHEDULE_TABLES},
                "pretrain.images": ImageTaskConfig, "pretrain.schedule": Schedule}
#: The tables of the pretraining stand-in (``model.pretrain = "standin"`` only).
PRETRAIN_TABLES = ("pretrain", "pretrain.images", "pretrain.schedule")
#: Schedule fields that are not settings (written into the solver as comments).
_NOT_SETTINGS = {"Schedule": ("cite",)}

#: Command-line flags -> (table, key); ``tools/reproduce.py`` defines them with these names.
FLAGS = {"out": ("", "out"), "dataset": ("dataset", "format"), "videos": ("dataset", "videos"),
         "splits": ("dataset", "lists"), "split_ids": ("dataset", "splits"), "data": ("data", "root"),
         "workers": ("data", "workers"), "flow": ("data", "flow_algorithm"), "backbone": ("model", "backbone"),
         "imagenet": ("model", "imagenet"), "fusion_activation": ("model", "fusion_activation"),
         "gpus": ("train", "gpus"), "seeds": ("train", "seeds"), "heldout_fraction": ("train", "heldout_fraction")}


def _field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name not in _NOT_SETTINGS.get(cls.__name__, ())]


def _key_label(table: str, key: str) -> str:
    return f"{table}.{key}" if table else key


class _Reader:
    """Validates a raw ``{table: {key: value}}`` mapping; ``origins`` says where each value came from."""

    def __init__(self, raw: Mapping[str, Any], source: str, origins: Mapping[tuple[str, str], str]):
        self.raw, self.source, self.origins = raw, source, origins

    def fail(self, table: str, key: str, problem: str):
        where = self.origins.get((table, key), self.source)
        label = f"--{key_flag(table, key)}" if where == COMMAND_LINE else _key_label(table, key)
        raise ExperimentError(where, label, problem)

    def table(self, name: str) -> dict:
        node: Any = self.raw
        for part in name.split(".") if name else []:
            node = node.get(part, {})
            if not isinstance(node, Mapping):
                self.fail(name.rsplit(".", 1)[0] if "." in name else "", part, "expected a table")
        return dict(node)

    def read(self, name: str) -> dict:
        """The checked values of table ``name`` (own keys and the fields of its dataclass)."""
        values = self.table(name)
        own = SCHEMA.get(name, {})
        cls = FIELD_TABLES.get(name)
        subtables = {key.split(".")[-1] for key in [*SCHEMA, *FIELD_TABLES] if key.startswith(name + ".")} \
            if name else {key.split(".")[0] for key in [*SCHEMA, *FIELD_TABLES] if key}
        accepted = set(own) | set(_field_names(cls) if cls else ()) | subtables
        checked = {}
        for key, value in values.items():
            if key in subtables:
                continue
            if key not in accepted:
                self.fail(name, key, f"unknown key; accepted: {', '.join(sorted(accepted - subtables))}")
            try:
                checked[key] = own[key](value) if key in own else _dataclass_check(cls)(key, value)
            except ValueError as error:
                self.fail(name, key, str(error))
        return checked

    def build(self, cls, name: str, values: Mapping[str, Any], base: Mapping[str, Any] | None = None):
        """``cls(**base, **values)``; its own validation error is attributed to the first key of table ``name``
        that fails alone."""
        base = dict(base or {})
        try:
            return cls(**base, **values)
        except (ValueError, TypeError) as error:
            for key, value in values.items():
                try:
                    cls(**{**base, key: value})
                except (ValueError, TypeError) as alone:
                    self.fail(name, key, str(alone))
            self.fail(name, next(iter(values), "(table)"), str(error))


def key_flag(table: str, key: str) -> str:
    """The flag that sets ``table.key`` (for messages), or the dotted key when no flag does."""
    for flag, target in FLAGS.items():
        if target == (table, key):
            return flag.replace("_", "-")
    return _key_label(table, key)


def experiment_from_raw(raw: Mapping[str, Any], source: str = COMMAND_LINE,
                        origins: Mapping[tuple[str, str], str] | None = None) -> Experiment:
    """Validates ``raw`` (a parsed experiment file, possibly with flags merged in) into an ``Experiment``.

    Raises:
        ExperimentError: the first problem, as one line naming the source, the key and the problem.
    """
    reader = _Reader(raw, source, origins or {})
    top = reader.read("")
    if "out" not in top:
        reader.fail("", "out", "missing: the run folder (out = \"runs/<name>\" or --out)")
    dataset_values = reader.read("dataset")
    fmt = dataset_values.get("format")
    if fmt is None:
        reader.fail("dataset", "format", f"missing: one of {list(FORMATS)}")
    synthetic = None
    if fmt == "synthetic":
        for key in ("videos", "lists"):
            if key in dataset_values:
                reader.fail("dataset", key, "the synthetic dataset is generated under <out>/dataset: leave it out")
        synthetic = reader.build(SyntheticConfig, "dataset.synthetic", reader.read("dataset.synthetic"))
    else:
        if reader.table("dataset.synthetic"):
            reader.fail("dataset", "synthetic", f"only for format = \"synthetic\", not {fmt!r}")
        for key in ("videos", "lists"):
            if key not in dataset_values:
                reader.fail("dataset", key, f"missing: the {'video folder' if key == 'videos' else 'split lists'}")
            if not dataset_values[key].exists():
                reader.fail("dataset", key, f"{dataset_values[key]} does not exist")
    dataset = DatasetSpec(format=fmt, videos=dataset_values.get("videos"), lists=dataset_values.get("lists"),
                          splits=dataset_values.get("splits", SPLITS), synthetic=synthetic)

    data_values = reader.read("data")
    own = {k: data_values.pop(k) for k in list(data_values) if k in SCHEMA["data"]}
    data = DataSpec(**own, extract=reader.build(ExtractSettings, "data", data_values))
    if data.extract.flow_algorithm is None:
        reader.fail("data", "flow_algorithm", "the temporal and fusion nets need optical flow")

    model = ModelSpec(**reader.read("model"))
    if model.imagenet is not None:
        if not model.imagenet.is_file():
            reader.fail("model", "imagenet", f"{model.imagenet} does not exist")
        if model.pretrain != "none":
            reader.fail("model", "pretrain", "give either an ImageNet model or the pretraining stand-in, not both")
    if model.pretrain == "standin" and model.backbone != "tiny":
        reader.fail("model", "pretrain", f"the stand-in pretrains the tiny backbone, not {model.backbone}")

    pretrain = _pretrain_config(reader, model)
    schedules = {name: reader.read(f"train.{name}") for name in SCHEDULE_TABLES}
    train = TrainSpec(**reader.read("train"), schedules={name: s for name, s in schedules.items() if s})
    test = TestSpec(**reader.read("test"))
    experiment = Experiment(out=top["out"], dataset=dataset, data=data, model=model, train=train, test=test,
                            pretrain=pretrain, source=source)
    for name in SCHEDULE_TABLES:
        schedule = experiment.schedule(name)
        if schedule.max_iter < 1 or schedule.snapshot < 1 or list(schedule.steps) != sorted(schedule.steps):
            reader.fail(f"train.{name}", "max_iter", f"needs max_iter >= 1, snapshot >= 1 and rising steps, got "
                        f"{schedule.max_iter}, {schedule.snapshot}, {list(schedule.steps)}")
        if schedule.batch % experiment.batch(name):
            reader.fail(f"train.{name}", "batch", f"{schedule.batch} is not a multiple of the "
                        f"{'fusion' if name == 'fusion' else 'stream'} nets' {experiment.batch(name)} samples per "
                        "pass (train.stream_batch / train.fusion_batch)")
    return experiment


def _pretrain_config(reader: _Reader, model: ModelSpec) -> PretrainConfig | None:
    """The stand-in's settings (``[pretrain]``, ``[pretrain.images]``, ``[pretrain.schedule]`` over
    :class:`mfuse.pretrain.PretrainConfig`'s defaults) when ``model.pretrain = "standin"``, else None."""
    values = {name: reader.read(name) for name in PRETRAIN_TABLES}
    if model.pretrain != "standin":
        for name in PRETRAIN_TABLES:
            if values[name]:
                table, _, key = name.rpartition(".")
                reader.fail(table, key, "only with model.pretrain = \"standin\"")
        return None
    base = PretrainConfig(backbone=model.backbone)
    images = reader.build(ImageTaskConfig, "pretrain.images", values["pretrain.images"])
    schedule = dataclasses.replace(base.schedule, **values["pretrain.schedule"])
    config = dataclasses.replace(base, images=images, schedule=schedule, **values["pretrain"])
    if schedule.max_iter < 1 or schedule.snapshot < 1 or list(schedule.steps) != sorted(schedule.steps):
        reader.fail("pretrain.schedule", "max_iter", f"needs max_iter >= 1, snapshot >= 1 and rising steps, got "
                    f"{schedule.max_iter}, {schedule.snapshot}, {list(schedule.steps)}")
    if schedule.batch % config.batch_size:
        reader.fail("pretrain.schedule", "batch", f"{schedule.batch} is not a multiple of pretrain.batch_size "
                    f"{config.batch_size}")
    if config.crop() > min(images.size):
        reader.fail("pretrain", "crop_size", f"{config.crop()} exceeds the images' size {list(images.size)}")
    return config


def read_toml(path: str | os.PathLike) -> dict:
    """The raw tables of an experiment file; ExperimentError (one line) when it is missing or not TOML."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ExperimentError(str(path), "(file)", "does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ExperimentError(str(path), "(file)", f"not valid TOML: {error}") from None


def merge_flags(raw: Mapping[str, Any], flags: Mapping[str, Any], file_source: str
                ) -> tuple[dict, dict[tuple[str, str], str]]:
    """``raw`` with the given ``flags`` (``{flag name: value}``, None = not given) set over it, and the origin of
    every value (``file_source`` or ``command line``)."""
    merged: dict = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in raw.items()}
    origins: dict[tuple[str, str], str] = {}
    for table in [""] + [name for name in merged if isinstance(merged[name], Mapping)]:
        for key in (merged if table == "" else merged[table]):
            origins[(table, key)] = file_source
    for flag, value in flags.items():
        if value is None:
            continue
        table, key = FLAGS[flag]
        target = merged if table == "" else merged.setdefault(table, {})
        target[key] = [*value] if isinstance(value, (list, tuple)) else (str(value) if isinstance(value, Path)
                                                                           else value)
        origins[(table, key)] = COMMAND_LINE
    return merged, origins


def load_experiment(path: str | os.PathLike | None = None, flags: Mapping[str, Any] | None = None) -> Experiment:
    """The experiment of file ``path`` (or of the flags alone) with ``flags`` set over it."""
    source = str(path) if path is not None else COMMAND_LINE
    raw = read_toml(path) if path is not None else {}
    merged, origins = merge_flags(raw, flags or {}, source)
    return experiment_from_raw(merged, source, origins)
