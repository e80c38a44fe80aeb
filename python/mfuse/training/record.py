"""What produced a final snapshot: a run record beside it, so that a finished stage is skipped only when
rerunning it would train the same thing.

The record of ``<prefix>_iter_<max_iter>.caffemodel`` is ``<prefix>_iter_<max_iter>.run.json``::

    {"version": 1, "state": "running" | "complete",
     "fingerprint": {"solver": sha256, "nets": {"train": sha256, "test0": ...}, "weights": sha256 | null,
                     "ranks": 2, "batch_size": 32, "iter_size": 1},
     "solver": path, "weights": path | null, "log": path, "gpus": [0, 1] | null, "snapshot": path | null,
     "started": ISO time, "finished": ISO time | null}

The fingerprint hashes the *parsed* solver and nets (comments and layout do not count; nor do the solver's
``solver_mode``, ``device_id``, ``display``, ``debug_info``, ``snapshot`` interval and the file names of its
nets, whose contents are hashed instead), the bytes of the ``--weights`` caffemodel, and the batch plan. Not
covered: the data the nets read, and the code of Python layers.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from mfuse.fileio import write_atomic
from mfuse.training.solver import BatchPlan, load_solver, solver_nets

RECORD_VERSION = 1
#: Solver fields that change no learned weight, left out of the fingerprint (the net files are hashed by content).
UNFINGERPRINTED_SOLVER_FIELDS = ("solver_mode", "device_id", "display", "debug_info", "snapshot", "net",
                                 "train_net", "test_net", "net_param", "train_net_param", "test_net_param")
RUNNING, COMPLETE = "running", "complete"


def message_sha256(message) -> str:
    """sha256 of a protobuf message's deterministic serialisation."""
    return hashlib.sha256(message.SerializeToString(deterministic=True)).hexdigest()


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    """sha256 of a file's bytes (read in chunks: caffemodels reach gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(solver_path: str | Path, plan: BatchPlan, weights: str | Path | None = None,
                cwd: str | Path = ".", weights_sha256: str | None = None) -> dict:
    """The fingerprint of training ``solver_path`` with ``plan`` from ``weights`` (see the module docstring).

    ``weights_sha256`` stands for the weights' hash when the file is not at hand (a resumed run inherits its
    first part's); it is ignored when ``weights`` is given.
    """
    solver = load_solver(solver_path)
    nets = solver_nets(solver, cwd)
    for field in UNFINGERPRINTED_SOLVER_FIELDS:
        solver.ClearField(field)
    return {"solver": message_sha256(solver), "nets": {role: message_sha256(net) for role, net in nets.items()},
            "weights": file_sha256(weights) if weights is not None else weights_sha256,
            "ranks": plan.ranks, "batch_size": plan.batch_size, "iter_size": plan.iter_size}


def differences(old: Mapping, new: Mapping) -> list[str]:
    """What differs between two fingerprints, in words (empty when they are equal)."""
    found = []
    if old.get("solver") != new.get("solver"):
        found.append("solver")
    old_nets, new_nets = old.get("nets", {}), new.get("nets", {})
    for role in sorted(set(old_nets) | set(new_nets)):
        if old_nets.get(role) != new_nets.get(role):
            found.append("train net" if role == "train" else f"test net {role[4:]}")
    if old.get("weights") != new.get("weights"):
        found.append("initial weights")
    if old.get("ranks") != new.get("ranks"):
        found.append(f"number of GPUs ({old.get('ranks')} then, {new.get('ranks')} now)")
    if (old.get("batch_size"), old.get("iter_size")) != (new.get("batch_size"), new.get("iter_size")):
        found.append(f"batch per GPU ({old.get('batch_size')} x {old.get('iter_size')} then, "
                     f"{new.get('batch_size')} x {new.get('iter_size')} now)")
    return found


def record_path(final: str | Path) -> Path:
    """Where the record of a final caffemodel lives: ``<name>.run.json`` beside it."""
    return Path(final).with_suffix(".run.json")


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def write_record(final: str | Path, key: Mapping, state: str, details: Mapping) -> Path:
    """Writes the record of ``final`` (atomically): ``key`` is the fingerprint, ``details`` the informational
    keys (solver, weights, log, gpus, snapshot, started). Returns its path."""
    record = {"version": RECORD_VERSION, "state": state, "fingerprint": dict(key), **details,
              "finished": now() if state == COMPLETE else None}
    return write_atomic(record_path(final), json.dumps(record, indent=1) + "\n")


def read_record(final: str | Path) -> dict | None:
    """The record of ``final``, or None when there is none. Raises ValueError naming the file when it is not a
    record of this version."""
    path = record_path(final)
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable run record ({err})") from err
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION or "fingerprint" not in record:
        raise ValueError(f"{path}: not a version-{RECORD_VERSION} run record")
    return record
