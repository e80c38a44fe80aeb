"""The test runner: the protocol takes the net's input geometry, crops are frame-major, a run writes its score file
and resumes only a run of the same weights; ``tools/test_net.py`` refuses a crop size the deploy net does not
take, weights that do not fit it and another run's partial file."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mfuse.evaluation.scores import load_scores
from mfuse.evaluation.testing import (Protocol, evaluate_net, forward_crops, load_test_net, net_geometry,
                                      protocol_crops, protocol_for, score_videos, video_crops)
from mfuse.nets.backbones import get_backbone
from mfuse.sampling import InputGeometry, sample_positions
from mfuse.stores.reader import open_frame_stores

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "prototxt" / "tiny"
TINY_CROP = get_backbone("tiny").crop_size


def test_protocol_takes_the_nets_crop_size_and_refuses_another():
    geometry = InputGeometry(("rgb", "flow"), 48, 10)
    assert Protocol().crop_size is None
    assert protocol_for(Protocol(frames=3), geometry).crop_size == 48
    assert protocol_for(Protocol(crop_size=48), geometry).crop_size == 48
    with pytest.raises(ValueError, match=r"^crop size 224 disagrees with d.prototxt, whose inputs are 48x48$"):
        protocol_for(Protocol(crop_size=224), geometry, "d.prototxt")
    with pytest.raises(ValueError, match="stack length 5 disagrees with the net, whose flow input holds 10"):
        protocol_for(Protocol(stack_length=5), geometry)
    assert protocol_for(Protocol(stack_length=5), InputGeometry(("rgb",), 48)).stack_length == 5


def test_net_geometry_reads_the_input_blobs(load_net):
    assert net_geometry(load_net(str(TINY / "temporal_deploy.prototxt"))) == \
        InputGeometry(("flow",), TINY_CROP, 10)
    assert net_geometry(load_net(str(TINY / "spatial_amp_deploy.prototxt"))) == \
        InputGeometry(("rgb", "mag"), TINY_CROP)


def test_video_crops_are_frame_major_and_pair_rgb_as_asked(tiny_data_root):
    stores = open_frame_stores(tiny_data_root, 1, "test", ["rgb", "flow", "mag"])
    video = stores["rgb"].index.videos[0]
    protocol = Protocol(frames=3, crop_mode="ten", crop_size=40)
    crops = video_crops(stores, video.video_id, video.num_frames, protocol)
    assert {m: a.shape for m, a in crops.items()} == {"rgb": (30, 3, 40, 40), "flow": (30, 20, 40, 40),
                                                      "mag": (30, 1, 40, 40)}
    t = int(sample_positions(video.num_frames, 3)[1])
    frame = stores["rgb"].get_image(video.video_id, t).astype(np.float32)
    np.testing.assert_array_equal(crops["rgb"][10], (frame[:40, :40] - [104, 117, 123]).transpose(2, 0, 1))
    centre = video_crops(stores, video.video_id, video.num_frames,
                         Protocol(frames=3, crop_mode="center", crop_size=40, rgb_at_stack_centre=True))
    later = stores["rgb"].get_image(video.video_id, min(t + 5, video.num_frames)).astype(np.float32)
    top, left = (later.shape[0] - 40) // 2, (later.shape[1] - 40) // 2
    np.testing.assert_array_equal(centre["rgb"][1], (later[top:top + 40, left:left + 40] - [104, 117, 123]).transpose(2, 0, 1))


def test_evaluate_net_uses_the_nets_crop_size(tiny_data_root, load_net, tmp_path):
    net = load_net(str(TINY / "spatial_deploy.prototxt"))
    stores = open_frame_stores(tiny_data_root, 1, "test", ["rgb"])
    with pytest.raises(ValueError, match=f"crop size 40 disagrees with the net, whose inputs are {TINY_CROP}x"):
        evaluate_net(net, stores, tmp_path / "bad.npz", {"split": 1, "subset": "test"}, Protocol(crop_size=40))
    assert not (tmp_path / "bad.npz").exists()
    scores = evaluate_net(net, stores, tmp_path / "s.npz", {"split": 1, "subset": "test"},
                          Protocol(frames=2, crop_mode="center"), progress=False)
    assert load_scores(tmp_path / "s.npz").meta["protocol"]["crop_size"] == TINY_CROP
    assert scores.frame_scores.shape[1:3] == (2, 1) and len(scores) == len(stores["rgb"].index.videos)


def test_test_net_cli_refuses_a_crop_size_the_deploy_net_does_not_take(tmp_path):
    deploy = TINY / "spatial_deploy.prototxt"
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "test_net.py"), "--deploy", str(deploy),
                             "--weights", str(tmp_path / "none.caffemodel"), "--data", str(tmp_path),
                             "--out", str(tmp_path / "s.npz"), "--crop-size", "224"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert result.stderr.strip() == \
        f"error: crop size 224 disagrees with {deploy}, whose inputs are {TINY_CROP}x{TINY_CROP}"
    assert not (tmp_path / "s.npz").exists()


def _random_weights(net, seed):
    rng = np.random.default_rng(seed)
    for blobs in net.params.values():
        for blob in blobs:
            blob.data[...] = rng.normal(0, 0.1, blob.data.shape)
    return net


def test_an_interrupted_run_resumes_only_with_the_same_weights(tiny_data_root, load_net, tmp_path, monkeypatch):
    import mfuse.evaluation.testing as testing

    net = _random_weights(load_net(str(TINY / "spatial_deploy.prototxt")), 1)
    stores = open_frame_stores(tiny_data_root, 1, "test", ["rgb"])
    meta, protocol = {"split": 1, "subset": "test"}, Protocol(frames=2, crop_mode="center")
    full = evaluate_net(net, stores, tmp_path / "full.npz", meta, protocol, progress=False)
    forward, calls = testing._forward_video, []

    def interrupted(*args):
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return forward(*args)

    monkeypatch.setattr(testing, "_forward_video", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate_net(net, stores, tmp_path / "s.npz", meta, protocol, checkpoint_every=1, progress=False)
    monkeypatch.setattr(testing, "_forward_video", forward)
    other = _random_weights(load_net(str(TINY / "spatial_deploy.prototxt")), 2)
    with pytest.raises(ValueError, match=r"s.npz.partial.npz holds scores of another run: params_sha256: then"):
        evaluate_net(other, stores, tmp_path / "s.npz", meta, protocol, progress=False)
    assert not (tmp_path / "s.npz").exists()
    resumed = evaluate_net(net, stores, tmp_path / "s.npz", meta, protocol, progress=False)
    assert not (tmp_path / "s.npz.partial.npz").exists()
    np.testing.assert_array_equal(resumed.video_ids, full.video_ids)
    np.testing.assert_allclose(resumed.scores, full.scores, atol=1e-3)  # resumed videos: float16 frame scores


def run_test_net(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "test_net.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def tiny_weights(load_net, tmp_path):
    """Weights for the tiny spatial deploy net, and a caffemodel of the tiny temporal and fusion nets."""
    paths = {}
    for name in ("spatial", "temporal", "mfuse_conv5"):
        paths[name] = tmp_path / f"{name}.caffemodel"
        _random_weights(load_net(str(TINY / f"{name}_deploy.prototxt")), 3).save(str(paths[name]))
    return paths


def test_test_net_takes_the_crop_size_from_the_deploy_net_and_refuses_another_runs_partial_file(
        tiny_data_root, tiny_weights, tmp_path):
    deploy, out = TINY / "spatial_deploy.prototxt", tmp_path / "s.npz"
    common = ["--deploy", deploy, "--data", tiny_data_root, "--out", out, "--frames", "2", "--crops", "center"]
    result = run_test_net(*common, "--weights", tiny_weights["spatial"])
    assert result.returncode == 0, result.stderr[-2000:]
    scores = load_scores(out)
    assert scores.meta["protocol"]["crop_size"] == TINY_CROP  # no --crop-size: the deploy net's, not 224
    assert scores.meta["weights_sha256"] == hashlib.sha256(tiny_weights["spatial"].read_bytes()).hexdigest()
    assert scores.meta["deploy_sha256"] == hashlib.sha256(deploy.read_bytes()).hexdigest()
    partial = tmp_path / "s.npz.partial.npz"
    np.savez(partial, video_ids=np.array([], dtype=str))  # progress of an unknown run (no identity)
    out.unlink()
    result = run_test_net(*common, "--weights", tiny_weights["spatial"])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith(f"error: {partial} does not say which net, weights and protocol")
    result = run_test_net(*common, "--weights", tiny_weights["spatial"], "--restart")
    assert result.returncode == 0 and out.exists() and not partial.exists()


@pytest.mark.parametrize("weights, message", [
    ("empty", "{path} holds no layer with weights"),
    ("text", "{path} is not a caffemodel"),
    ("mfuse_conv5", "{path} does not fit {deploy}: 8 of the net's 8 layers with parameters are missing from it: "
                    "conv1, conv2, conv3, conv4, conv5, fc6, fc7, fc8_action (it holds: rgb_conv1,"),
    ("temporal", "{path} does not fit {deploy}: shapes differ: conv1: the net has 16x3x5x5, 16, the weights "
                 "16x20x5x5, 16"),
])
def test_test_net_refuses_weights_that_do_not_fit_the_deploy_net(tiny_weights, tmp_path, weights, message):
    deploy = TINY / "spatial_deploy.prototxt"
    path = tiny_weights.get(weights, tmp_path / f"{weights}.caffemodel")
    if weights == "empty":
        path.write_bytes(b"")
    elif weights == "text":
        path.write_text(deploy.read_text())
    result = run_test_net("--deploy", deploy, "--weights", path, "--data", tmp_path, "--out", tmp_path / "s.npz")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error: " + message.format(path=path, deploy=deploy)), result.stderr
    assert not (tmp_path / "s.npz").exists()


def test_test_net_names_a_missing_layer(load_net, tiny_weights, tmp_path):
    from caffe.proto import caffe_pb2

    model = caffe_pb2.NetParameter.FromString(tiny_weights["spatial"].read_bytes())
    kept = [layer for layer in model.layer if layer.name != "fc7"]
    del model.layer[:]
    model.layer.extend(kept)
    path = tmp_path / "no_fc7.caffemodel"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ValueError, match=r"1 of the net's 8 layers with parameters are missing from it: fc7 \("):
        load_test_net(TINY / "spatial_deploy.prototxt", path)


@pytest.mark.parametrize("option", ["--max-batch", "--frames", "--workers"])
def test_test_net_refuses_counts_below_one(tmp_path, option):
    result = run_test_net("--deploy", "d", "--weights", "w", "--data", tmp_path, "--out", tmp_path / "s.npz",
                          option, "0")
    assert result.returncode == 2 and f"argument {option}: must be at least 1, got 0" in result.stderr
@pytest.mark.parametrize("workers, max_batch", [(0, 250), (0, 7), (2, 250), (2, 1)])
def test_batched_scoring_equals_one_forward_per_video(tiny_data_root, load_net, workers, max_batch):
    """Crops made by workers and converted into the input blobs in chunks (7 straddles the frames' 10 crops)
    score exactly as the float crops of video_crops run in one forward."""
    net = load_net(str(TINY / "temporal_deploy.prototxt"), fast=False)
    stores = open_frame_stores(tiny_data_root, 1, "test", ["flow"])
    videos = stores["flow"].index.videos[:3]
    protocol = protocol_for(Protocol(frames=3, max_batch=max_batch), net_geometry(net))
    output = "fc8_action"                                   # the logits: they differ clearly between crops
    got = list(score_videos(net, protocol_crops(stores, videos, protocol), protocol, output, workers))
    for video, scores in zip(videos, got):
        crops = video_crops(stores, video.video_id, video.num_frames + 1, protocol)
        expected = forward_crops(net, crops, output, 250)
        assert scores.shape == (30, expected.shape[1])
        np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    assert len(got) == 3


def test_a_gpu_test_asks_for_a_larger_cudnn_workspace_unless_set(monkeypatch):
    from mfuse.evaluation import testing
    from mfuse.training import devices

    monkeypatch.delenv("MFUSE_CUDNN_WORKSPACE_MB", raising=False)
    monkeypatch.setattr(devices, "cuda_device_memory_mib", lambda gpu: {0: 81559, 1: 16000}[gpu])
    testing.use_test_workspace(1)
    assert os.environ["MFUSE_CUDNN_WORKSPACE_MB"] == "4000"     # a quarter of a 16 GB card
    monkeypatch.delenv("MFUSE_CUDNN_WORKSPACE_MB")
    testing.use_test_workspace(0)
    assert os.environ["MFUSE_CUDNN_WORKSPACE_MB"] == str(testing.TEST_WORKSPACE_MIB)
    monkeypatch.setenv("MFUSE_CUDNN_WORKSPACE_MB", "512")
    testing.use_test_workspace(0)
    assert os.environ["MFUSE_CUDNN_WORKSPACE_MB"] == "512"
