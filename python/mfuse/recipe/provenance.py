"""Provenance of the recipe's stages: a stage is done when its record says so AND still holds.

A record (``<run>/provenance/<stage>.json``) holds the stage's settings and the fingerprints of its input and
output files when it finished. A stage is valid when its record exists, the settings are equal, every input
still has its recorded fingerprint and every output exists with its recorded fingerprint. A changed input (a
retrained net, another ImageNet model, edited lists), a changed setting or a touched output makes the stage
run again, and its new outputs then invalidate the stages that read them.

Fingerprints (:class:`Fingerprints`):

- a file: its SHA-256, cached by (size, mtime, inode) in ``<run>/provenance/hashes.json`` so that an unchanged
  file is hashed once (a VGG19 fusion caffemodel is ~1.6 GB);
- an LMDB frame store (a folder with ``data.mdb``): the SHA-256 of its ``__index__`` (videos, labels, frame
  counts, preparation settings) and the size of ``data.mdb``: the writer renames a database into place only
  when it is complete (``mfuse.prep.lmdb_store``), so this names its content without reading gigabytes;
- another folder: the fingerprints of its files, by relative path.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mfuse.fileio import write_atomic
from mfuse.stores.format import INDEX_KEY
from mfuse.stores.reader import open_readonly

RECORD_VERSION = 1
_CHUNK = 1 << 22


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def lmdb_index_bytes(folder: Path) -> bytes:
    """The ``__index__`` value of the LMDB at ``folder`` (b"" when it has none), through the process's shared
    read-only environment (LMDB opens a path once per process)."""
    with open_readonly(Path(folder)).begin(buffers=False) as txn:
        return bytes(txn.get(INDEX_KEY) or b"")


class Fingerprints:
    """Fingerprints of files and folders, with a cache of file hashes in ``cache_path`` (None: no cache)."""

    def __init__(self, cache_path: Path | None = None):
        self.cache_path = cache_path
        self.cache: dict[str, list] = {}
        if cache_path is not None and Path(cache_path).is_file():
            try:
                self.cache = json.loads(Path(cache_path).read_text())
            except ValueError:
                self.cache = {}
        self._dirty = False

    def of(self, path: str | os.PathLike) -> str | None:
        """The fingerprint of ``path``; None when it does not exist."""
        path = Path(path)
        if path.is_dir():
            if (path / "data.mdb").is_file():
                index = hashlib.sha256(lmdb_index_bytes(path)).hexdigest()
                return f"lmdb:{index}:{(path / 'data.mdb').stat().st_size}"
            files = sorted(p for p in path.rglob("*") if p.is_file())
            listing = "\n".join(f"{p.relative_to(path).as_posix()} {self.of(p)}" for p in files)
            return "dir:" + hashlib.sha256(listing.encode()).hexdigest()
        if not path.is_file():
            return None
        stat = path.stat()
        key = str(path.resolve())
        stamp = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
        cached = self.cache.get(key)
        if cached is not None and cached[:3] == stamp:
            return cached[3]
        digest = "sha256:" + sha256_file(path)
        self.cache[key] = stamp + [digest]
        self._dirty = True
        return digest

    def of_all(self, paths: Iterable[str | os.PathLike]) -> dict[str, str | None]:
        return {str(p): self.of(p) for p in paths}

    def save(self) -> None:
        if self.cache_path is not None and self._dirty:
            write_atomic(Path(self.cache_path), json.dumps(self.cache))
            self._dirty = False


@dataclass(frozen=True)
class Record:
    """What a finished stage was run with and made."""
    stage: str
    settings: Mapping
    inputs: Mapping[str, str | None]
    outputs: Mapping[str, str | None]
    seconds: float = 0.0
    extra: Mapping = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"version": RECORD_VERSION, "stage": self.stage, "settings": self.settings, "inputs": self.inputs,
                "outputs": self.outputs, "seconds": self.seconds, "extra": self.extra}


def _normal(settings: Mapping) -> object:
    """``settings`` as JSON would give them back (tuples become lists), to compare with a stored record."""
    return json.loads(json.dumps(settings, sort_keys=True))


class Provenance:
    """The records of one run folder: ``<root>/<stage>.json`` (stage names may hold ``/``)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.fingerprints = Fingerprints(self.root / "hashes.json")

    def path(self, stage: str) -> Path:
        return self.root / f"{stage}.json"

    def load(self, stage: str) -> dict | None:
        path = self.path(stage)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
        except ValueError:
            return None
        return record if record.get("version") == RECORD_VERSION else None

    def records(self) -> list[dict]:
        """Every readable record under the root, in the order the stages finished (the files' modification times)."""
        paths = sorted((p for p in self.root.rglob("*.json") if p != self.fingerprints.cache_path),
                       key=lambda p: p.stat().st_mtime_ns)
        found = []
        for path in paths:
            try:
                record = json.loads(path.read_text())
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("version") == RECORD_VERSION and "stage" in record:
                found.append(record)
        return found

    def why_invalid(self, stage: str, settings: Mapping, inputs: Iterable[Path], outputs: Iterable[Path]
                    ) -> str | None:
        """None when the stage's record holds (same settings, inputs and outputs as recorded); else the reason."""
        record = self.load(stage)
        if record is None:
            return "not run yet"
        if record["settings"] != _normal(settings):
            changed = sorted(k for k in set(record["settings"]) | set(_normal(settings))
                             if record["settings"].get(k) != _normal(settings).get(k))
            return f"settings changed: {', '.join(changed)}"
        current_inputs = {str(p) for p in inputs}
        if set(record["inputs"]) != current_inputs:
            return "other inputs"
        for kind, recorded in (("input", record["inputs"]), ("output", record["outputs"])):
            for name, fingerprint in recorded.items():
                if self.fingerprints.of(name) != fingerprint:
                    return f"{kind} {name} changed or missing"
        if set(record["outputs"]) != {str(p) for p in outputs}:
            return "other outputs"
        return None

    def write(self, stage: str, settings: Mapping, inputs: Iterable[Path], outputs: Iterable[Path],
              seconds: float = 0.0, extra: Mapping | None = None) -> Record:
        """Records a finished stage; ValueError naming the output when one is missing (nothing recorded)."""
        output_prints = self.fingerprints.of_all(outputs)
        missing = [name for name, value in output_prints.items() if value is None]
        if missing:
            raise ValueError(f"stage {stage} finished without its output {missing[0]}")
        record = Record(stage, _normal(settings), self.fingerprints.of_all(inputs), output_prints, seconds,
                        dict(extra or {}))
        write_atomic(self.path(stage), json.dumps(record.to_json(), indent=1, sort_keys=True))
        self.fingerprints.save()
        return record

    def invalidate(self, stage: str) -> None:
        self.path(stage).unlink(missing_ok=True)
