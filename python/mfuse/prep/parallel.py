"""A process pool with a progress bar, shared by the preparation stages."""

from __future__ import annotations

import ctypes
import multiprocessing
import signal
from typing import Callable, Iterable, Iterator, TypeVar

import cv2
from tqdm import tqdm

Item = TypeVar("Item")
Result = TypeVar("Result")


def _init_worker() -> None:
    # One OpenCV thread per worker process: the pool provides the parallelism.
    cv2.setNumThreads(1)
    # Die with the parent (Linux PR_SET_PDEATHSIG): a killed build leaves no worker writing behind it.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def imap_progress(function: Callable[[Item], Result], items: Iterable[Item], workers: int, desc: str,
                  total: int | None = None, unit: str = "video", progress: bool = True) -> Iterator[Result]:
    """``function(item)`` for every item on ``workers`` processes (inline, in order, when 1).

    With a pool the results come in completion order.

    Shows a tqdm bar with the rate (``unit``/s) and the ETA. ``function`` must be picklable (a
    module-level function) and should catch its own per-item errors.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    items = list(items)
    bar = tqdm(total=len(items) if total is None else total, desc=desc, unit=unit, disable=not progress,
               dynamic_ncols=True)
    with bar:
        if workers == 1:
            for item in items:
                yield function(item)
                bar.update()
            return
        with multiprocessing.get_context("fork").Pool(workers, initializer=_init_worker) as pool:
            for result in pool.imap_unordered(function, items, chunksize=1):
                yield result
                bar.update()
