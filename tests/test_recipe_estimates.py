"""Time estimates (mfuse.recipe.estimates) from measured results only; "unmeasured" otherwise."""
import json

import pytest

from mfuse.recipe.estimates import DEFAULT_RESULTS, Estimate, Speeds, human_duration, total


def write_results(folder):
    folder.mkdir()
    (folder / "gpu.json").write_text(json.dumps({"records": [
        {"bench": "device", "name": "Test GPU"},
        {"bench": "net", "mode": "gpu", "name": "spatial", "model": "nets/vgg19_spatial_dummy_train.prototxt",
         "batch": 32, "total_ms": 40.0, "fwd_ms": 20.0, "framework": "caffe"},
        {"bench": "net", "mode": "gpu", "name": "mfuse_conv5", "model": "nets/vgg19_mfuse_conv5_dummy_train.prototxt",
         "batch": 32, "total_ms": 100.0, "fwd_ms": 50.0, "framework": "caffe"},
        {"bench": "net", "mode": "gpu", "name": "spatial", "model": "nets/vgg19_spatial.prototxt", "batch": 32,
         "total_ms": 1.0, "fwd_ms": 1.0, "framework": "torch"}]}))
    (folder / "eval.json").write_text(json.dumps({"bench": "eval_speed", "device": "gpu0", "net": "x/vgg19_spatial.p",
                                                  "seconds_per_video": {"pipeline": 0.5}}))
    (folder / "prep_speed.json").write_text(json.dumps({"frame_extraction_frames_per_s": 100.0,
                                                        "flow": [{"algorithm": "tvl1", "pipeline_pairs_per_s": 1.0}]}))
    (folder / "broken.json").write_text("{")
    (folder / "stages.json").write_text(json.dumps({"records": [
        {"bench": "recipe_stage", "mode": "cpu", "backbone": "tiny", "device": "2 cores", "kind": "train",
         "name": "temporal", "s_per_iteration": 0.5, "samples_per_iteration": 32},
        {"bench": "recipe_stage", "mode": "cpu", "backbone": "tiny", "device": "2 cores", "kind": "data",
         "name": "data", "algorithm": "tvl1", "frame_size": [64, 48], "core_s_per_frame": 0.4},
        {"bench": "recipe_stage", "mode": "cpu", "backbone": "tiny", "device": "2 cores", "kind": "test",
         "name": "mfuse_fc7", "s_per_video": 2.0, "frames": 25, "crops": "ten"}]}))


def test_estimates_scale_the_measurements(tmp_path):
    write_results(tmp_path / "r")
    speeds = Speeds.load(tmp_path / "r")
    spatial = speeds.training("gpu", "vgg19", "spatial", max_iter=1000, batch=256)
    assert spatial.seconds == pytest.approx(40e-3 * 8 * 1000) and "Test GPU" in spatial.basis
    fc7 = speeds.training("gpu", "vgg19", "mfuse_fc7", max_iter=10, batch=32)
    assert fc7.seconds == pytest.approx(1.0) and "mfuse_conv5's speed" in fc7.basis
    assert speeds.training("cpu", "vgg19", "spatial", 10, 32).seconds is None
    assert speeds.testing("gpu", "vgg19", "spatial", videos=100, frames=25, crops=10).seconds == pytest.approx(50)
    assert speeds.testing("gpu", "vgg19", "mfuse_conv5", 100, 25, 10).seconds == pytest.approx(125)
    assert speeds.testing("gpu", "vgg19", "spatial", 100, 5, 1).seconds == pytest.approx(1)
    prep = speeds.preparation(1000, "tvl1", workers=2, size=(341 // 2, 256))
    assert prep.seconds == pytest.approx((10 + 1000) / 2 * (170 * 256) / (341 * 256))
    assert speeds.preparation(1000, "dis", 2).text() == "unmeasured"
    assert speeds.preparation(100, "tvl1", workers=2, size=(64, 48)).seconds == pytest.approx(20)
    recipe = speeds.training("cpu", "tiny", "temporal", max_iter=100, batch=64)
    assert recipe.seconds == pytest.approx(100) and "recipe run on 2 cores" in recipe.basis
    assert speeds.testing("cpu", "tiny", "mfuse_fc7", videos=10, frames=5, crops=1).seconds == pytest.approx(0.4)


def test_totals_and_durations():
    assert total([Estimate(60, "a"), Estimate(None, "b"), Estimate(30, "c")]).seconds == 90
    assert "1 unmeasured" in total([Estimate(None, "b")]).basis and total([]).seconds is None
    assert [human_duration(s) for s in (5, 600, 36000)] == ["5 s", "10 min", "10.0 h"]


def test_the_repository_results_are_read():
    speeds = Speeds.load(DEFAULT_RESULTS)
    assert ("gpu", "vgg19", "temporal") in speeds.train and ("cpu", "tiny", "spatial") in speeds.test
    assert "tvl1" in speeds.flow_pairs_per_s
