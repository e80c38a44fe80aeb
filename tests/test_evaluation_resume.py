"""A test run's partial scores: identity (net, weights, protocol), refusal of another run's partial file, resume."""
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from mfuse.evaluation.aggregate import ScoreCollector
from mfuse.evaluation.resume import (IDENTITY_KEY, PartialMismatchError, PartialScores, file_digest, params_digest,
                                     partial_path, run_identity)
from mfuse.evaluation.testing import Protocol

TINY = Path(__file__).resolve().parents[1] / "prototxt" / "tiny"
META = {"split": 1, "subset": "test", "net": "n.prototxt", "weights": "w.caffemodel"}


@pytest.fixture
def net(load_net):
    net = load_net(str(TINY / "spatial_deploy.prototxt"))
    rng = np.random.default_rng(0)
    for blobs in net.params.values():
        for blob in blobs:
            blob.data[...] = rng.normal(0, 0.1, blob.data.shape)
    return net


def collector_of(videos):
    collector = ScoreCollector(2)
    for name in videos:
        collector.add(name, 1, np.full((2, 1, 2), 0.5))
    return collector


def test_partial_path_and_file_digest(tmp_path):
    assert partial_path(tmp_path / "s.npz") == tmp_path / "s.npz.partial.npz"
    (tmp_path / "f").write_bytes(b"abc")
    assert file_digest(tmp_path / "f") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_params_digest_follows_every_weight(net):
    before = params_digest(net)
    assert params_digest(net) == before and len(before) == 64
    net.params["fc8_action"][1].data[0] += 1e-6
    assert params_digest(net) != before


def test_identity_is_plain_json_without_max_batch(net):
    identity = run_identity(net, META, Protocol(frames=3, crop_size=48, max_batch=7), "prob", False)
    assert json.loads(json.dumps(identity)) == identity
    assert identity["protocol"]["frames"] == 3 and "max_batch" not in identity["protocol"]
    assert identity["protocol"]["means"]["rgb"] == [104.0, 117.0, 123.0]
    assert identity == run_identity(net, META, Protocol(frames=3, crop_size=48, max_batch=250), "prob", False)


def test_a_partial_file_of_the_same_run_resumes_and_says_so(tmp_path, net, caplog):
    identity = run_identity(net, META, Protocol(crop_size=48), "prob", False)
    PartialScores(tmp_path / "s.npz", identity).save(collector_of(["a", "b"]))
    with caplog.at_level(logging.WARNING, logger="mfuse.evaluation.resume"):
        collector = PartialScores(tmp_path / "s.npz", identity).load(2)
    assert collector.video_ids == ["a", "b"]
    assert f"resuming from {tmp_path / 's.npz.partial.npz'}: 2 video(s) already scored" in caplog.text
    assert PartialScores(tmp_path / "other.npz", identity).load(2).video_ids == []


def test_a_partial_file_of_another_run_is_refused_naming_the_differences(tmp_path, net):
    identity = run_identity(net, META, Protocol(crop_size=48), "prob", False)
    PartialScores(tmp_path / "s.npz", identity).save(collector_of(["a"]))
    other = run_identity(net, {**META, "weights": "v.caffemodel"}, Protocol(frames=5, crop_size=48), "prob", False)
    with pytest.raises(PartialMismatchError) as error:
        PartialScores(tmp_path / "s.npz", other).load(2)
    message = str(error.value)
    assert "meta.weights: then 'w.caffemodel', now 'v.caffemodel'" in message
    assert "protocol.frames: then 25, now 5" in message and "--restart" in message
    net.params["conv1"][0].data[...] += 1
    with pytest.raises(PartialMismatchError, match="params_sha256: then '"):
        PartialScores(tmp_path / "s.npz", run_identity(net, META, Protocol(crop_size=48), "prob", False)).load(2)
    assert partial_path(tmp_path / "s.npz").exists()  # refused, not destroyed


def test_a_partial_file_without_identity_is_refused(tmp_path, net):
    np.savez(partial_path(tmp_path / "s.npz"), **collector_of(["a"]).snapshot())
    with pytest.raises(PartialMismatchError, match="does not say which net, weights and protocol made it"):
        PartialScores(tmp_path / "s.npz", run_identity(net, META, Protocol(), "prob", False)).load(2)
    with np.load(partial_path(tmp_path / "s.npz")) as data:
        assert IDENTITY_KEY not in data.files
