"""Worker processes that fill fixed-size items in shared memory, handed back in order (the data path's engine).

A *producer* is a picklable object with two methods::

    producer.layout() -> {name: (shape, dtype)}     # the arrays of one item, the same for every item
    producer.fill(index, out) -> None               # writes item ``index`` into ``out`` ({name: array})

``ParallelProducer(producer, start, stop, workers)`` makes items ``start, start + 1, ...`` (up to ``stop``,
or without end) and ``get()`` returns them in that order, whatever the number of workers: an item is a pure
function of its index, so the results never depend on ``workers``. With ``workers=0`` ``get()`` fills the item
in the calling thread; with ``workers=n`` n processes fill items ahead, item ``i`` in worker
``(i - start) % n``, each into one of its ``depth`` slots of one shared-memory buffer, so nothing larger
than an index crosses a pipe. An item returned by ``get()`` is a set of views into its slot: valid until the
next ``get()`` (which hands the slot back to its worker) or ``close()``.

Why processes: a pycaffe or ``caffe`` process holds the GIL for the whole of ``Net::Forward/Backward``
(neither pycaffe nor the Python layer releases it), so a Python thread in that process runs only while the
main thread is in Python: decoding in threads does not overlap the net (measured: a prefetch thread added its
whole decode time to every forward pass).

Workers are started with ``subprocess`` (not ``multiprocessing``, whose ``spawn`` re-imports the user's main
script), with the Python of this interpreter (:func:`python_executable`, also inside the embedded interpreter
of the ``caffe`` binary), this process's ``sys.path``, one OpenCV / BLAS thread each; they ignore SIGINT and
die with the parent (``PR_SET_PDEATHSIG``). ``close()`` (also called at interpreter exit, and when the object
is garbage collected) terminates and joins them, so no thread or process outlives the interpreter. A worker
that fails raises its exception here (the same type and message, noting the item); a worker that dies names
its exit status or signal.

The shared buffer is an unlinked file in ``/dev/shm`` when it has room, else in the temporary folder; its
space is reserved when it is made (``posix_fallocate``), so a full file system fails there with a message,
not later with SIGBUS.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import traceback
import weakref
from collections.abc import Mapping
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

Layout = Mapping[str, tuple[tuple[int, ...], str]]

#: Byte alignment of every array in a slot.
ALIGN = 64
#: Seconds ``close()`` waits for a worker to stop before killing it.
STOP_TIMEOUT = 10.0
_SHM_DIR = "/dev/shm"
_PR_SET_PDEATHSIG = 1


class WorkerError(RuntimeError):
    """A worker failed on an item or died; the message names the item (or the worker) and the cause."""


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask; ``os.cpu_count()`` where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_workers(shares: int = 1) -> int:
    """Workers for one of ``shares`` consumers on this machine: the usable cores but one (for the consumer's own
    thread), divided by ``shares`` (e.g. the ranks of a multi-GPU run), at least one."""
    return max(1, (usable_cores() - 1) // shares)


def python_executable() -> str:
    """A Python interpreter of this interpreter's version, to start workers with.

    ``sys.executable`` is not reliable inside an embedded interpreter (the ``caffe`` binary: it is whatever
    ``python3`` the ``PATH`` finds first), so the interpreter of ``sys.prefix`` (the venv, or the ``PYTHONHOME``
    the launcher set) comes first.
    """
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [Path(prefix) / "bin" / version for prefix in (sys.prefix, sys.base_prefix)]
    if Path(sys.executable or "").name == version:
        candidates.insert(0, Path(sys.executable))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise WorkerError(f"no {version} interpreter for the worker processes (looked for {[str(c) for c in candidates]});"
                      f" use workers 0 to work in this process")


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent dies (a killed run leaves no worker behind)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def single_threaded_libraries() -> None:
    """One OpenCV thread in this process: the workers are the parallelism (BLAS/OpenMP: see the environment)."""
    import cv2

    cv2.setNumThreads(1)


def slot_layout(layout: Layout) -> tuple[dict[str, tuple[int, tuple[int, ...], np.dtype]], int]:
    """``({name: (offset, shape, dtype)}, slot bytes)`` of one item, every array aligned to ``ALIGN`` bytes."""
    offsets, size = {}, 0
    for name, (shape, dtype) in layout.items():
        dtype = np.dtype(dtype)
        offsets[name] = (size, tuple(int(n) for n in shape), dtype)
        size += -(-int(np.prod(shape, dtype=np.int64)) * dtype.itemsize // ALIGN) * ALIGN
    return offsets, max(size, ALIGN)


def slot_arrays(buffer, offsets, slot_bytes: int, slot: int) -> dict[str, np.ndarray]:
    """The arrays of slot ``slot`` of ``buffer`` (views, no copy)."""
    base = slot * slot_bytes
    return {name: np.ndarray(shape, dtype, buffer=buffer, offset=base + offset)
            for name, (offset, shape, dtype) in offsets.items()}


def shared_buffer(size: int) -> tuple[int, mmap.mmap, str]:
    """``(fd, mapping, folder)``: ``size`` bytes of shared memory, an unlinked file in ``/dev/shm`` (or the
    temporary folder when ``/dev/shm`` lacks room), its space reserved."""
    folders = [_SHM_DIR] if os.path.isdir(_SHM_DIR) else []
    folders.append(tempfile.gettempdir())
    errors = []
    for folder in folders:
        try:
            stat = os.statvfs(folder)
            if stat.f_bavail * stat.f_frsize < size:
                errors.append(f"{folder}: {stat.f_bavail * stat.f_frsize >> 20} MiB free")
                continue
            fd, name = tempfile.mkstemp(prefix="mfuse-workers-", dir=folder)
        except OSError as error:
            errors.append(f"{folder}: {error}")
            continue
        os.unlink(name)
        try:
            os.posix_fallocate(fd, 0, size)
            return fd, mmap.mmap(fd, size), folder
        except OSError as error:
            os.close(fd)
            errors.append(f"{folder}: {error}")
    raise WorkerError(f"no room for {size >> 20} MiB of shared memory for the worker processes "
                      f"({'; '.join(errors)}); use fewer workers or a smaller batch")


class ParallelProducer:
    """Items ``start, start + 1, ... (< stop)`` of ``producer``, in order, filled by ``workers`` processes.

    Args:
        producer: see the module docstring (``layout()``, ``fill(index, out)``; picklable when ``workers > 0``).
        start: the first item; stop: one past the last (None: no end).
        workers: processes (0: fill in the calling thread, on ``get()``).
        depth: slots per worker (items a worker may have ready ahead).
        name: what the items are, for messages (``"data"``, ``"test crops"``).
    """

    def __init__(self, producer, start: int = 0, stop: int | None = None, workers: int = 0, depth: int = 2,
                 name: str = "data"):
        if workers < 0 or depth < 1:
            raise ValueError(f"{name}: workers must be >= 0 and depth >= 1, got {workers}, {depth}")
        self.producer, self.name = producer, name
        self.next_index, self.stop = start, stop
        self.workers = workers
        self._offsets, self._slot_bytes = slot_layout(producer.layout())
        self._current = None
        if workers == 0:
            self._local = bytearray(self._slot_bytes)
            return
        self._start, self._depth = start, depth
        fd, self._buffer, self.shm_folder = shared_buffer(self._slot_bytes * workers * depth)
        try:
            self._procs, self._tasks, self._results = _start_workers(workers, fd, producer, self._offsets,
                                                                     self._slot_bytes, self._buffer.size())
        finally:
            os.close(fd)
        self._finalizer = weakref.finalize(self, _stop_workers, self._procs, self._tasks, self._results,
                                           self._buffer)
        for index in range(start, start + workers * depth):
            self._submit(index)

    @property
    def pids(self) -> list[int]:
        """The process ids of the workers (empty without workers)."""
        return [proc.pid for proc in self._procs] if self.workers else []

    def _worker_and_slot(self, index: int) -> tuple[int, int]:
        offset = index - self._start
        worker = offset % self.workers
        return worker, worker * self._depth + (offset // self.workers) % self._depth

    def _submit(self, index: int) -> None:
        if self.stop is not None and index >= self.stop:
            return
        worker, slot = self._worker_and_slot(index)
        try:
            self._tasks[worker].send((index, slot))
        except OSError:
            pass  # the worker is gone: get() reports how it died

    def get(self) -> dict[str, np.ndarray]:
        """The next item: ``{name: array}`` views, valid until the next ``get()`` or ``close()``.

        Raises:
            StopIteration: past ``stop``.
            WorkerError: a worker failed on this item (the message has its cause) or died.
        """
        index = self.next_index
        if self.stop is not None and index >= self.stop:
            raise StopIteration(f"{self.name}: no item after {self.stop - 1}")
        if self.workers == 0:
            arrays = slot_arrays(self._local, self._offsets, self._slot_bytes, 0)
            self.producer.fill(index, arrays)
            self.next_index += 1
            return arrays
        if self._finalizer.alive is False:
            raise WorkerError(f"{self.name}: the worker processes were closed")
        if self._current is not None:          # its slot is free again: the worker may fill it with the next item
            self._submit(self._current + self.workers * self._depth)
            self._current = None
        worker, slot = self._worker_and_slot(index)
        try:
            done, error = self._results[worker].recv()
        except (EOFError, OSError):
            raise WorkerError(f"{self.name} worker {self._procs[worker].pid} died "
                              f"({_exit_status(self._procs[worker])}) while making item {index}") from None
        if done != index:
            raise WorkerError(f"{self.name} worker {self._procs[worker].pid} returned item {done}, expected {index}")
        if error is not None:
            self.close()
            if isinstance(error, str):
                raise WorkerError(f"{self.name} worker failed on item {index}: {error}")
            exc = pickle.loads(error)
            exc.add_note(f"(in a {self.name} worker process, making item {index})")
            raise exc
        self._current = index
        self.next_index += 1
        return slot_arrays(self._buffer, self._offsets, self._slot_bytes, slot)

    def close(self) -> None:
        """Stops and joins the workers (idempotent); items returned before are no longer valid."""
        if self.workers and self._finalizer.alive:
            self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _exit_status(proc: subprocess.Popen) -> str:
    try:
        code = proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        return "still running, its pipe closed"
    if code < 0:
        name = signal.Signals(-code).name
        hint = " (a damaged or truncated LMDB file?)" if -code == signal.SIGBUS else ""
        return f"killed by {name}{hint}"
    return f"exit status {code}"


def _start_workers(count: int, shm_fd: int, producer, offsets, slot_bytes: int, total: int):
    """Starts ``count`` workers sharing ``shm_fd``; returns ``(procs, task connections, result connections)``."""
    import mfuse

    package_root = str(Path(mfuse.__file__).resolve().parents[1])
    path = [package_root] + [p for p in sys.path if p and p != package_root]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    setup = pickle.dumps((producer, offsets, slot_bytes, total), protocol=pickle.HIGHEST_PROTOCOL)
    executable = python_executable()
    procs, tasks, results = [], [], []
    try:
        for _ in range(count):
            task_r, task_w = os.pipe()
            result_r, result_w = os.pipe()
            fds = (task_r, result_w, shm_fd)
            try:
                proc = subprocess.Popen([executable, "-c", "from mfuse.processes import worker_main; worker_main()",
                                         *map(str, fds), str(os.getpid())], pass_fds=fds, env=env,
                                        stdin=subprocess.DEVNULL)
            finally:
                os.close(task_r)
                os.close(result_w)
            procs.append(proc)
            tasks.append(Connection(task_w, readable=False))
            results.append(Connection(result_r, writable=False))
            tasks[-1].send_bytes(setup)
    except BaseException:
        _stop_workers(procs, tasks, results, None)
        raise
    return procs, tasks, results


def _stop_workers(procs, tasks, results, buffer) -> None:
    # Workers hold nothing worth finishing (they read stores and fill slots): stop them at once.
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for connection in tasks:
        connection.close()
    for connection in results:
        connection.close()
    if buffer is not None:
        try:
            buffer.close()
        except BufferError:
            pass  # arrays still refer to it; the mapping goes with them


def _portable_error(exc: Exception) -> bytes | str:
    """The pickled exception when it survives a round trip, else its type, message and traceback as text."""
    try:
        data = pickle.dumps(exc)
        pickle.loads(data)
        return data
    except Exception:  # noqa: BLE001 - any exception must reach the parent in some form
        return "".join(traceback.format_exception(exc, limit=5)).strip()


def worker_main() -> None:
    """Entry point of a worker process (``python -c``; arguments: task fd, result fd, buffer fd, parent pid)."""
    task_fd, result_fd, shm_fd, parent = (int(a) for a in sys.argv[1:5])
    die_with_parent()
    if os.getppid() != parent:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tasks, results = Connection(task_fd, writable=False), Connection(result_fd, readable=False)
    try:
        producer, offsets, slot_bytes, total = pickle.loads(tasks.recv_bytes())
        single_threaded_libraries()
        buffer = mmap.mmap(shm_fd, total)
        while True:
            index, slot = tasks.recv()
            try:
                producer.fill(index, slot_arrays(buffer, offsets, slot_bytes, slot))
                error = None
            except Exception as exc:  # noqa: BLE001 - handed to the parent, which raises it with the item
                error = _portable_error(exc)
            results.send((index, error))
    except (EOFError, BrokenPipeError):
        return

