"""A process pool with a progress bar, shared by the preparation stages.

Usage::

    with worker_pool(workers) as pool:          # None when workers == 1: run inline
        for result in imap_progress(function, items, pool, "frames"):
            ...
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from multiprocessing.pool import Pool
from typing import TypeVar

from tqdm import tqdm

from mfuse.processes import die_with_parent, single_threaded_libraries

Item = TypeVar("Item")
Result = TypeVar("Result")


def _init_worker() -> None:
    # One OpenCV thread per worker process (the pool provides the parallelism); a killed build leaves no worker
    # writing behind it.
    single_threaded_libraries()
    die_with_parent()


def check_spawnable_main() -> None:
    """Spawned workers re-import the main script by its path; a script read from standard input (``python -``)
    has none, its workers die at start and ``multiprocessing.Pool`` restarts them forever (a silent hang).
    Raises RuntimeError saying so instead."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file is not None and not os.path.exists(main_file):
        raise RuntimeError(f"worker processes cannot start: the main script {main_file!r} is not a file they can "
                           "import (a script read from standard input?); save it to a file, or use 1 worker")


@contextmanager
def worker_pool(workers: int) -> Iterator[Pool | None]:
    """A pool of ``workers`` processes, or None (run inline) when ``workers == 1``.

    Workers are spawned, not forked: a forked child of a process whose OpenCV thread pool has run
    can hang inside OpenCV.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1:
        yield None
        return
    check_spawnable_main()
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        yield pool


def imap_progress(function: Callable[[Item], Result], items: Iterable[Item], pool: Pool | None, desc: str,
                  unit: str = "video", progress: bool = True) -> Iterator[Result]:
    """``function(item)`` for every item, on ``pool`` (completion order) or inline (in order).

    Shows a tqdm bar with the rate (``unit``/s) and the ETA. ``function`` must be a module-level
    function and should catch its own per-item errors.
    """
    items = list(items)
    with tqdm(total=len(items), desc=desc, unit=unit, disable=not progress, dynamic_ncols=True) as bar:
        results = map(function, items) if pool is None else pool.imap_unordered(function, items, chunksize=1)
        for result in results:
            yield result
            bar.update()
