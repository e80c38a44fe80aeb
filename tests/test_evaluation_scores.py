"""Score files: round trip, validation with clear errors, atomic writes."""

import json

import numpy as np
import pytest

from mfuse.evaluation.scores import ScoreFileError, ScoreSet, load_scores, save_scores

META = {"dataset": "ucf101", "split": 1, "subset": "test", "net": "spatial", "weights": "s.caffemodel"}


def make(num_videos=4, num_classes=3, frames=2, crops=10, seed=0, **meta):
    rng = np.random.default_rng(seed)
    frame_scores = rng.dirichlet(np.ones(num_classes), size=(num_videos, frames, crops)).astype(np.float16)
    return ScoreSet([f"C/v_{i}" for i in range(num_videos)], np.arange(num_videos) % num_classes,
                    frame_scores.astype(np.float64).mean(axis=(1, 2)), {**META, **meta}, frame_scores)


def test_round_trip(tmp_path):
    original = make()
    path = save_scores(tmp_path / "a" / "scores.npz", original)
    loaded = load_scores(path)
    assert loaded.video_ids.tolist() == original.video_ids.tolist()
    np.testing.assert_array_equal(loaded.labels, original.labels)
    np.testing.assert_array_equal(loaded.scores, original.scores)
    np.testing.assert_array_equal(loaded.frame_scores, original.frame_scores)
    assert loaded.frame_scores.dtype == np.float16
    assert loaded.meta == META and loaded.split == 1 and loaded.subset == "test"
    assert [p.name for p in tmp_path.rglob("*")] == ["a", "scores.npz"]  # no temporary left
    with np.load(path) as data:  # the on-disk contract
        assert set(data.files) == {"video_ids", "labels", "scores", "frame_scores", "meta"}
        assert json.loads(str(data["meta"]))["net"] == "spatial"


def test_without_frame_scores(tmp_path):
    s = make()
    fused = ScoreSet(s.video_ids, s.labels, s.scores, s.meta)
    assert load_scores(save_scores(tmp_path / "f.npz", fused)).frame_scores is None


@pytest.mark.parametrize("change, message", [
    (lambda a: {**a, "video_ids": ["x", "x", "y", "z"]}, "not unique"),
    (lambda a: {**a, "labels": np.array([0, 1, 2, 3])}, "labels must be in 0..2"),
    (lambda a: {**a, "labels": np.array([0.0, 1, 2, 0])}, "integers"),
    (lambda a: {**a, "scores": a["scores"][:3]}, "scores must be"),
    (lambda a: {**a, "scores": np.where(np.eye(4, 3) > 0, np.nan, a["scores"])}, "finite"),
    (lambda a: {**a, "scores": a["scores"] + 0.1}, "not the mean of frame_scores"),
    (lambda a: {**a, "frame_scores": a["frame_scores"][..., :2]}, "frame_scores must be"),
    (lambda a: {**a, "meta": {"split": 1}}, "lacks 'subset'"),
    (lambda a: {**a, "meta": {"split": 4, "subset": "test"}}, "split must be"),
    (lambda a: {**a, "meta": {"split": 1, "subset": "holdout"}}, "subset must be"),
])
def test_invalid_score_sets_are_refused(change, message):
    s = make()
    arrays = {"video_ids": s.video_ids, "labels": s.labels, "scores": s.scores, "meta": s.meta,
              "frame_scores": s.frame_scores}
    with pytest.raises(ScoreFileError, match=message):
        ScoreSet(**change(arrays))


def test_load_names_the_file_and_problem(tmp_path):
    s = make()
    path = tmp_path / "bad.npz"
    np.savez(path, video_ids=s.video_ids, labels=s.labels, scores=s.scores)
    with pytest.raises(ScoreFileError, match=r"bad\.npz.*missing arrays \['meta'\]"):
        load_scores(path)
    np.savez(path, video_ids=s.video_ids, labels=s.labels + 5, scores=s.scores, meta=np.array(json.dumps(META)))
    with pytest.raises(ScoreFileError, match=r"bad\.npz.*labels must be in"):
        load_scores(path)
    np.savez(path, video_ids=s.video_ids, labels=s.labels, scores=s.scores, meta=np.array("{not json"))
    with pytest.raises(ScoreFileError, match="meta is not JSON"):
        load_scores(path)
    (tmp_path / "garbage.npz").write_bytes(b"not a zip")
    with pytest.raises(ScoreFileError, match="garbage.npz"):
        load_scores(tmp_path / "garbage.npz")
    with pytest.raises(ValueError, match=".npz"):
        save_scores(tmp_path / "x.txt", s)


def test_select_reorders():
    s = make()
    picked = s.select(["C/v_2", "C/v_0"])
    np.testing.assert_array_equal(picked.scores, s.scores[[2, 0]])
    np.testing.assert_array_equal(picked.frame_scores, s.frame_scores[[2, 0]])
    with pytest.raises(KeyError, match="C/v_9"):
        s.select(["C/v_9"])
