"""Training one solver: ``caffe train`` on the CPU or one GPU, one pycaffe process per GPU on several; with a
progress bar, exact resume, and a run record that decides whether a finished stage may be skipped.

    from mfuse.training import train
    final = train("prototxt/vgg19/mfuse_conv5_solver.prototxt", weights="runs/vgg19/mfuse_conv5/init.caffemodel",
                  gpus=[0, 1, 2, 3], batch="split")

One GPU (or none) runs the fork's binary through the venv's launcher (``<venv>/bin/caffe``, which puts
pycaffe, ``mfuse`` and the venv's packages on ``PYTHONPATH`` for the Python data layer). Several GPUs run
:mod:`mfuse.training.worker` once per GPU under :func:`mfuse.training.launcher.run_ranks` (NCCL all-reduce;
the data layer reads one share of each epoch per rank; snapshots, the log and the progress bar come from
rank 0; any rank's failure stops all with its message). How the batch spreads over GPUs:
:mod:`mfuse.training.solver`. What makes a stage "the same": :mod:`mfuse.training.record`.
"""
from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from mfuse.conventions import GLOG_LEVEL_ENV, START_BATCH_ENV
from mfuse.training import record
from mfuse.training.devices import cuda_device_count, resolve_gpus
from mfuse.training.launcher import (START_TIMEOUT_S, STALL_TIMEOUT_S, RankProcess, TrainingError,
                                     run_caffe_binary, run_ranks)
from mfuse.training.solver import (BATCH_PER_GPU, BatchPlan, plan_batch, read_solver, solverstate_iteration,
                                   write_rank_solver)
from mfuse.training.worker import LAUNCHER_PID_ENV, NCCL_ENV, NCCL_UID_ENV, RankConfig

#: ``engine``: the binary for the CPU and one GPU, ranks for several GPUs.
ENGINE_AUTO = "auto"
#: ``engine``: pycaffe rank processes whatever the number of GPUs (CPU ranks when ``gpus`` is None).
ENGINE_RANKS = "ranks"


def _to_stderr(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


@dataclass(frozen=True)
class TrainResult:
    """What :func:`run_training` did.

    Attributes:
        final: the final caffemodel (None for a solver that writes none: ``snapshot_after_train: false``).
        skipped: True when it existed from an identical earlier run (nothing was trained).
        plan: the batch plan; log: rank 0's (or the binary's) log.
        timeline: rank 0's ``(iteration, seconds since launch, data-layer seconds or None)`` events of a
            multi-process run (empty otherwise).
    """
    final: Path | None
    skipped: bool
    plan: BatchPlan
    log: Path
    timeline: tuple[tuple[int, float, float | None], ...] = ()


def default_log(solver_path: str | Path, cwd: str | Path = ".") -> Path:
    """``train.log`` in the folder of the solver's ``snapshot_prefix`` (``runs/<net>/train.log``)."""
    return Path(cwd) / Path(read_solver(solver_path).snapshot_prefix).parent / "train.log"


def rank_log(log_path: Path, rank: int) -> Path:
    """Rank 0 writes ``log_path``; rank r > 0 ``<stem>.rank<r><suffix>`` beside it."""
    return log_path if rank == 0 else log_path.with_name(f"{log_path.stem}.rank{rank}{log_path.suffix}")


def caffe_binary() -> Path:
    """The fork's ``caffe``: the launcher in the running venv (tools/setup.sh makes it), else the ``caffe`` on
    PATH (the GPU machine's device bundle puts its own first there, docs/gpu.md)."""
    launcher = Path(sys.prefix) / "bin" / "caffe"
    if launcher.exists():
        return launcher
    found = shutil.which("caffe")
    if found is None:
        raise FileNotFoundError(f"{launcher} is missing and no caffe is on PATH: run tools/setup.sh (or source "
                                "the device bundle's env.sh)")
    return Path(found)


def train(solver_path: str | Path, log_path: str | Path | None = None, weights: str | Path | None = None,
          cwd: str | Path = ".", gpus: int | str | Sequence[int] | None = None,
          snapshot: str | Path | None = None, progress: bool = True, force: bool = False,
          batch: str = BATCH_PER_GPU, announce: Callable[[str], None] = _to_stderr,
          start_timeout: float = START_TIMEOUT_S, stall_timeout: float = STALL_TIMEOUT_S,
          gpu: int | None = None) -> Path:
    """Trains ``solver_path`` to its final snapshot, or skips it when an identical run already wrote it;
    returns that caffemodel.

    Args:
        solver_path: the solver prototxt.
        log_path: where Caffe's log goes (overwritten; rank r > 0 of a multi-GPU run writes
            ``<stem>.rank<r><suffix>`` beside it); None: :func:`default_log`.
        weights: initial weights (``caffe train -weights``).
        cwd: where Caffe runs (relative paths in the solver and nets resolve against it).
        gpus: None trains as the solver says (CPU for mfuse's committed solvers); one id, a list, ``"0,1"``
            or ``"all"`` (Caffe's ``-gpu all``). Several GPUs: one process per GPU with NCCL.
        snapshot: resume from this ``.solverstate``; mfuse's data layer then continues with the batch the
            interrupted run would have read next (``mfuse.conventions.START_BATCH_ENV``), and the fork reseeds
            its RNG per iteration, so the result equals an uninterrupted run's (with the same GPUs and batch
            plan; another number of GPUs continues from the same weights and iteration on another data order).
        progress: show a progress bar (rank 0's iterations).
        force: train even when the final snapshot exists (it and the other snapshots are overwritten).
        batch: ``"per-gpu"`` (Caffe's convention: every GPU runs the solver's batch, total = batch x iter_size
            x GPUs) or ``"split"`` (the solver's batch x iter_size is the total, divided over the GPUs; the
            paper's batch on any number of GPUs). See :mod:`mfuse.training.solver`.
        announce: receives the one-line notices (a skipped stage, a snapshot used without a record, the ranks
            started); default: stderr.
        start_timeout, stall_timeout: the multi-GPU watchdog, seconds before a rank's first iteration and
            between two (0: off); a rank that exceeds them stops the run.
        gpu: the earlier one-GPU argument, the same as ``gpus=gpu`` (not both).

    Raises:
        TrainingError: Caffe or a rank failed (the message names the cause and the log), or the final
            snapshot exists from a run with another solver, net, weights, number of GPUs or batch (pass
            ``force`` to retrain).
        GpuSelectionError: ``gpus`` names a GPU the machine lacks, or the machine shows none.
        ValueError: a solver or net that cannot be read, weights together with a snapshot, or a batch that does
            not split over the GPUs.
    """
    if gpu is not None:
        if gpus is not None:
            raise ValueError("give gpus or gpu, not both")
        gpus = gpu
    if not read_solver(solver_path).writes_final:
        raise ValueError(f"{solver_path}: the solver writes no final snapshot (snapshot_after_train: false and no "
                         f"snapshot interval dividing max_iter)")
    return run_training(solver_path, log_path, weights, cwd, gpus, snapshot, progress, force, batch, announce,
                        start_timeout, stall_timeout).final


def run_training(solver_path: str | Path, log_path: str | Path | None = None, weights: str | Path | None = None,
                 cwd: str | Path = ".", gpus: int | str | Sequence[int] | None = None,
                 snapshot: str | Path | None = None, progress: bool = True, force: bool = False,
                 batch: str = BATCH_PER_GPU, announce: Callable[[str], None] = _to_stderr,
                 start_timeout: float = START_TIMEOUT_S, stall_timeout: float = STALL_TIMEOUT_S,
                 engine: str = ENGINE_AUTO, cpu_ranks: int = 1, rank_weights: str | Path | None = None,
                 timing: bool = False) -> TrainResult:
    """:func:`train` with what checks and benchmarks need besides; returns a :class:`TrainResult`.

    Args (besides :func:`train`'s):
        engine: ``"auto"`` (see the module docstring) or ``"ranks"``: pycaffe processes even for one GPU, or
            ``cpu_ranks`` CPU processes when ``gpus`` is None (ranks that do not communicate: tests only).
        rank_weights: a folder where every rank saves its final weights (``rank<r>.caffemodel``).
        timing: ranks report their data layers' time with each iteration (in ``timeline``).
    """
    cwd = Path(cwd).resolve()
    # caffe runs in ``cwd``: paths given relative to the caller's directory must not change meaning.
    solver_path = Path(solver_path).resolve()
    log_path = Path(log_path).resolve() if log_path is not None else default_log(solver_path, cwd)
    weights = None if weights is None else Path(weights).resolve()
    snapshot = None if snapshot is None else Path(snapshot).resolve()
    if weights is not None and snapshot is not None:
        raise ValueError("give initial weights or a snapshot to resume from, not both (as caffe train)")
    for path, what in ((weights, "weights"), (snapshot, "snapshot")):
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"{what} {path} does not exist")
    if engine not in (ENGINE_AUTO, ENGINE_RANKS):
        raise ValueError(f"engine must be {ENGINE_AUTO!r} or {ENGINE_RANKS!r}, got {engine!r}")
    info = read_solver(solver_path)
    final = info.final_caffemodel(cwd) if info.writes_final else None
    gpu_ids = None if gpus is None else resolve_gpus(gpus, cuda_device_count)
    use_ranks = engine == ENGINE_RANKS or (gpu_ids is not None and len(gpu_ids) > 1)
    ranks = (len(gpu_ids) if gpu_ids is not None else cpu_ranks) if use_ranks else 1
    nccl = use_ranks and gpu_ids is not None and ranks > 1
    if nccl:
        _require_nccl(gpu_ids)
    plan = plan_batch(solver_path, ranks, batch, cwd)

    previous = record.read_record(final) if final is not None and (final.exists() or snapshot) else None
    inherited = previous["fingerprint"].get("weights") if previous and snapshot is not None else None
    key = record.fingerprint(solver_path, plan, weights, cwd, weights_sha256=inherited)
    exists = final is not None and final.exists()
    if exists and not force:
        if previous is None:
            announce(f"train: using {final} as it is: it has no run record (trained outside mfuse.training or "
                     f"before records); pass --force to retrain")
            return TrainResult(final, True, plan, log_path)
        changed = record.differences(previous["fingerprint"], key)
        if changed:
            raise TrainingError(f"{final} exists from a run with another {', '.join(changed)} (record "
                                f"{record.record_path(final)}); pass --force to retrain (its snapshots are "
                                f"overwritten) or change snapshot_prefix")
        announce(f"train: skipped, {final} is up to date (same solver, nets, weights and batch; its log: "
                 f"{previous.get('log')}); pass --force to retrain")
        return TrainResult(final, True, plan, log_path)
    if exists:
        announce(f"train: --force: retraining {final}")

    details = {"solver": str(solver_path), "weights": None if weights is None else str(weights),
               "log": str(log_path), "gpus": gpu_ids, "snapshot": None if snapshot is None else str(snapshot),
               "started": record.now()}
    if final is not None:
        record.write_record(final, key, record.RUNNING, details)
    env = {**os.environ, GLOG_LEVEL_ENV: "0", **NCCL_ENV}   # the log is parsed: Caffe must log at INFO
    if snapshot is not None:
        env[START_BATCH_ENV] = str(solverstate_iteration(snapshot) * plan.iter_size)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    (cwd / info.snapshot_prefix).parent.mkdir(parents=True, exist_ok=True)
    desc = f"train {solver_path.stem}"
    if use_ranks:
        where = f"GPUs {','.join(map(str, gpu_ids))}" if gpu_ids is not None else "CPU (no NCCL)"
        announce(f"train: {solver_path.name} on {ranks} processes ({where}), {plan.describe()}; log {log_path}")
        rank_solver = write_rank_solver(solver_path, plan, log_path.with_suffix(".solver.prototxt"), cwd)
        if nccl:
            env[NCCL_UID_ENV] = _new_nccl_uid().hex()
        env[LAUNCHER_PID_ENV] = str(os.getpid())
        processes = []
        for rank in range(ranks):
            config = RankConfig(rank_solver, rank, ranks, None if gpu_ids is None else gpu_ids[rank], weights,
                                snapshot, None if rank_weights is None else Path(rank_weights).resolve(), timing)
            label = f"rank {rank}" + ("" if gpu_ids is None else f" (GPU {gpu_ids[rank]})")
            processes.append(RankProcess(config.command(), rank_log(log_path, rank), label))
        start = solverstate_iteration(snapshot) if snapshot is not None else 0
        timeline = run_ranks(processes, env, cwd, info.max_iter, start, progress, desc, start_timeout,
                             stall_timeout)
    else:
        command = [str(caffe_binary()), "train", "-solver", str(solver_path)]
        for flag, value in (("-weights", weights), ("-snapshot", snapshot)):
            if value is not None:
                command += [flag, str(value)]
        if gpu_ids is not None:
            command += ["-gpu", str(gpu_ids[0])]
        returncode = run_caffe_binary(command, log_path, env, cwd, info.max_iter, progress, desc)
        if returncode != 0:
            tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-25:])
            raise TrainingError(f"caffe train -solver {solver_path} failed (exit {returncode}); log {log_path}:\n"
                                f"{tail}")
        timeline = []
    if final is None:
        return TrainResult(None, False, plan, log_path, tuple(timeline))
    if not final.exists():
        raise TrainingError(f"training {solver_path} ended without writing its final snapshot {final}; log "
                            f"{log_path}")
    record.write_record(final, key, record.COMPLETE, details)
    return TrainResult(final, False, plan, log_path, tuple(timeline))


def _require_nccl(gpu_ids: Sequence[int]) -> None:
    import caffe

    if not caffe.has_nccl():
        raise TrainingError(f"gpus {','.join(map(str, gpu_ids))}: this Caffe was built without NCCL, so it cannot "
                            f"train on several GPUs (rebuild the fork with NCCL: docs/fork-build.md)")


def _new_nccl_uid() -> bytes:
    import caffe

    os.environ.update(NCCL_ENV)   # NCCL starts in this process too (its bootstrap root)
    return bytes(caffe.NCCL.new_uid())
