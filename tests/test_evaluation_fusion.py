"""Late fusion on hand-made scores, a weight search that can never use test videos, and the fuse_scores CLI."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mfuse.evaluation.fusion import (PAPER_FINAL_WEIGHTS, TestSubsetError, average_fusion, fuse, l2_normalize,
                                     paper_weighted_fusion, search_weights, weight_grid)
from mfuse.evaluation.scores import ScoreSet, load_scores, save_scores

IDS = ["a", "b", "c"]
LABELS = [0, 1, 1]


def scores(rows, subset="val", ids=IDS, labels=LABELS, net="n"):
    return ScoreSet(ids, labels, np.array(rows, dtype=np.float64), {"split": 1, "subset": subset, "net": net})


def test_l2_normalize_by_hand():
    np.testing.assert_allclose(l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]])), [[0.6, 0.8], [0.0, 0.0]])


def test_average_of_l2_normalised_scores_by_hand():
    spatial = scores([[0.6, 0.4], [0.5, 0.5], [0.8, 0.2]])
    temporal = scores([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])
    fused = average_fusion({"spatial": spatial, "temporal": temporal})
    expected = (l2_normalize(spatial.scores) + l2_normalize(temporal.scores)) / 2
    np.testing.assert_allclose(fused.scores, expected, rtol=1e-6)
    # c: spatial (0.8, 0.2) / 0.8246 = (0.970, 0.243); temporal (0.4, 0.6) / 0.7211 = (0.555, 0.832)
    np.testing.assert_allclose(fused.scores[2], [(0.970143 + 0.554700) / 2, (0.242536 + 0.832050) / 2], atol=1e-5)
    assert fused.meta["l2_normalized"] and fused.meta["fusion_weights"] == {"spatial": 1.0, "temporal": 1.0}
    assert fused.subset == "val" and fused.split == 1


def test_weighted_fusion_2_3_4_by_hand_and_alignment():
    m = scores([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    s = scores([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    t = scores([[0.6, 0.8], [0.8, 0.6], [0.0, 1.0]])  # unit norm already
    shuffled = t.select(["c", "a", "b"])  # order does not matter, ids do
    fused = paper_weighted_fusion(m, s, shuffled)
    np.testing.assert_allclose(fused.scores[0], [(2 * 1 + 0 + 4 * 0.6) / 9, (0 + 3 + 4 * 0.8) / 9], rtol=1e-6)
    np.testing.assert_allclose(fused.scores[2], [(2 + 3 + 0) / 9, 4 / 9], rtol=1e-6)
    assert fused.video_ids.tolist() == IDS
    assert fused.meta["fusion_weights"] == PAPER_FINAL_WEIGHTS
    raw = fuse({"m": m, "t": t}, {"m": 1, "t": 3}, normalize=False)
    np.testing.assert_allclose(raw.scores[1], [(0 + 3 * 0.8) / 4, (1 + 3 * 0.6) / 4], rtol=1e-6)


def test_fusion_refuses_mismatched_streams():
    a = scores([[1, 0], [0, 1], [1, 0]])
    with pytest.raises(ValueError, match="different videos"):
        fuse({"a": a, "b": scores([[1, 0], [0, 1], [1, 0]], ids=["a", "b", "d"])})
    with pytest.raises(ValueError, match="label of 'c'"):
        fuse({"a": a, "b": scores([[1, 0], [0, 1], [1, 0]], labels=[0, 1, 0])})
    with pytest.raises(ValueError, match="split 1 test"):
        fuse({"a": a, "b": scores([[1, 0], [0, 1], [1, 0]], subset="test")})
    with pytest.raises(ValueError, match="weights are for"):
        fuse({"a": a}, {"b": 1.0})
    with pytest.raises(ValueError, match="not all 0"):
        fuse({"a": a}, {"a": 0.0})
    with pytest.raises(ValueError, match="finite"):
        fuse({"a": a, "b": a}, {"a": float("nan"), "b": 1.0})
    with pytest.raises(TypeError, match="ScoreSet"):
        fuse({"a": a, "b": a.scores})


def test_weight_grid_removes_duplicates():
    grid = weight_grid(["m", "s"], range(0, 3))
    assert grid == [{"m": 0.0, "s": 1.0}, {"m": 1.0, "s": 0.0}, {"m": 1.0, "s": 1.0}, {"m": 1.0, "s": 2.0},
                    {"m": 2.0, "s": 1.0}]


def _three_streams(subset, ids=None):
    ids = ids or [f"v{i}" for i in range(6)]
    labels = [0, 0, 0, 1, 1, 1]
    # stream s alone is right on 0-2, t alone on 3-5; s gets 3:1 over t wrong, so weight t must be higher
    s = [[0.9, 0.1]] * 3 + [[0.55, 0.45]] * 3
    t = [[0.45, 0.55]] * 3 + [[0.1, 0.9]] * 3
    t[0] = [0.4, 0.6]
    return {"spatial": scores(s, subset, ids, labels, "s"), "temporal": scores(t, subset, ids, labels, "t")}


def test_search_finds_weights_that_fix_both_streams():
    result = search_weights(_three_streams("val"), test_video_ids=["x1", "x2"], values=range(0, 4))
    assert result.accuracy == 1.0
    fused = fuse(_three_streams("val"), result.weights)
    assert (fused.scores.argmax(1) == fused.labels).all()
    assert result.subset == "val" and result.num_videos == 6
    assert result.candidates[0][0] == result.weights
    assert len(result.candidates) == len(weight_grid(["spatial", "temporal"], range(0, 4)))
    assert result.as_dict()["weights"] == result.weights


def test_search_refuses_test_scores(tmp_path):
    streams = _three_streams("test")
    with pytest.raises(TestSubsetError, match="'test' subset"):
        search_weights(streams, test_video_ids=[])
    # through a file, whatever the file is called
    path = save_scores(tmp_path / "heldout_val_scores.npz", streams["temporal"])
    with pytest.raises(TestSubsetError):
        search_weights({"spatial": _three_streams("val")["spatial"], "temporal": load_scores(path)},
                       test_video_ids=[])


def test_search_refuses_test_videos_even_when_meta_says_val():
    streams = _three_streams("val", ids=["v0", "v1", "v2", "v3", "v4", "UCF/v_test_g01_c01"])
    with pytest.raises(TestSubsetError, match="UCF/v_test_g01_c01"):
        search_weights(streams, test_video_ids={"UCF/v_test_g01_c01", "other"})


def test_search_needs_the_test_list_and_score_sets():
    streams = _three_streams("val")
    with pytest.raises(TypeError):
        search_weights(streams)  # test_video_ids is required
    with pytest.raises(TypeError, match="collection"):
        search_weights(streams, test_video_ids="v0")
    with pytest.raises(TypeError, match="ScoreSet"):
        search_weights({"spatial": streams["spatial"].scores}, test_video_ids=[])


FUSE_SCORES = Path(__file__).resolve().parents[1] / "tools" / "fuse_scores.py"


def run_fuse_scores(*args):
    return subprocess.run([sys.executable, str(FUSE_SCORES), *map(str, args)], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def score_files(tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    save_scores(a, scores([[0.6, 0.4], [0.5, 0.5], [0.8, 0.2]], subset="test"))
    save_scores(b, scores([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]], subset="test"))
    return a, b


def test_fuse_scores_cli_fuses_and_writes(score_files, tmp_path):
    a, b = score_files
    result = run_fuse_scores(f"spatial={a}", f"temporal={b}", "--weights", "spatial=1", "temporal=2",
                             "--out", tmp_path / "f.npz")
    assert result.returncode == 0, result.stderr
    assert load_scores(tmp_path / "f.npz").meta["fusion_weights"] == {"spatial": 1.0, "temporal": 2.0}


@pytest.mark.parametrize("args, message", [
    (["spatial={a}", "spatial={b}"], "stream 'spatial' is given twice"),
    (["spatial={a}", "temporal={b}", "--weights", "spatial=1", "spatial=2", "temporal=1"],
     "weight 'spatial' is given twice"),
    (["spatial={a}", "temporal={b}", "--weights", "spatial=nan", "temporal=1"],
     "weight of 'spatial' must be a finite number >= 0, got 'nan'"),
    (["spatial={a}", "temporal={b}", "--weights", "spatial=-1", "temporal=1"], "must be a finite number >= 0"),
    (["spatial={a}", "temporal={b}", "--weights", "spatial=x", "temporal=1"], "must be a number, got 'x'"),
])
def test_fuse_scores_cli_refuses_bad_names_and_weights(score_files, tmp_path, args, message):
    a, b = score_files
    result = run_fuse_scores(*[arg.format(a=a, b=b) for arg in args], "--out", tmp_path / "f.npz")
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "f.npz").exists()


def test_fuse_scores_cli_names_a_bad_score_file(score_files, tmp_path):
    a, _ = score_files
    (tmp_path / "junk.npz").write_bytes(b"junk")
    result = run_fuse_scores(f"spatial={a}", f"temporal={tmp_path / 'junk.npz'}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {tmp_path / 'junk.npz'}: not a readable npz score file")
