"""The test runner: the protocol takes the net's input geometry, crops are frame-major, a run writes its score file;
``tools/test_net.py`` refuses a crop size the deploy net does not take."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mfuse.evaluation.scores import load_scores
from mfuse.evaluation.testing import (Protocol, evaluate_net, forward_crops, net_geometry, protocol_crops,
                                      protocol_for, score_videos, video_crops)
from mfuse.sampling import InputGeometry, sample_positions
from mfuse.stores.reader import open_frame_stores

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "prototxt" / "tiny"


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
    assert net_geometry(load_net(str(TINY / "temporal_deploy.prototxt"))) == InputGeometry(("flow",), 48, 10)
    assert net_geometry(load_net(str(TINY / "spatial_amp_deploy.prototxt"))) == InputGeometry(("rgb", "mag"), 48)


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
    np.testing.assert_array_equal(centre["rgb"][1], (later[4:44, 12:52] - [104, 117, 123]).transpose(2, 0, 1))


def test_evaluate_net_uses_the_nets_crop_size(tiny_data_root, load_net, tmp_path):
    net = load_net(str(TINY / "spatial_deploy.prototxt"))
    stores = open_frame_stores(tiny_data_root, 1, "test", ["rgb"])
    with pytest.raises(ValueError, match="crop size 40 disagrees with the net, whose inputs are 48x48"):
        evaluate_net(net, stores, tmp_path / "bad.npz", {"split": 1, "subset": "test"}, Protocol(crop_size=40))
    assert not (tmp_path / "bad.npz").exists()
    scores = evaluate_net(net, stores, tmp_path / "s.npz", {"split": 1, "subset": "test"},
                          Protocol(frames=2, crop_mode="center"), progress=False)
    assert load_scores(tmp_path / "s.npz").meta["protocol"]["crop_size"] == 48
    assert scores.frame_scores.shape[1:3] == (2, 1) and len(scores) == len(stores["rgb"].index.videos)


def test_test_net_cli_refuses_a_crop_size_the_deploy_net_does_not_take(tmp_path):
    deploy = TINY / "spatial_deploy.prototxt"
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "test_net.py"), "--deploy", str(deploy),
                             "--weights", str(tmp_path / "none.caffemodel"), "--data", str(tmp_path),
                             "--out", str(tmp_path / "s.npz"), "--crop-size", "224"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert result.stderr.strip() == \
        f"error: crop size 224 disagrees with {deploy}, whose inputs are 48x48"
    assert not (tmp_path / "s.npz").exists()


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
