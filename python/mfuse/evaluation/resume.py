"""Resuming an interrupted test run: ``<out>.partial.npz`` and what made it.

The test runner (:func:`mfuse.evaluation.testing.evaluate_net`) keeps the per-video scores done so far in
``<out>.partial.npz`` (``video_ids``, ``labels``, ``frame_scores`` as :class:`ScoreCollector` holds them) and
the run's *identity*, a JSON object in the array ``identity``:

- ``meta``: what the caller records (dataset, split, subset, net and weights paths, ``deploy_sha256``, ...);
- ``protocol``: frames, crop mode and size, stack length, RGB pairing, means;
- ``output``, ``apply_softmax``: which blob is scored and how;
- ``params_sha256``: SHA-256 of the loaded parameters (every blob of ``net.params``, with names and shapes),
  so other weights are noticed even under the same file name.

A run resumes only from a partial file of the same identity and says so (a warning of the logger
``mfuse.evaluation.resume``); a partial file of another run, or one without an identity, is refused with
``PartialMismatchError`` naming what differs: scores of two models are never mixed. Delete the file (test_net's
``--restart``) to start over.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np

from mfuse.evaluation.aggregate import ScoreCollector
from mfuse.fileio import atomic_path

logger = logging.getLogger(__name__)

#: The array of a partial file holding the run's identity (JSON).
IDENTITY_KEY = "identity"


class PartialMismatchError(ValueError):
    """A partial score file was written by another run (other net, weights, data or protocol)."""


def partial_path(out_path: str | Path) -> Path:
    """``<out>.partial.npz``: where the run writing ``out_path`` keeps its progress."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + ".partial.npz")


def params_digest(net) -> str:
    """SHA-256 (hex) of a pycaffe net's parameters: every layer name, blob shape and float32 value of
    ``net.params``, in order."""
    digest = hashlib.sha256()
    for name, blobs in net.params.items():
        for blob in blobs:
            data = np.ascontiguousarray(blob.data, dtype=np.float32)
            digest.update(f"{name}:{'x'.join(map(str, data.shape))};".encode())
            digest.update(data)
    return digest.hexdigest()


def file_digest(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def run_identity(net, meta: dict, protocol, output: str, apply_softmax: bool) -> dict:
    """The identity of a test run (see the module docstring) as plain JSON data; ``protocol`` a
    :class:`mfuse.evaluation.testing.Protocol` (its ``max_batch`` does not change the scores and is left out)."""
    settings = {key: value for key, value in asdict(protocol).items() if key != "max_batch"}
    settings["means"] = {name: None if mean is None else np.asarray(mean, dtype=np.float64).tolist()
                         for name, mean in dict(protocol.means).items()}
    identity = {"meta": meta, "protocol": settings, "output": output, "apply_softmax": bool(apply_softmax),
                "params_sha256": params_digest(net)}
    return json.loads(json.dumps(identity))


def _differences(before: dict, now: dict, prefix: str = "") -> list[str]:
    """``key: then X, now Y`` for every leaf that differs between two identities."""
    found = []
    for key in sorted(set(before) | set(now)):
        a, b = before.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key}: then {a!r}, now {b!r}")
    return found


class PartialScores:
    """The partial score file of one run: ``load`` (refusing another run's), ``save``, ``remove``.

    Args:
        out_path: the run's final score file; the partial file is :func:`partial_path` of it.
        identity: :func:`run_identity` of the run.
    """

    def __init__(self, out_path: str | Path, identity: dict):
        self.path = partial_path(out_path)
        self.identity = identity

    def load(self, num_classes: int) -> ScoreCollector:
        """The scores saved so far (none without a partial file); logs a resume.

        Raises:
            PartialMismatchError: the file has no identity or another one (the message lists the differences).
        """
        collector = ScoreCollector(num_classes)
        if not self.path.exists():
            return collector
        with np.load(self.path, allow_pickle=False) as data:
            if IDENTITY_KEY not in data.files:
                raise PartialMismatchError(
                    f"{self.path} does not say which net, weights and protocol made it (an older mfuse wrote it); "
                    f"delete it (test_net.py --restart) to start over")
            saved = json.loads(str(data[IDENTITY_KEY]))
            if saved != self.identity:
                raise PartialMismatchError(
                    f"{self.path} holds scores of another run: " + "; ".join(_differences(saved, self.identity))
                    + "; delete it (test_net.py --restart) to start over, or resume with the same settings")
            for video_id, label, frame_scores in zip(data["video_ids"], data["labels"], data["frame_scores"]):
                collector.add(str(video_id), int(label), frame_scores.astype(np.float64))
        logger.warning("resuming from %s: %d video(s) already scored by the same net, weights and protocol",
                       self.path, len(collector.video_ids))
        return collector

    def save(self, collector: ScoreCollector) -> None:
        """Writes the scores so far and the identity, atomically."""
        with atomic_path(self.path, suffix=".npz") as tmp:
            np.savez(tmp, **collector.snapshot(), **{IDENTITY_KEY: np.array(json.dumps(self.identity))})

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
