"""One rank of multi-GPU training: a pycaffe solver on one GPU, joined to the others through ``caffe.NCCL``.

Started by :func:`mfuse.training.run.train` (one ``python -m mfuse.training.worker`` process per GPU, through
:func:`mfuse.training.launcher.run_ranks`), as upstream's ``python/train.py`` does it: the rank sets its
device, ``caffe.set_solver_count/rank`` and ``caffe.set_multiprocess(True)`` (mfuse's data layer then reads
its share of each epoch, :mod:`mfuse.layers.video_data`), builds the solver, restores the snapshot or loads
the initial weights, joins NCCL with the launcher's id (``$MFUSE_NCCL_UID``, hex), takes rank 0's weights
(``bcast``) and trains: gradients are all-reduced (summed and scaled by 1 / ranks) after each layer's backward
(``layer_wise_reduce``, the default) or once per iteration. Caffe logs iterations and tests and writes
snapshots on rank 0 only; this module adds the final snapshot (``caffe train`` does it in ``Solver::Solve``,
which pycaffe's ``step`` skips). Every rank reports to the launcher (:class:`StatusChannel`) and dies with it.

``--cpu`` runs a rank on the CPU without NCCL: the ranks then train independently (their data still
sharded). It exists to test the launcher and the sharding on machines without GPUs.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from mfuse.training.launcher import StatusChannel
from mfuse.training.solver import load_solver

#: The NCCL unique id of a run (hex), made once by the launcher and given to every rank.
NCCL_UID_ENV = "MFUSE_NCCL_UID"
#: The launcher's pid: a rank whose parent is already another process exits at once.
LAUNCHER_PID_ENV = "MFUSE_LAUNCHER_PID"
#: Set in every process that starts NCCL: NVLink multicast (NVLS) can take a shared host's GPUs out of service.
NCCL_ENV = {"NCCL_NVLS_ENABLE": "0"}
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class RankConfig:
    """What one rank runs.

    Attributes:
        solver: the solver prototxt every rank runs (:func:`mfuse.training.solver.write_rank_solver`).
        rank, ranks: this rank and the number of ranks.
        gpu: the CUDA device, or None for a CPU rank without NCCL (see the module docstring).
        weights: initial weights (``caffe train -weights``); snapshot: a ``.solverstate`` to resume from.
        rank_weights: if set, every rank saves its final weights to ``<rank_weights>/rank<r>.caffemodel`` (to
            check that the ranks agree).
        timing: report the time spent in the data layers' forward with each iteration.
    """
    solver: Path
    rank: int
    ranks: int
    gpu: int | None
    weights: Path | None = None
    snapshot: Path | None = None
    rank_weights: Path | None = None
    timing: bool = False

    def command(self, python: str = sys.executable) -> list[str]:
        """The command line that runs this rank."""
        args = [python, "-m", "mfuse.training.worker", "--solver", str(self.solver), "--rank", str(self.rank),
                "--ranks", str(self.ranks)]
        args += ["--cpu"] if self.gpu is None else ["--gpu", str(self.gpu)]
        for flag, value in (("--weights", self.weights), ("--snapshot", self.snapshot),
                            ("--rank-weights", self.rank_weights)):
            if value is not None:
                args += [flag, str(value)]
        return args + (["--timing"] if self.timing else [])


def parse_args(argv: list[str] | None = None) -> RankConfig:
    parser = argparse.ArgumentParser(description="one rank of mfuse's multi-GPU training (started by "
                                                 "tools/train.py --gpus)")
    parser.add_argument("--solver", type=Path, required=True)
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--ranks", type=int, required=True)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--gpu", type=int)
    where.add_argument("--cpu", action="store_true")
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--snapshot", type=Path)
    parser.add_argument("--rank-weights", type=Path)
    parser.add_argument("--timing", action="store_true")
    args = parser.parse_args(argv)
    return RankConfig(args.solver, args.rank, args.ranks, None if args.cpu else args.gpu, args.weights,
                      args.snapshot, args.rank_weights, args.timing)


def _die_with_launcher() -> None:
    """SIGKILL this process when its parent (the launcher) dies; exit now if it already has."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):   # not Linux: the launcher's watchdog is the only guard
        return
    expected = os.environ.get(LAUNCHER_PID_ENV)
    if expected and os.getppid() != int(expected):
        os._exit(3)


def _data_layer_clock(net) -> list[float]:
    """Adds hooks that sum the wall time of ``net``'s data layers' forward (layers without bottoms) into the
    returned one-element list."""
    data_layers = {index for index, layer in enumerate(net.layers) if not list(net._bottom_ids(index))}
    total, started = [0.0], [0.0]

    def before(index):
        if index in data_layers:
            started[0] = time.perf_counter()

    def after(index):
        if index in data_layers:
            total[0] += time.perf_counter() - started[0]
    net.before_forward(before)
    net.after_forward(after)
    return total


def run_rank(config: RankConfig, status: StatusChannel, uid: bytes | None = None) -> None:
    """Trains one rank to the solver's ``max_iter`` (see the module docstring); raises what pycaffe raises."""
    os.environ.update(NCCL_ENV)
    import caffe

    if config.gpu is None:
        caffe.set_mode_cpu()
    else:
        caffe.set_device(config.gpu)
        caffe.set_mode_gpu()
    caffe.set_solver_count(config.ranks)
    caffe.set_solver_rank(config.rank)
    caffe.set_multiprocess(True)
    solver = caffe.get_solver(str(config.solver))
    if config.snapshot is not None:
        solver.restore(str(config.snapshot))
    elif config.weights is not None:
        for net in [solver.net, *solver.test_nets]:
            net.copy_from(str(config.weights))
    data_seconds = _data_layer_clock(solver.net) if config.timing else None
    solver.add_callback(lambda: status.iteration(solver.iter, data_seconds[0] if data_seconds else None),
                        lambda: None)
    if config.ranks > 1 and config.gpu is not None:
        if uid is None:
            raise RuntimeError(f"rank {config.rank}: no NCCL id (${NCCL_UID_ENV}); ranks are started by "
                               f"tools/train.py --gpus")
        nccl = caffe.NCCL(solver, uid)
        nccl.bcast()
        solver.add_callback(nccl)
        if solver.param.layer_wise_reduce:
            solver.net.after_backward(nccl)
    param = load_solver(config.solver)   # pycaffe's solver.param shows only a few fields
    solver.step(param.max_iter - solver.iter)
    status.iteration(solver.iter, data_seconds[0] if data_seconds else None)
    if config.rank == 0 and param.snapshot_after_train and (not param.snapshot or solver.iter % param.snapshot):
        solver.snapshot()   # as Solver::Solve after its last step
    if config.rank_weights is not None:
        config.rank_weights.mkdir(parents=True, exist_ok=True)
        solver.net.save(str(config.rank_weights / f"rank{config.rank}.caffemodel"))


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    _die_with_launcher()
    status = StatusChannel.from_env()
    uid = os.environ.get(NCCL_UID_ENV)
    try:
        run_rank(config, status, bytes.fromhex(uid) if uid else None)
    except BaseException as err:   # the traceback goes to this rank's log, one line to the launcher
        traceback.print_exc()
        sys.stderr.flush()
        lines = str(err).strip().splitlines()
        notes = getattr(err, "__notes__", [])   # the fork names the failing Python layer in a note
        status.error("".join(f"{note}: " for note in notes[-1:])
                     + f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": "))
        return 1
    status.done()
    return 0


if __name__ == "__main__":
    # Leave without the interpreter's shutdown: the rank's work is done (or reported), and tearing down pycaffe's
    # solver, NCCL and the data layer's prefetch thread in the interpreter's order can abort ("terminate called
    # without an active exception") or block, which would turn a finished rank into a failed or hung one.
    status_code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status_code)
