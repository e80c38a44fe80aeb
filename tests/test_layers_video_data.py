"""The video data layer on real (tiny) LMDBs made by the data preparation from synthetic videos."""
import json
from collections import Counter

import numpy as np
import pytest

import caffe
from caffe import layers as L

from mfuse.layers.params import parse_param_str
from mfuse.layers.video_data import SCHEMA, loader_from_params
from mfuse.prep.frames import ExtractSettings
from mfuse.prep.pipeline import prepare_dataset
from mfuse.synthetic.generator import SyntheticConfig, generate
from mfuse.synthetic.layout import UCF101_LIST_DIR


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("video_data")
    generate(root / "dataset", SyntheticConfig(num_groups=4, clips_per_group=1, num_frames=13), progress=False)
    prepare_dataset("ucf101", root / "dataset", root / "dataset" / UCF101_LIST_DIR, root / "data",
                    ExtractSettings(short_side=None, flow_algorithm="dis"), splits=(1,), workers=2,
                    progress=False)
    return root / "data"


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
    labels = [int(loader.next_batch()["label"][0]) for _ in range(len(loader.videos))]
    assert Counter(labels) == Counter(label for _, label, _ in loader.videos)
    assert loader.epoch == 0
    loader.next_batch()
    assert loader.epoch == 1


def test_same_seed_same_batches_other_seed_other_batches(data_root):
    first = [loader_from_params(params(data_root, seed=3)).next_batch() for _ in range(2)]
    again = loader_from_params(params(data_root, seed=3)).next_batch()
    other = loader_from_params(params(data_root, seed=4)).next_batch()
    np.testing.assert_array_equal(first[0]["flow"], again["flow"])
    assert not np.array_equal(first[0]["flow"], other["flow"])


def test_ranks_split_each_epoch(data_root):
    seen = []
    for rank in range(2):
        loader = loader_from_params(params(data_root, batch_size=1, modalities=["rgb"], rank=rank, num_ranks=2))
        seen.append({loader.videos[i][0] for i in loader._order} if loader.next_batch() is not None else set())
    assert seen[0].isdisjoint(seen[1])
    assert len(seen[0] | seen[1]) == len(loader.videos)


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
    ({"modalities": ["rgb"], "split": 4}, "split is 1, 2 or 3"),
    ({"modalities": ["rgb"], "crop": 3}, "unknown param_str key"),
])
def test_bad_param_str_is_named(data_root, given, message):
    with pytest.raises(ValueError, match=message):
        parse_param_str(json.dumps({"source": str(data_root), **given}), SCHEMA, "data")


def test_missing_source_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        loader_from_params(params(tmp_path / "nowhere"))


def test_crop_larger_than_frames_is_refused(data_root):
    loader = loader_from_params(params(data_root, crop_size=60))
    with pytest.raises(ValueError, match="does not fit"):
        loader.next_batch()
