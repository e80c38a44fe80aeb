"""What the recipe's stages do: each one a call of the package's own functions, resumable where it is long.

- :func:`train_net`: ``mfuse.training.train`` of one solver; a killed run resumes from its last snapshot with
  the exact-resume machinery (same final weights as an uninterrupted run), unless the net's inputs changed
  since it started (then its snapshot folder is wiped and it starts afresh); when the net is done, only its
  final caffemodel is kept;
- :func:`test_net`: the 25 x 10 test of one net (``mfuse.evaluation.evaluate_net``, which resumes from its
  partial score file, again only when the inputs are those it started with);
- :func:`late_fusion`: S + T, S (amp) + T, the paper's 2 : 3 : 4 with m-fusion, and the same three streams
  with weights searched on held-out training videos.

Each resumable stage keeps a ``started`` marker beside its outputs: the identity (settings and input
fingerprints) of the run that made its partial files.
"""
from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from caffe.proto import caffe_pb2
from google.protobuf.message import DecodeError

from mfuse.evaluation import (Protocol, ScoreFileError, ScoreSet, TestSubsetError, evaluate_net, fuse, load_scores,
                              load_test_net, net_geometry, paper_weighted_fusion, save_scores, search_weights)
from mfuse.fileio import write_atomic
from mfuse.stores.reader import open_frame_stores
from mfuse.surgery import SurgeryError
from mfuse.training import BATCH_SPLIT, TrainingError, read_solver, solverstate_iteration, train

#: The late fusions, by score-set name: the streams (score-set names of nets) and their weights (None: the
#: paper's '+', equal weights).
FUSIONS = {"S+T": ({"spatial": "spatial", "temporal": "temporal"}, None),
           "Samp+T": ({"spatial": "spatial_amp", "temporal": "temporal"}, None)}
#: The three streams of the paper's final fusion (Sec. 5.4: m-fusion : spatial : temporal = 2 : 3 : 4).
FINAL_STREAMS = {"mfusion": "mfuse_{kind}", "spatial": "spatial_amp", "temporal": "temporal"}
FINAL_KINDS = ("conv5", "fc7")
#: The nets tested on the held-out training videos (the streams of the final fusions).
HELDOUT_NETS = ("spatial_amp", "temporal", "mfuse_conv5", "mfuse_fc7")
STARTED = "started.json"


class RecipeError(RuntimeError):
    """A stage cannot run; the message says why and what to do."""


#: The errors a stage reports with their cause (the CLI prints them without a traceback).
STAGE_ERRORS = (RecipeError, TrainingError, SurgeryError, ScoreFileError, TestSubsetError)


def resume_or_reset(marker: Path, identity: Mapping, partial: Sequence[Path]) -> bool:
    """True when ``marker`` records ``identity`` (partial work may be resumed); otherwise removes the ``partial``
    files and folders, writes the marker and returns False."""
    text = json.dumps(identity, sort_keys=True, default=str)
    if marker.is_file() and marker.read_text() == text:
        return True
    for path in partial:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    write_atomic(marker, text)
    return False


def latest_snapshot(prefix: str | Path) -> Path | None:
    """The ``.solverstate`` of the highest iteration under ``prefix`` (``<prefix>_iter_N.solverstate``) that
    parses and whose caffemodel exists (a kill during a snapshot leaves at most the newest one incomplete:
    :func:`snapshot_complete`)."""
    prefix = Path(prefix)
    pattern = re.compile(re.escape(prefix.name) + r"_iter_(\d+)\.solverstate$")
    found = sorted(((int(m.group(1)), p) for p in prefix.parent.glob(f"{prefix.name}_iter_*.solverstate")
                    if (m := pattern.match(p.name))), reverse=True)
    for iteration, path in found:
        if path.with_suffix(".caffemodel").is_file() and snapshot_complete(path, iteration):
            return path
    return None


def snapshot_complete(path: Path, iteration: int) -> bool:
    """Whether a ``.solverstate`` was written to its end: Caffe serialises ``iter``, ``learned_net``, the
    history and last ``current_step`` (field 4, always set), so a file cut anywhere lacks it or fails to parse."""
    state = caffe_pb2.SolverState()
    try:
        state.ParseFromString(path.read_bytes())
    except DecodeError:
        return False
    return state.iter == iteration and state.HasField("current_step")


def eval_gpu(gpus: Sequence[int]) -> int | None:
    """The device the 25 x 10 test runs on: the first of ``gpus`` (None: CPU). Testing is one process."""
    return gpus[0] if gpus else None


def train_net(solver: Path, log: Path, weights: Path | None, cwd: Path, gpus: Sequence[int], identity: Mapping,
              progress: bool = True) -> Path:
    """Trains ``solver`` (resuming an interrupted run of the same ``identity``); returns the final caffemodel."""
    info = read_solver(solver)
    prefix = Path(cwd) / info.snapshot_prefix
    net_dir = prefix.parent
    net_dir.mkdir(parents=True, exist_ok=True)
    resumable = resume_or_reset(net_dir.parent / f"{net_dir.name}.{STARTED}", identity, [net_dir, log])
    net_dir.mkdir(parents=True, exist_ok=True)
    snapshot = latest_snapshot(prefix) if resumable else None
    if snapshot is not None and not info.final_caffemodel(cwd).is_file() and Path(log).is_file():
        # Keep the interrupted run's log (its curve up to the snapshot); the resumed run writes a new one.
        kept = Path(log).with_name(f"{Path(log).stem}.until_iter_{solverstate_iteration(snapshot)}.log")
        if not kept.exists():
            Path(log).rename(kept)
    # A resumed run takes its weights from the snapshot (Caffe refuses both).
    # Several GPUs keep the schedule's total batch (the paper's): iter_size, then the batch, shrink per GPU.
    final = train(solver, log, weights=None if snapshot else weights, cwd=cwd, gpus=list(gpus) or None,
                  batch=BATCH_SPLIT, snapshot=snapshot, progress=progress)
    remove_intermediate_snapshots(prefix, final)
    return final


def remove_intermediate_snapshots(prefix: Path, final: Path) -> list[Path]:
    """Deletes the snapshots of a finished run but the final caffemodel (they only served to resume; a VGG19
    fusion net's are gigabytes each); returns what was deleted."""
    removed = [p for p in prefix.parent.glob(f"{prefix.name}_iter_*") if p.suffix in (".caffemodel", ".solverstate")
               and p != final]
    for path in removed:
        path.unlink()
    return removed


def test_net(deploy: Path, weights: Path, data_root: Path, split: int, store_subset: str, storage: str,
             out: Path, meta: Mapping, protocol: Protocol, gpus: Sequence[int], identity: Mapping, workers: int = 2,
             progress: bool = True) -> ScoreSet:
    """The test protocol of one net on the ``store_subset`` stores of ``split``; writes the score file ``out``."""
    partial = out.with_name(out.name + ".partial.npz")
    resume_or_reset(out.with_name(out.name + "." + STARTED), identity, [partial])
    net = load_test_net(deploy, weights, eval_gpu(gpus))
    stores = open_frame_stores(data_root, split, store_subset, net_geometry(net, str(deploy)).modalities, storage)
    return evaluate_net(net, stores, out, dict(meta), protocol, workers=workers, progress=progress)


def late_fusion(test_scores: Mapping[str, Path], heldout_scores: Mapping[str, Path], out_dir: Path
                ) -> dict[str, Path]:
    """Writes ``<out_dir>/<name>.npz`` for every late fusion and ``weights.json``; returns ``{name: path}``.

    ``test_scores``: ``{net: score file}`` of the test subset; ``heldout_scores``: ``{net: score file}`` of the
    held-out training videos (subset ``val``), empty when nothing was held out (no weight search then).
    """
    tests = {name: load_scores(path) for name, path in test_scores.items()}
    fused: dict[str, ScoreSet] = {}
    for name, (streams, weights) in FUSIONS.items():
        fused[name] = fuse({k: tests[v] for k, v in streams.items()}, weights)
    searched = {}
    for kind in FINAL_KINDS:
        streams = {k: v.format(kind=kind) for k, v in FINAL_STREAMS.items()}
        fused[f"final_{kind}"] = paper_weighted_fusion(*(tests[streams[k]] for k in ("mfusion", "spatial", "temporal")))
        if heldout_scores:
            held = {k: load_scores(heldout_scores[v]) for k, v in streams.items()}
            result = search_weights(held, test_video_ids=tests["temporal"].video_ids.tolist())
            fused[f"searched_{kind}"] = fuse({k: tests[v] for k, v in streams.items()}, result.weights)
            searched[kind] = {**result.as_dict(), "candidates": result.as_dict()["candidates"][:10]}
    paths = {name: save_scores(Path(out_dir) / f"{name}.npz", score_set) for name, score_set in fused.items()}
    write_atomic(Path(out_dir) / "weights.json", json.dumps(
        {"paper": {"mfusion": 2, "spatial": 3, "temporal": 4}, "searched": searched}, indent=1))
    return paths


def fusion_score_names(heldout: bool) -> list[str]:
    """The score sets :func:`late_fusion` writes."""
    searched = [f"searched_{k}" for k in FINAL_KINDS] if heldout else []
    return [*FUSIONS, *(f"final_{k}" for k in FINAL_KINDS), *searched]

