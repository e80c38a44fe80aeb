"""Atomic file writes: a reader sees the old file or the whole new one, never a half-written one.

- :func:`write_atomic` writes bytes or text;
- :func:`atomic_path` hands a writer that wants a path (``np.savez``, ``net.save``, ``fig.savefig``,
  ``cv2.VideoWriter``) a temporary path in the target's folder and moves it into place when the block ends
  without an exception (on an exception the temporary file is removed and the target is left as it was).
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside ``path`` (the folder is created) that replaces ``path`` when the block succeeds.

    ``suffix``: the temporary file's ending, for writers that choose the format by it (``".avi"``) or append
    one (``np.savez`` adds ``.npz`` unless the name ends in it). Raises ``FileNotFoundError`` naming the
    target when the writer left no file at the temporary path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name, not a file: the writer creates it, with the permissions the umask gives.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}")
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"nothing was written for {path} (expected the temporary file {tmp})")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Writes ``data`` (text as UTF-8, or bytes) to ``path`` through a temporary file in the same folder and
    ``os.replace``; creates the folder. Returns the path."""
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path) as tmp:
        tmp.write_bytes(raw)
    return path
