"""Running training processes: the ``caffe train`` binary (one process) or one process per GPU (ranks).

Each process writes its output to a log file; rank 0's log is the run's Caffe log. Ranks report to the
launcher over a status pipe (file descriptor ``$MFUSE_STATUS_FD``, :class:`StatusChannel`), one line per
event::

    iter <n> [<data seconds>]   iteration n starts (rank 0's drive the progress bar and the timeline)
    error <message>             the rank failed (it exits non-zero next)
    done                        the rank finished its iterations (and, on rank 0, the final snapshot)

**Failure handling.** When any rank exits non-zero, dies by a signal, exits without ``done``, or makes no
progress for ``start_timeout`` seconds before its first iteration or ``stall_timeout`` seconds after it (a
rank blocked in an all-reduce whose peer hangs), the launcher stops every other rank (SIGTERM, then SIGKILL
after ``KILL_GRACE_S``) and raises :class:`TrainingError` with that rank's message (its ``error`` line, else
the last lines of its log) and the log's path. Ranks also die with the launcher (``PR_SET_PDEATHSIG`` in
:mod:`mfuse.training.worker`), so no rank outlives a killed or interrupted launcher.
"""
from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

#: The environment variable naming a rank's status pipe (write end).
STATUS_FD_ENV = "MFUSE_STATUS_FD"
#: Seconds a stopped rank gets between SIGTERM and SIGKILL.
KILL_GRACE_S = 10.0
#: Default seconds before a rank's first iteration (net setup, NCCL start, weight broadcast).
START_TIMEOUT_S = 1800.0
#: Default seconds between two iterations of a rank (a test pass on rank 0 included).
STALL_TIMEOUT_S = 1800.0
ITERATION_RE = re.compile(r"Iteration (\d+)")
#: Log lines that say why a process died (glog FATAL / CHECK, Python exceptions), preferred in messages.
_CAUSE_RE = re.compile(r"Check failed|FATAL|\bF\d{4} |Error|error:|Exception|Aborted|caffe train failed")


class TrainingError(RuntimeError):
    """Training failed; the message holds the cause and the log's path."""


class StatusChannel:
    """A rank's side of the status pipe: ``iteration(n)``, ``error(message)``, ``done()``. Without
    ``$MFUSE_STATUS_FD`` (a rank run by hand) every call does nothing."""

    def __init__(self, fd: int | None):
        self._stream = os.fdopen(fd, "w", buffering=1) if fd is not None else None

    @classmethod
    def from_env(cls) -> StatusChannel:
        value = os.environ.get(STATUS_FD_ENV)
        return cls(int(value) if value else None)

    def _send(self, line: str) -> None:
        if self._stream is not None:
            try:
                self._stream.write(line.replace("\n", " ") + "\n")
            except BrokenPipeError:   # the launcher is gone; the rank is about to be killed
                self._stream = None

    def iteration(self, n: int, data_seconds: float | None = None) -> None:
        self._send(f"iter {n}" if data_seconds is None else f"iter {n} {data_seconds:.6f}")

    def error(self, message: str) -> None:
        self._send(f"error {message}")

    def done(self) -> None:
        self._send("done")


@dataclass(frozen=True)
class RankProcess:
    """One process to launch: its command, log file and a label for messages (``rank 1 (GPU 1)``)."""
    command: Sequence[str]
    log: Path
    label: str


@dataclass
class _Rank:
    spec: RankProcess
    process: subprocess.Popen
    reader: int
    buffer: bytes = b""
    last_iter: int | None = None
    last_beat: float = 0.0
    error: str | None = None
    done: bool = False
    timeline: list[tuple[int, float, float | None]] = field(default_factory=list)


def _exit_words(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit {returncode}"


def log_cause(log: Path, lines: int = 40) -> str:
    """The line of a log's tail that best says why its process died (last glog FATAL/CHECK or Python error
    line, else the last non-empty line); '' for an empty or missing log."""
    try:
        tail = [line.strip() for line in log.read_text(errors="replace").splitlines()[-lines:] if line.strip()]
    except OSError:
        return ""
    causes = [line for line in tail if _CAUSE_RE.search(line)]
    return (causes or tail or [""])[-1]


def _stop(ranks: Sequence[_Rank]) -> None:
    """SIGTERM every running rank, SIGKILL those still running after ``KILL_GRACE_S``, and reap them."""
    alive = [rank.process for rank in ranks if rank.process.poll() is None]
    for process in alive:
        process.terminate()
    deadline = time.monotonic() + KILL_GRACE_S
    for process in alive:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_ranks(processes: Sequence[RankProcess], env: Mapping[str, str], cwd: str | Path = ".",
              total_iters: int | None = None, start_iter: int = 0, progress: bool = True, desc: str = "train",
              start_timeout: float = START_TIMEOUT_S, stall_timeout: float = STALL_TIMEOUT_S,
              poll_s: float = 0.2) -> list[tuple[int, float, float | None]]:
    """Runs one process per rank until all finish; rank 0 (the first) drives the progress bar.

    Args:
        processes: the ranks, rank 0 first; each gets ``$MFUSE_STATUS_FD`` (see :class:`StatusChannel`).
        env: their environment; cwd: their working directory.
        total_iters, start_iter: the progress bar's end and start (iterations).
        start_timeout, stall_timeout: the watchdog (seconds; 0 turns it off), see the module docstring.

    Returns:
        rank 0's timeline: ``(iteration, seconds since launch, data seconds or None)`` per ``iter`` event.

    Raises:
        TrainingError: a rank failed, stalled or exited without finishing; every rank is stopped first.
    """
    ranks: list[_Rank] = []
    selector = selectors.DefaultSelector()
    launched = time.monotonic()
    try:
        for spec in processes:
            reader, writer = os.pipe()
            spec.log.parent.mkdir(parents=True, exist_ok=True)
            with open(spec.log, "wb") as log:
                try:
                    process = subprocess.Popen(list(spec.command), cwd=cwd, env={**env, STATUS_FD_ENV: str(writer)},
                                               stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                               pass_fds=(writer,))
                finally:
                    os.close(writer)
            os.set_blocking(reader, False)
            ranks.append(_Rank(spec, process, reader, last_beat=time.monotonic()))
            selector.register(reader, selectors.EVENT_READ, ranks[-1])
        with tqdm(total=total_iters, initial=start_iter, desc=desc, unit="it", disable=not progress) as bar:
            while True:
                for key, _ in selector.select(poll_s):
                    _read_status(key.data, selector, launched)
                if ranks[0].last_iter is not None and total_iters:
                    bar.update(max(0, min(ranks[0].last_iter, total_iters) - bar.n))
                failure = _failure(ranks, start_timeout, stall_timeout)
                if failure:
                    _stop(ranks)
                    raise TrainingError(failure)
                if all(rank.process.poll() is not None for rank in ranks):
                    for key in list(selector.get_map().values()):   # the last events before exit
                        _read_status(key.data, selector, launched)
                    failure = _failure(ranks, start_timeout, stall_timeout)
                    if failure:
                        raise TrainingError(failure)
                    if total_iters:
                        bar.update(max(0, total_iters - bar.n))
                    return ranks[0].timeline
    except BaseException:
        _stop(ranks)
        raise
    finally:
        selector.close()
        for rank in ranks:
            os.close(rank.reader)


def _read_status(rank: _Rank, selector: selectors.BaseSelector, launched: float) -> None:
    try:
        chunk = os.read(rank.reader, 65536)
    except BlockingIOError:
        return
    if not chunk:
        selector.unregister(rank.reader)
        return
    rank.buffer += chunk
    *lines, rank.buffer = rank.buffer.split(b"\n")
    now = time.monotonic()
    for raw in lines:
        kind, _, rest = raw.decode(errors="replace").partition(" ")
        if kind == "iter":
            values = rest.split()
            rank.last_iter, rank.last_beat = int(values[0]), now
            rank.timeline.append((rank.last_iter, now - launched, float(values[1]) if len(values) > 1 else None))
        elif kind == "error":
            rank.error = rest
        elif kind == "done":
            rank.done = True


def _failure(ranks: Sequence[_Rank], start_timeout: float, stall_timeout: float) -> str | None:
    """The message for the first failed or stalled rank, or None."""
    now = time.monotonic()
    for rank in ranks:
        code = rank.process.poll()
        if code is not None and (code != 0 or not rank.done):
            cause = rank.error or log_cause(rank.spec.log) or "no message"
            what = _exit_words(code) if code != 0 else "exited without finishing its iterations"
            return f"{rank.spec.label} failed ({what}): {cause} [log: {rank.spec.log}]" + _others(ranks, rank)
        if code is None and not rank.done:
            limit = start_timeout if rank.last_iter is None else stall_timeout
            if limit and now - rank.last_beat > limit:
                where = "before its first iteration" if rank.last_iter is None else \
                    f"after starting iteration {rank.last_iter}"
                return (f"{rank.spec.label} made no progress for {limit:.0f} s {where} (a hung rank or "
                        f"all-reduce; see {rank.spec.log})" + _others(ranks, rank))
    return None


def _others(ranks: Sequence[_Rank], failed: _Rank) -> str:
    running = [rank for rank in ranks if rank is not failed and rank.process.poll() is None]
    return "; the other ranks were stopped" if running else ""


def run_caffe_binary(command: Sequence[str], log_path: Path, env: Mapping[str, str], cwd: str | Path,
                     total_iters: int, progress: bool = True, desc: str = "train") -> int:
    """Runs one ``caffe train`` process, its output into ``log_path`` and its ``Iteration N`` lines into a
    progress bar. Returns its exit status."""
    with open(log_path, "w", buffering=1) as log, tqdm(total=total_iters, desc=desc, unit="it",
                                                       disable=not progress) as bar:
        process = subprocess.Popen(list(command), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, env=dict(env))
        try:
            for line in process.stdout:
                log.write(line)
                match = ITERATION_RE.search(line)
                if match:
                    bar.update(max(0, min(int(match.group(1)), total_iters) - bar.n))
            return process.wait()
        except BaseException:
            process.kill()
            process.wait()
            raise
