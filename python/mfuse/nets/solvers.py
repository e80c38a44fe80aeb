"""Solvers with the paper's schedules, written as commented prototxt.

The effective batch of a schedule (the paper's) is ``batch_size * iter_size``: the net's data layer holds
``batch_size`` samples per pass and Caffe accumulates ``iter_size`` passes per update, so nets too large for
one GPU at the paper's batch still follow its schedule.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from caffe.proto import caffe_pb2
from google.protobuf import text_format


@dataclass(frozen=True)
class Schedule:
    """A training schedule: multistep learning rate (``base_lr`` times ``gamma`` at each step).

    Attributes:
        base_lr, steps, gamma, max_iter: the learning rate schedule.
        batch: effective batch size (``batch_size * iter_size``).
        momentum, weight_decay: SGD settings.
        test_interval, test_iter: how often and how long the TEST phase runs (a sanity check on sampled
            frames; the paper's 25 x 10 evaluation is ``mfuse.evaluation``).
        snapshot: iterations between snapshots (the last iteration is always snapshotted).
        display, average_loss: logging.
        cite: where the numbers come from, written as comments into the solver.
    """
    base_lr: float
    steps: tuple[int, ...]
    max_iter: int
    batch: int
    cite: tuple[str, ...]
    gamma: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    test_interval: int = 1000
    test_iter: int = 80
    snapshot: int = 5000
    display: int = 20
    average_loss: int = 20


_COMMON = ("Momentum 0.9 and weight decay 5e-4: Sec. 5.2 of Park et al. (WACV 2016).",)

#: Spatial nets: Simonyan and Zisserman (NIPS 2014) fine-tuning schedule, which Park et al. follow (Sec. 5.2).
SPATIAL = Schedule(
    base_lr=1e-2, steps=(14000,), max_iter=20000, batch=256, snapshot=5000,
    cite=("Spatial stream: Park et al. Sec. 5.2 train the streams as Simonyan and Zisserman [18], Sec. 5:",
          "fine-tuning starts at lr 1e-2, 1e-3 after 14K iterations, stops at 20K; batch 256.") + _COMMON)
#: Temporal nets: Simonyan and Zisserman's from-scratch schedule.
TEMPORAL = Schedule(
    base_lr=1e-2, steps=(50000, 70000), max_iter=80000, batch=256, snapshot=10000,
    cite=("Temporal stream: Park et al. Sec. 5.2 train the streams as Simonyan and Zisserman [18], Sec. 5:",
          "from scratch at lr 1e-2, 1e-3 after 50K, 1e-4 after 70K iterations, stops at 80K; batch 256.")
    + _COMMON)
#: Fusion nets: Park et al. Sec. 5.2; the stop at 60K is the authors' solver (the paper gives no stop).
FUSION = Schedule(
    base_lr=1e-3, steps=(20000, 40000), max_iter=60000, batch=128, snapshot=20000,
    cite=("Fusion nets: Park et al. Sec. 5.2: batch 128, lr 1e-3, 1e-4 after 20K, 1e-5 after another 20K",
          "iterations; only the layers after the fusion are trained. Stop at 60K and test_iter 80 as the",
          "authors' solver (silverbottlep/caffe, twostream branch).") + _COMMON)

#: Short schedules of the tiny backbone for the CPU demo (not the paper's numbers, its shape).
TINY_SPATIAL = Schedule(base_lr=1e-2, steps=(500,), max_iter=600, batch=32, test_interval=200, test_iter=10,
                        snapshot=600, display=20,
                        cite=("Tiny demo spatial net: the shape of the spatial schedule (Sec. 5.2, [18]: lr 1e-2,",
                              "x0.1 late) shortened for 2 CPU cores; FC layers on frozen pretrained convs reach the",
                              "designed ceiling on held-out videos in 600 iterations (docs/demo-design-notes.md).")
                        + _COMMON)
TINY_TEMPORAL = replace(TINY_SPATIAL, base_lr=3e-2, steps=(800,), max_iter=1000, snapshot=1000,
                        cite=("Tiny demo temporal net: the shape of the temporal schedule (Sec. 5.2, [18]) shortened",
                              "for 2 CPU cores; from the cross-modality init every layer learns, lr 3e-2 measured",
                              "faster than 1e-2 and 5e-2 on held-out videos (docs/demo-design-notes.md).") + _COMMON)
TINY_FUSION = replace(TINY_SPATIAL, base_lr=1e-3, steps=(500,), max_iter=600, snapshot=600,
                      cite=("Tiny demo fusion net: the fusion schedule of Sec. 5.2 (lr 1e-3, x0.1 later) shortened",
                            "for 2 CPU cores, as long as the spatial net's.") + _COMMON)


#: Pretraining of the tiny backbone on the synthetic image task (mfuse.pretrain), the stand-in for ImageNet.
TINY_PRETRAIN = Schedule(base_lr=5e-2, steps=(750,), max_iter=1000, batch=32, test_interval=250, test_iter=20,
                         snapshot=1000, display=20,
                         cite=("Tiny backbone pretraining on the synthetic image task (mfuse.pretrain): the stand-in",
                               "for ImageNet pretraining; multistep SGD as the ImageNet models' training.") + _COMMON)


def _field_comments(schedule: Schedule, batch_size: int, iter_size: int) -> dict:
    return {
        "base_lr": "starting learning rate",
        "stepvalue": "x gamma at each step",
        "max_iter": "stop",
        "iter_size": f"{batch_size} per pass x {iter_size} passes = batch {schedule.batch}",
        "snapshot_prefix": "relative to the directory caffe is run from (the repository root)",
        "solver_mode": "override with caffe train -gpu 0",
    }


def make_solver(net: str, schedule: Schedule, batch_size: int, snapshot_prefix: str,
                solver_mode: str = "CPU", random_seed: int | None = 1) -> caffe_pb2.SolverParameter:
    """The SolverParameter of ``schedule`` for a train_val net whose data layer holds ``batch_size``.

    Raises:
        ValueError: if ``batch_size`` does not divide the schedule's batch.
    """
    if batch_size <= 0 or schedule.batch % batch_size:
        raise ValueError(f"batch_size {batch_size} must divide the schedule's batch {schedule.batch}")
    solver = caffe_pb2.SolverParameter()
    solver.net = net
    solver.test_iter.append(schedule.test_iter)
    solver.test_interval = schedule.test_interval
    solver.test_initialization = False
    solver.base_lr = schedule.base_lr
    solver.lr_policy = "multistep"
    solver.gamma = schedule.gamma
    solver.stepvalue.extend(schedule.steps)
    solver.max_iter = schedule.max_iter
    solver.iter_size = schedule.batch // batch_size
    solver.momentum = schedule.momentum
    solver.weight_decay = schedule.weight_decay
    solver.display = schedule.display
    solver.average_loss = schedule.average_loss
    solver.snapshot = schedule.snapshot
    solver.snapshot_prefix = snapshot_prefix
    solver.solver_mode = getattr(caffe_pb2.SolverParameter, solver_mode)
    if random_seed is not None:
        solver.random_seed = random_seed
    return solver


def solver_text(solver: caffe_pb2.SolverParameter, schedule: Schedule, batch_size: int,
                header: tuple[str, ...] = ()) -> str:
    """Prototxt of ``solver`` with ``header`` and the schedule's citation as leading comments and a short
    comment after the fields whose meaning is not obvious."""
    comments = _field_comments(schedule, batch_size, solver.iter_size)
    lines = [f"# {line}" for line in header + schedule.cite]
    body = caffe_pb2.SolverParameter()
    body.CopyFrom(solver)
    body.ClearField("net")  # written first, where readers look for it
    text = text_format.MessageToString(caffe_pb2.SolverParameter(net=solver.net)) + text_format.MessageToString(body)
    for line in text.splitlines():
        comment = comments.pop(line.split(":", 1)[0].strip(), None)  # once per field (stepvalue repeats)
        lines.append(f"{line}  # {comment}" if comment else line)
    return "\n".join(lines) + "\n"
