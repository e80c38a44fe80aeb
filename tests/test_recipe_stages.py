"""The long stages' pieces (mfuse.recipe.stages): resume markers, the last complete snapshot, one GPU, and late
fusion with the weight search on held-out videos only."""
import json

import numpy as np
import pytest
from caffe.proto import caffe_pb2

from mfuse.evaluation import TestSubsetError, load_scores, save_scores
from mfuse.evaluation.scores import ScoreSet
from mfuse.recipe.stages import (RecipeError, fusion_score_names, late_fusion, latest_snapshot,
                                 remove_intermediate_snapshots, resume_or_reset, snapshot_complete, eval_gpu)


def test_resume_or_reset(tmp_path):
    marker, partial = tmp_path / "x.started.json", tmp_path / "partial"
    partial.mkdir()
    assert resume_or_reset(marker, {"a": 1}, [partial]) is False and not partial.exists()
    partial.mkdir()
    assert resume_or_reset(marker, {"a": 1}, [partial]) is True and partial.exists()
    assert resume_or_reset(marker, {"a": 2}, [partial, tmp_path / "absent.log"]) is False and not partial.exists()


def write_snapshot(prefix, iteration, complete=True):
    state = caffe_pb2.SolverState(iter=iteration, learned_net=f"{prefix}_iter_{iteration}.caffemodel")
    state.history.add().data.extend([1.0, 2.0])
    if complete:
        state.current_step = 0
    prefix.parent.mkdir(parents=True, exist_ok=True)
    (prefix.parent / f"{prefix.name}_iter_{iteration}.solverstate").write_bytes(state.SerializeToString())
    (prefix.parent / f"{prefix.name}_iter_{iteration}.caffemodel").write_bytes(b"model")


def test_latest_complete_snapshot(tmp_path):
    prefix = tmp_path / "runs" / "net" / "snap"
    assert latest_snapshot(prefix) is None
    write_snapshot(prefix, 4)
    write_snapshot(prefix, 12)
    write_snapshot(prefix, 8, complete=False)      # cut before its last field
    assert latest_snapshot(prefix).name == "snap_iter_12.solverstate"
    (prefix.parent / "snap_iter_12.caffemodel").unlink()
    assert latest_snapshot(prefix).name == "snap_iter_4.solverstate"
    cut = prefix.parent / "snap_iter_4.solverstate"
    assert snapshot_complete(cut, 4) and not snapshot_complete(cut, 5)
    cut.write_bytes(cut.read_bytes()[:-4])
    assert not snapshot_complete(cut, 4)
    final = prefix.parent / "snap_iter_12.caffemodel"
    final.write_bytes(b"final")
    removed = remove_intermediate_snapshots(prefix, final)
    assert sorted(p.name for p in prefix.parent.iterdir()) == ["snap_iter_12.caffemodel"] and len(removed) == 5


def test_the_test_runs_on_the_first_gpu_or_the_cpu():
    assert eval_gpu(()) is None and eval_gpu((3,)) == 3 and eval_gpu((2, 0)) == 2


LABELS = np.array([0, 1, 2, 0, 1, 2])


def scores(subset, ids, seed):
    rng = np.random.default_rng(seed)
    values = rng.uniform(0, 1, (len(ids), 3)).astype(np.float32)
    values[np.arange(len(ids)), LABELS[:len(ids)]] += seed / 4
    return ScoreSet(np.array(ids), LABELS[:len(ids)], values, {"split": 1, "subset": subset})


def write_scores(folder, subset, ids):
    names = ("spatial", "spatial_amp", "temporal", "mfuse_conv5", "mfuse_fc7")
    return {name: save_scores(folder / f"{name}.npz", scores(subset, ids, seed)) for seed, name in enumerate(names)}


def test_late_fusion_searches_weights_on_heldout_videos_only(tmp_path):
    tests = write_scores(tmp_path / "test", "test", [f"t{i}" for i in range(6)])
    held = write_scores(tmp_path / "held", "val", [f"h{i}" for i in range(6)])
    paths = late_fusion(tests, {k: v for k, v in held.items() if k != "spatial"}, tmp_path / "fusion")
    assert sorted(paths) == sorted(fusion_score_names(True))
    weights = json.loads((tmp_path / "fusion" / "weights.json").read_text())
    assert weights["paper"] == {"mfusion": 2, "spatial": 3, "temporal": 4}
    chosen = weights["searched"]["conv5"]["weights"]
    assert weights["searched"]["conv5"]["subset"] == "val" and weights["searched"]["conv5"]["num_videos"] == 6
    assert load_scores(paths["searched_conv5"]).meta["fusion_weights"] == chosen
    assert load_scores(paths["final_fc7"]).meta["fusion_weights"] == {"mfusion": 2.0, "spatial": 3.0, "temporal": 4.0}
    assert sorted(late_fusion(tests, {}, tmp_path / "plain")) == sorted(fusion_score_names(False))
    # Held-out scores that are test videos are refused.
    leaked = write_scores(tmp_path / "leak", "val", [f"t{i}" for i in range(6)])
    with pytest.raises(TestSubsetError):
        late_fusion(tests, leaked, tmp_path / "bad")


def test_training_spreads_over_every_gpu_keeping_the_schedules_batch(tmp_path, monkeypatch):
    import mfuse.recipe.stages as stages

    solver = tmp_path / "solver.prototxt"
    solver.write_text('net: "train_val.prototxt"\nmax_iter: 4\nsnapshot_prefix: "runs/s/snap"\n')
    calls = []

    def fake_train(solver_path, log, **kwargs):
        calls.append(kwargs)
        final = tmp_path / "runs/s/snap_iter_4.caffemodel"
        final.write_bytes(b"weights")
        return final

    monkeypatch.setattr(stages, "train", fake_train)
    for gpus, expected in (((0, 1), [0, 1]), ((), None)):
        stages.train_net(solver, tmp_path / "train.log", None, tmp_path, gpus, {"gpus": list(gpus)}, progress=False)
        assert calls[-1]["gpus"] == expected and calls[-1]["batch"] == stages.BATCH_SPLIT
