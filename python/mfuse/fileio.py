"""Atomic file writes: a reader sees the old file or the whole new one, never a half-written one."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Writes ``data`` (text as UTF-8, or bytes) to ``path`` through a temporary file in the same folder and
    ``os.replace``; creates the folder. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with tempfile.NamedTemporaryFile("wb", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(raw)
    os.replace(tmp.name, path)
    return path
