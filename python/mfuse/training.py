"""Running ``caffe train`` from Python: one solver, its log, a progress bar, and resumable skipping.

The fork's binary is run through the venv's launcher (``<venv>/bin/caffe``, written by ``tools/setup.sh``),
which puts pycaffe, ``mfuse`` and the venv's packages on ``PYTHONPATH`` for the Python data layer.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from caffe.proto import caffe_pb2
from google.protobuf import text_format
from tqdm import tqdm

from mfuse.conventions import GLOG_LEVEL_ENV, START_BATCH_ENV

ITERATION_RE = re.compile(r"Iteration (\d+)")


class TrainingError(RuntimeError):
    """``caffe train`` failed; the message holds the log's path and its last lines."""


@dataclass(frozen=True)
class SolverInfo:
    """What a solver prototxt says about where its run ends."""
    path: Path
    max_iter: int
    snapshot_prefix: str
    iter_size: int = 1

    def final_caffemodel(self, cwd: Path) -> Path:
        """The snapshot Caffe writes at the end of training (relative prefixes resolve against ``cwd``)."""
        return Path(cwd) / f"{self.snapshot_prefix}_iter_{self.max_iter}.caffemodel"


def read_solver(path: str | Path) -> SolverInfo:
    """Parses a solver prototxt; raises ValueError naming the file if it lacks max_iter or snapshot_prefix."""
    solver = caffe_pb2.SolverParameter()
    text_format.Merge(Path(path).read_text(), solver)
    if not solver.max_iter or not solver.snapshot_prefix:
        raise ValueError(f"{path}: a solver needs max_iter and snapshot_prefix")
    return SolverInfo(Path(path), solver.max_iter, solver.snapshot_prefix, solver.iter_size)


def solverstate_iteration(path: str | Path) -> int:
    """The iteration a ``.solverstate`` snapshot was taken at."""
    state = caffe_pb2.SolverState()
    state.ParseFromString(Path(path).read_bytes())
    return state.iter


def caffe_binary() -> Path:
    """The launcher of the fork's ``caffe`` in the running venv."""
    launcher = Path(sys.prefix) / "bin" / "caffe"
    if not launcher.exists():
        raise FileNotFoundError(f"{launcher} is missing: run tools/setup.sh")
    return launcher


def train(solver_path: str | Path, log_path: str | Path, weights: str | Path | None = None,
          cwd: str | Path = ".", gpu: int | None = None, snapshot: str | Path | None = None,
          progress: bool = True) -> Path:
    """Runs ``caffe train`` for ``solver_path`` unless its final snapshot exists; returns that caffemodel.

    Args:
        solver_path: the solver prototxt.
        log_path: where Caffe's log goes (overwritten).
        weights: ``-weights`` initialisation.
        cwd: where caffe runs (relative paths in the solver and nets resolve against it).
        gpu: ``-gpu N``; None trains as the solver says (CPU for mfuse's committed solvers).
        snapshot: resume from this ``.solverstate``; mfuse's data layer then continues with the batch the
            interrupted run would have read next (``mfuse.conventions.START_BATCH_ENV``), and the fork reseeds its RNG
            per iteration, so the result equals an uninterrupted run's.

    Raises:
        TrainingError: with the log's last lines when caffe exits non-zero or writes no final snapshot.
    """
    # caffe runs in ``cwd``: paths given relative to the caller's directory must not change meaning.
    solver_path, log_path = Path(solver_path).resolve(), Path(log_path).resolve()
    weights = None if weights is None else Path(weights).resolve()
    snapshot = None if snapshot is None else Path(snapshot).resolve()
    info = read_solver(solver_path)
    final = info.final_caffemodel(Path(cwd))
    if final.exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    command = [str(caffe_binary()), "train", "-solver", str(solver_path)]
    if weights is not None:
        command += ["-weights", str(weights)]
    if gpu is not None:
        command += ["-gpu", str(gpu)]
    # The log is parsed (progress, curves): Caffe must log at INFO whatever the caller's pycaffe setting.
    env = dict(os.environ, **{GLOG_LEVEL_ENV: "0"})
    if snapshot is not None:
        command += ["-snapshot", str(snapshot)]
        env[START_BATCH_ENV] = str(solverstate_iteration(snapshot) * info.iter_size)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as log, tqdm(total=info.max_iter, desc=f"train {Path(solver_path).stem}",
                                          unit="it", disable=not progress) as bar:
        process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env=env)
        for line in process.stdout:
            log.write(line)
            match = ITERATION_RE.search(line)
            if match:
                bar.update(max(0, min(int(match.group(1)), info.max_iter) - bar.n))
        returncode = process.wait()
    if returncode != 0 or not final.exists():
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-25:])
        raise TrainingError(f"caffe train -solver {solver_path} failed (exit {returncode}); log {log_path}:\n{tail}")
    return final
