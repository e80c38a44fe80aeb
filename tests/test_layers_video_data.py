"""The video data layer on real (tiny) LMDBs made by the data preparation from synthetic videos."""
import json
import subprocess
import sys
import textwrap
import threading
from collections import Counter

import caffe
import numpy as np
import pytest
from caffe import layers as L

from mfuse.layers.params import parse_param_str
from mfuse.layers.video_data import SCHEMA, loader_from_params


@pytest.fixture
def data_root(tiny_data_root):
    return tiny_data_root


def params(data_root, **overrides):
    given = {"source": str(data_root), "modalities": ["rgb", "flow", "mag"], "batch_size": 4,
             "crop_size": 40, "new_length": 10, **overrides}
    return parse_param_str(json.dumps(given), SCHEMA, "test")


def test_batches_have_the_declared_shapes_and_value_ranges(data_root):
    batch = loader_from_params(params(data_root)).next_batch()
    assert batch["rgb"].shape == (4, 3, 40, 40)
    assert batch["flow"].shape == (4, 20, 40, 40)
    assert batch["mag"].shape == (4, 1, 40, 40)
    assert batch["label"].shape == (4,)
    assert batch["mag"].min() >= 0 and batch["mag"].max() <= 255  # raw magnitude, no mean
    assert -128 <= batch["flow"].min() and batch["flow"].max() <= 127  # minus 128
    assert batch["rgb"].min() < 0  # BGR mean subtracted


def test_an_epoch_sees_every_video_once(data_root):
    loader = loader_from_params(params(data_root, batch_size=1, modalities=["rgb"]))
    labels = [int(loader.next_batch()["label"][0]) for _ in range(len(loader.videos) - 1)]
    assert loader.epoch == 0
    labels.append(int(loader.next_batch()["label"][0]))
    assert loader.epoch == 1
    assert Counter(labels) == Counter(label for _, label, _ in loader.videos)


def test_same_seed_same_batches_other_seed_other_batches(data_root):
    first = [loader_from_params(params(data_root, seed=3)).next_batch() for _ in range(2)]
    again = loader_from_params(params(data_root, seed=3)).next_batch()
    other = loader_from_params(params(data_root, seed=4)).next_batch()
    np.testing.assert_array_equal(first[0]["flow"], again["flow"])
    assert not np.array_equal(first[0]["flow"], other["flow"])


def video_ids_of_one_epoch(loader):
    ids = []
    while loader.epoch == 0:
        ids.append(loader.video_of(loader.sample_index)[0])
        loader.next_batch()
    return ids


def test_ranks_split_each_epoch(data_root):
    seen = [video_ids_of_one_epoch(loader_from_params(params(data_root, batch_size=1, modalities=["rgb"],
                                                             rank=rank, num_ranks=2))) for rank in range(2)]
    assert set(seen[0]).isdisjoint(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(v[0] for v in loader_from_params(params(data_root)).videos)


def test_a_loader_started_at_batch_b_continues_an_uninterrupted_one(data_root):
    whole = loader_from_params(params(data_root, batch_size=3, seed=7))
    batches = [whole.next_batch() for _ in range(4)]
    resumed = loader_from_params(params(data_root, batch_size=3, seed=7), start_batch=2)
    for expected in batches[2:]:
        got = resumed.next_batch()
        for key in ("rgb", "flow", "mag", "label"):
            np.testing.assert_array_equal(got[key], expected[key])


def test_python_layer_feeds_a_net(data_root, tmp_path):
    param_str = json.dumps({"source": str(data_root), "modalities": ["rgb", "mag"], "batch_size": 3,
                            "crop_size": 40, "shuffle": False, "mirror": False})
    n = caffe.NetSpec()
    n.data_rgb, n.data_mag, n.label = L.Python(module="mfuse.layers.video_data", layer="VideoDataLayer",
                                               param_str=param_str, ntop=3)
    n.fc = L.InnerProduct(n.data_rgb, num_output=8)
    n.loss = L.SoftmaxWithLoss(n.fc, n.label)
    path = tmp_path / "net.prototxt"
    path.write_text(str(n.to_proto()))
    net = caffe.Net(str(path), caffe.TRAIN)
    first = net.forward()
    rgb_first = net.blobs["data_rgb"].data.copy()
    assert net.blobs["data_rgb"].data.shape == (3, 3, 40, 40)
    assert net.blobs["data_mag"].data.shape == (3, 1, 40, 40)
    assert np.isfinite(first["loss"])
    # Deterministic mode: sorted videos, middle frame, centre crop.
    loader = loader_from_params(params(data_root, modalities=["rgb", "mag"], batch_size=3, shuffle=False,
                                       mirror=False))
    np.testing.assert_array_equal(rgb_first, loader.next_batch()["rgb"])


@pytest.mark.parametrize("given, message", [
    ({"modalities": ["rgb", "depth"]}, "modalities"),
    ({"modalities": []}, "modalities"),
    ({"modalities": ["rgb"], "split": 4}, r"split is one of \(1, 2, 3\)"),
    ({"modalities": ["rgb"], "crop": 3}, "unknown param_str key"),
])
def test_bad_param_str_is_named(data_root, given, message):
    with pytest.raises(ValueError, match=message):
        parse_param_str(json.dumps({"source": str(data_root), **given}), SCHEMA, "data")


def test_missing_source_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        loader_from_params(params(tmp_path / "nowhere"))


def test_crop_larger_than_frames_is_refused(data_root):
    loader = loader_from_params(params(data_root, crop_size=80))  # the frames are 96 x 72
    with pytest.raises(ValueError, match="does not fit"):
        loader.next_batch()


def write_data_net(path, data_root, **overrides):
    param_str = json.dumps({"source": str(data_root), "modalities": ["rgb", "flow"], "batch_size": 8,
                            "crop_size": 40, **overrides})
    n = caffe.NetSpec()
    n.data_rgb, n.data_flow, n.label = L.Python(module="mfuse.layers.video_data", layer="VideoDataLayer",
                                                param_str=param_str, ntop=3)
    n.fc = L.InnerProduct(n.data_rgb, num_output=8)
    n.loss = L.SoftmaxWithLoss(n.fc, n.label)
    path.write_text(str(n.to_proto()))
    return path


@pytest.mark.parametrize("workers", [None, 0, 2])
def test_the_layer_leaves_no_thread_running_behind_the_net(data_root, tmp_path, workers):
    """Issue 20 item 2: a daemon thread still decoding at interpreter shutdown aborted the process (rc 134,
    'terminate called without an active exception'). The layer runs no thread of its own between passes."""
    before = set(threading.enumerate())
    given = {} if workers is None else {"workers": workers}
    net = caffe.Net(str(write_data_net(tmp_path / "net.prototxt", data_root, prefetch=16, **given)), caffe.TRAIN)
    net.forward()
    assert [t.name for t in set(threading.enumerate()) - before if t.daemon] == []
    net.layers[0].loader.close()


def test_a_pycaffe_script_with_the_layer_exits_cleanly(data_root, tmp_path):
    """Issue 20 item 2, end to end: the script exits with status 0, its workers gone, three times out of three."""
    net = write_data_net(tmp_path / "net.prototxt", data_root, prefetch=64, batch_size=16)
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import caffe
        net = caffe.Net({str(net)!r}, caffe.TRAIN)
        net.forward()
        print("forward done")
    """))
    for _ in range(3):
        result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
        assert (result.returncode, "terminate called" in result.stderr) == (0, False), result.stderr[-2000:]
        assert "forward done" in result.stdout


def test_batches_are_the_same_whatever_the_workers_and_resume_exactly(data_root):
    def batches(workers, start, count):
        loader = loader_from_params(params(data_root, batch_size=3, seed=9, workers=workers), start_batch=start)
        try:
            return [{k: v.copy() for k, v in loader.next_batch().items()} for _ in range(count)]
        finally:
            loader.close()
    inline, parallel, resumed = batches(0, 0, 5), batches(2, 0, 5), batches(3, 2, 3)
    for expected, got in zip(inline + inline[2:], parallel + resumed):
        for key in ("rgb", "flow", "mag", "label"):
            np.testing.assert_array_equal(got[key], expected[key])


def test_a_worker_count_below_minus_one_is_refused(data_root):
    with pytest.raises(ValueError, match="workers"):
        params(data_root, workers=-2)


@pytest.fixture
def solver_rank_1_of_2():
    """Caffe's solver count and rank as in rank 1 of a two-process multi-GPU run (mfuse.training.worker)."""
    caffe.set_solver_count(2)
    caffe.set_solver_rank(1)
    caffe.set_multiprocess(True)
    try:
        yield
    finally:
        caffe.set_solver_count(1)
        caffe.set_solver_rank(0)
        caffe.set_multiprocess(False)


def first_batch(data_root, **overrides):
    loader = loader_from_params(params(data_root, modalities=["rgb", "flow"], batch_size=3, shuffle=False,
                                       mirror=False, workers=0, **overrides))
    try:
        return loader.next_batch()
    finally:
        loader.close()


def test_a_train_layer_reads_the_share_of_its_solver_rank(data_root, tmp_path, solver_rank_1_of_2):
    given = dict(batch_size=3, shuffle=False, mirror=False, workers=0)
    net = caffe.Net(str(write_data_net(tmp_path / "net.prototxt", data_root, **given)), caffe.TRAIN)
    net.forward()
    net.layers[0].loader.close()
    share, everything = first_batch(data_root, rank=1, num_ranks=2), first_batch(data_root)
    np.testing.assert_array_equal(net.blobs["data_rgb"].data, share["rgb"])
    assert not np.array_equal(share["rgb"], everything["rgb"])
    # TEST nets run on rank 0 alone and read everything.
    test_net = caffe.Net(str(write_data_net(tmp_path / "net.prototxt", data_root, **given)), caffe.TEST)
    test_net.forward()
    test_net.layers[0].loader.close()
    np.testing.assert_array_equal(test_net.blobs["data_rgb"].data, everything["rgb"])


def test_a_param_str_rank_count_that_disagrees_with_the_solvers_is_refused(data_root, tmp_path, solver_rank_1_of_2):
    with pytest.raises(Exception, match="num_ranks 3 disagrees with the 2 solvers"):
        caffe.Net(str(write_data_net(tmp_path / "net.prototxt", data_root, num_ranks=3, workers=0)), caffe.TRAIN)
