"""What a solver says about a run: where it ends, its nets, its batch, and how the batch spreads over GPUs.

**Batch over several GPUs** (Caffe's convention, ``BATCH_PER_GPU``): every rank runs the solver and its net
as written, so one iteration learns from ``batch_size x iter_size x GPUs`` samples; the gradients are
averaged over the ranks (Caffe's NCCL all-reduce sums them and scales by ``1 / GPUs``), so this equals one
GPU with that many samples per iteration. ``BATCH_SPLIT`` keeps the solver's total ``batch_size x
iter_size`` (the paper's batch) instead: each rank learns from ``total / GPUs`` samples per iteration, in
passes of the largest batch that divides it and is not larger than the TRAIN data layer's ``batch_size`` (so
``iter_size`` shrinks first: VGG19 fusion's 32 x 4 = 128 runs as 32 x 2 on 2 GPUs, 32 x 1 on 4, 16 x 1 on 8); a
total that is not a multiple of the number of GPUs is refused. The plan of a run is a :class:`BatchPlan`;
:func:`write_rank_solver` writes the solver the ranks run.

Relative paths in a solver (``net``, ``snapshot_prefix``) resolve against the directory Caffe runs in
(``cwd``), as in ``caffe train``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from mfuse.fileio import write_atomic
from mfuse.layers.params import parse_param_str
from mfuse.layers.video_data import SCHEMA as VIDEO_DATA_SCHEMA

#: Every rank runs the solver's batch (Caffe's convention): total = batch_size x iter_size x GPUs.
BATCH_PER_GPU = "per-gpu"
#: The solver's batch_size x iter_size is the total, split over the GPUs.
BATCH_SPLIT = "split"
BATCH_MODES = (BATCH_PER_GPU, BATCH_SPLIT)
#: The ``python_param.module`` of mfuse's data layer, whose ``param_str`` holds its batch size.
VIDEO_DATA_MODULE = "mfuse.layers.video_data"


@dataclass(frozen=True)
class SolverInfo:
    """What a solver prototxt says about where its run ends."""
    path: Path
    max_iter: int
    snapshot_prefix: str
    iter_size: int = 1
    snapshot: int = 0
    snapshot_after_train: bool = True

    @property
    def writes_final(self) -> bool:
        """Whether the run ends with a snapshot (``snapshot_after_train``, or an interval dividing ``max_iter``)."""
        return self.snapshot_after_train or bool(self.snapshot and self.max_iter % self.snapshot == 0)

    def final_caffemodel(self, cwd: str | Path) -> Path:
        """The snapshot Caffe writes at the end of training (relative prefixes resolve against ``cwd``)."""
        return Path(cwd) / f"{self.snapshot_prefix}_iter_{self.max_iter}.caffemodel"


def load_solver(path: str | Path) -> caffe_pb2.SolverParameter:
    """The SolverParameter of a prototxt; ValueError naming the file when it does not parse."""
    return _parse_text(Path(path), caffe_pb2.SolverParameter())


def read_solver(path: str | Path) -> SolverInfo:
    """Parses a solver prototxt; raises ValueError naming the file if it lacks max_iter or snapshot_prefix."""
    solver = load_solver(path)
    if not solver.max_iter or not solver.snapshot_prefix:
        raise ValueError(f"{path}: a solver needs max_iter and snapshot_prefix")
    return SolverInfo(Path(path), solver.max_iter, solver.snapshot_prefix, solver.iter_size, solver.snapshot,
                      solver.snapshot_after_train)


def solverstate_iteration(path: str | Path) -> int:
    """The iteration a ``.solverstate`` snapshot was taken at."""
    state = caffe_pb2.SolverState()
    state.ParseFromString(Path(path).read_bytes())
    return state.iter


def _parse_text(path: Path, message):
    try:
        text = path.read_text()
    except OSError as err:
        raise ValueError(f"{path}: cannot read it ({err.strerror})") from err
    try:
        return text_format.Merge(text, message)
    except text_format.ParseError as err:
        raise ValueError(f"{path}: not a valid {type(message).__name__} prototxt: {err}") from err


def solver_nets(solver: caffe_pb2.SolverParameter, cwd: str | Path) -> dict[str, caffe_pb2.NetParameter]:
    """The nets a solver trains and tests, by role: ``train`` and ``test<i>`` for separate test nets.

    Files (``net``, ``train_net``, ``test_net``) resolve against ``cwd``; inline nets (``net_param``, ...) are
    taken as they are. Raises ValueError naming the solver field when a net cannot be read.
    """
    def load(field: str, value) -> caffe_pb2.NetParameter:
        if isinstance(value, caffe_pb2.NetParameter):
            return value
        try:
            return _parse_text(Path(cwd) / value, caffe_pb2.NetParameter())
        except ValueError as err:
            raise ValueError(f"solver {field}: {err}") from err

    train = [(field, getattr(solver, field)) for field in ("train_net_param", "train_net", "net_param", "net")
             if solver.HasField(field)]
    if not train:
        raise ValueError("the solver names no net (net, train_net, net_param or train_net_param)")
    nets = {"train": load(*train[0])}
    tests = [("test_net_param", net) for net in solver.test_net_param] + [("test_net", net) for net in
                                                                           solver.test_net]
    for index, (field, value) in enumerate(tests):
        nets[f"test{index}"] = load(field, value)
    return nets


def _meets_rule(rule: caffe_pb2.NetStateRule, phase: int) -> bool:
    # Caffe's StateMeetsRule for a net state of this phase, level 0 and no stages.
    if rule.HasField("phase") and rule.phase != phase:
        return False
    if (rule.HasField("min_level") and rule.min_level > 0) or (rule.HasField("max_level") and rule.max_level < 0):
        return False
    return not rule.stage


def in_phase(layer: caffe_pb2.LayerParameter, phase: int = caffe_pb2.TRAIN) -> bool:
    """Whether Caffe puts ``layer`` into the net of ``phase`` (include / exclude rules)."""
    if layer.include:
        return any(_meets_rule(rule, phase) for rule in layer.include)
    return not any(_meets_rule(rule, phase) for rule in layer.exclude)


def _video_data_params(layer: caffe_pb2.LayerParameter) -> dict | None:
    if layer.type == "Python" and layer.python_param.module == VIDEO_DATA_MODULE:
        return parse_param_str(layer.python_param.param_str, VIDEO_DATA_SCHEMA, layer.name)
    return None


#: The stock data layers and the field of their batch size.
_DATA_PARAMS = {"Data": "data_param", "ImageData": "image_data_param", "HDF5Data": "hdf5_data_param",
                "WindowData": "window_data_param"}


def layer_batch(layer: caffe_pb2.LayerParameter) -> int | None:
    """The batch a data layer produces per pass (mfuse's VideoDataLayer, Data, ImageData, HDF5Data, WindowData,
    DummyData), None for other layers."""
    params = _video_data_params(layer)
    if params is not None:
        return params["batch_size"]
    if layer.type in _DATA_PARAMS:
        return getattr(layer, _DATA_PARAMS[layer.type]).batch_size
    if layer.type == "DummyData" and layer.dummy_data_param.shape:
        return layer.dummy_data_param.shape[0].dim[0]
    return None


def train_data_layers(net: caffe_pb2.NetParameter) -> list[caffe_pb2.LayerParameter]:
    """The TRAIN-phase layers of ``net`` that produce a batch (see :func:`layer_batch`)."""
    return [layer for layer in net.layer if in_phase(layer) and layer_batch(layer) is not None]


def _set_layer_batch(layer: caffe_pb2.LayerParameter, batch: int) -> None:
    if _video_data_params(layer) is not None:
        given = yaml.safe_load(layer.python_param.param_str) or {}
        layer.python_param.param_str = json.dumps(dict(given, batch_size=batch))
    elif layer.type == "DummyData":
        for shape in layer.dummy_data_param.shape:
            shape.dim[0] = batch
    else:
        getattr(layer, _DATA_PARAMS[layer.type]).batch_size = batch


@dataclass(frozen=True)
class BatchPlan:
    """How one iteration's samples are made: ``ranks`` processes, each ``iter_size`` passes of ``batch_size``."""
    ranks: int
    batch_size: int
    iter_size: int

    @property
    def total(self) -> int:
        """Samples per iteration over all ranks (the batch the learning rate schedule sees)."""
        return self.ranks * self.batch_size * self.iter_size

    def describe(self) -> str:
        where = f"{self.ranks} GPUs x " if self.ranks > 1 else ""
        return (f"{where}{self.batch_size} per pass x {self.iter_size} pass{'es' if self.iter_size > 1 else ''}"
                f" = batch {self.total}")


def plan_batch(solver_path: str | Path, ranks: int, mode: str = BATCH_PER_GPU, cwd: str | Path = "."
               ) -> BatchPlan:
    """The batch plan of training ``solver_path`` on ``ranks`` processes (see the module docstring).

    Raises:
        ValueError: an unknown mode; a train net without exactly one data layer whose batch is known; a
            VideoDataLayer whose ``num_ranks`` is set to another number of ranks; under ``BATCH_SPLIT``, a total
            batch that does not divide over ``ranks`` (the message names the solver, the layer and the numbers).
    """
    if mode not in BATCH_MODES:
        raise ValueError(f"batch mode must be one of {BATCH_MODES}, got {mode!r}")
    solver = load_solver(solver_path)
    try:
        net = solver_nets(solver, cwd)["train"]
    except ValueError as err:
        raise ValueError(f"{solver_path}: {err}") from err
    layers = train_data_layers(net)
    if len(layers) != 1:
        names = [layer.name for layer in layers]
        raise ValueError(f"{solver_path}: the train net needs exactly one data layer with a batch size to plan the "
                         f"batch over GPUs, found {len(layers)} {names}")
    layer, batch, iter_size = layers[0], layer_batch(layers[0]), solver.iter_size
    params = _video_data_params(layer)
    if params is not None and params["num_ranks"] not in (1, ranks):
        raise ValueError(f"{solver_path}: data layer '{layer.name}' sets num_ranks {params['num_ranks']} but the "
                         f"run has {ranks} rank(s); leave num_ranks out (the layer takes the solver's ranks)")
    if mode == BATCH_PER_GPU or ranks == 1:
        return BatchPlan(ranks, batch, iter_size)
    total = batch * iter_size
    if total % ranks:
        raise ValueError(f"{solver_path}: batch {batch} (data layer '{layer.name}') x iter_size {iter_size} = {total} "
                         f"cannot be split over {ranks} GPUs: {total} is not a multiple of {ranks} (use batch mode "
                         f"'{BATCH_PER_GPU}', or a solver whose batch divides)")
    share = total // ranks
    per_pass = max(size for size in range(1, min(batch, share) + 1) if share % size == 0)
    return BatchPlan(ranks, per_pass, share // per_pass)


def write_rank_solver(solver_path: str | Path, plan: BatchPlan, out: str | Path, cwd: str | Path = ".") -> Path:
    """Writes the solver every rank runs: ``solver_path`` with the plan's ``iter_size``, ``layer_wise_reduce:
    false`` unless the solver sets it, and, when the plan changes the batch, the train net inline (``net_param``/``train_net_param``) with the plan's batch in its
    TRAIN data layer. Paths in it keep resolving against ``cwd``. Returns ``out``."""
    solver = load_solver(solver_path)
    solver.iter_size = plan.iter_size
    if not solver.HasField("layer_wise_reduce"):
        # One all-reduce of every gradient per iteration instead of one per layer: faster on every net measured
        # (4 H200s: VGG19 spatial 3.51x vs 3.30x, m-fuse conv5 3.26x vs 2.87x; docs/gpu.md). A solver that sets
        # the field keeps its choice.
        solver.layer_wise_reduce = False
    net = solver_nets(solver, cwd)["train"]
    layer = train_data_layers(net)[0]
    if layer_batch(layer) != plan.batch_size:
        net = type(net).FromString(net.SerializeToString())
        _set_layer_batch(next(item for item in net.layer if item.name == layer.name and in_phase(item)),
                         plan.batch_size)
        inline = "train_net_param" if solver.HasField("train_net") or solver.HasField("train_net_param") \
            else "net_param"
        for field in ("net", "train_net", "net_param", "train_net_param"):
            solver.ClearField(field)
        getattr(solver, inline).CopyFrom(net)
    header = (f"# {Path(solver_path)} as run by each of {plan.ranks} ranks ({plan.describe()}); written by "
              f"mfuse.training\n")
    return write_atomic(out, header + text_format.MessageToString(solver))
