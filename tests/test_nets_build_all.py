"""mfuse.nets.build_all and the committed prototxt/: regenerated identically, every net loads."""
import filecmp
import json
from pathlib import Path

import caffe
import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from mfuse.conventions import NET_NAMES
from mfuse.nets.build_all import COMMITTED, build_net, custom_set, write_all
from mfuse.nets.inputs import DummyInputs

REPO = Path(__file__).resolve().parents[1]
COMMITTED_DIR = REPO / "prototxt"
NUM_CLASSES = {"cnn_m_2048": 101, "vgg19": 101, "tiny": 8}


def _files(root: Path):
    return sorted(str(path.relative_to(root)) for path in root.rglob("*.prototxt"))


def _read(path, message):
    return text_format.Merge(Path(path).read_text(), message)


def test_committed_prototxts_are_what_the_builder_writes(tmp_path):
    written = write_all(tmp_path, net_root="prototxt")
    assert _files(tmp_path) == _files(COMMITTED_DIR), "prototxt/ has files the builder does not write or lacks some"
    assert len(written) == 3 * len(NET_NAMES) * len(COMMITTED)
    differing = [name for name in _files(tmp_path)
                 if not filecmp.cmp(tmp_path / name, COMMITTED_DIR / name, shallow=False)]
    assert not differing, f"regenerate with python tools/make_nets.py: {differing}"


def test_the_issue_command_exists():
    solver = _read(COMMITTED_DIR / "mfuse_conv5_solver.prototxt", caffe_pb2.SolverParameter())
    assert solver.net == "prototxt/mfuse_conv5_train_val.prototxt"


@pytest.mark.parametrize("set_name", sorted(COMMITTED))
def test_solvers_point_at_their_train_val_nets(set_name):
    net_set = COMMITTED[set_name]
    for net in NET_NAMES:
        base = Path(net_set.subdir) / net
        solver = _read(COMMITTED_DIR / f"{base}_solver.prototxt", caffe_pb2.SolverParameter())
        assert (REPO / solver.net).is_file() and solver.net == f"prototxt/{base}_train_val.prototxt"
        assert solver.snapshot_prefix == f"{net_set.runs_dir}/{net}/snap"
        train_val = _read(REPO / solver.net, caffe_pb2.NetParameter())
        data = json.loads(train_val.layer[0].python_param.param_str)
        assert data["batch_size"] * solver.iter_size == net_set.schedule(net).batch
        if set_name != "tiny":  # the paper's batches
            assert net_set.schedule(net).batch == (128 if net.startswith(("mfuse", "baseline")) else 256)
        assert data["source"] == net_set.source and data["split"] == 1


def _deploy_cases():
    return [(name, net) for name in sorted(COMMITTED) for net in NET_NAMES]


@pytest.mark.parametrize("set_name, net", _deploy_cases())
def test_every_committed_deploy_net_loads(load_net, set_name, net):
    net_set = COMMITTED[set_name]
    path = COMMITTED_DIR / net_set.subdir / f"{net}_deploy.prototxt"
    loaded = load_net(path)
    crop = 64 if set_name == "tiny" else 224
    assert loaded.blobs["prob"].data.shape == (10, NUM_CLASSES[set_name])
    if net in ("spatial", "spatial_amp", "baseline_a", "baseline_b", "mfuse_conv5", "mfuse_fc7"):
        assert loaded.blobs["data_rgb"].data.shape == (10, 3, crop, crop)
    if net in ("temporal", "baseline_a", "baseline_b", "mfuse_conv5", "mfuse_fc7"):
        assert loaded.blobs["data_flow"].data.shape == (10, 20, crop, crop)
    if net == "spatial_amp":
        assert loaded.blobs["data_mag"].data.shape == (10, 1, crop, crop)
    pool5 = {"cnn_m_2048": 6, "vgg19": 7, "tiny": 6}[set_name]
    for tower in (("rgb_", "flow_") if net in ("baseline_a", "baseline_b", "mfuse_conv5", "mfuse_fc7") else ("",)):
        assert loaded.blobs[f"{tower}pool5"].data.shape[2:] == (pool5, pool5)


@pytest.mark.parametrize("set_name, net", _deploy_cases())
def test_every_train_val_matches_its_deploy_net(set_name, net):
    """The train_val net is the deploy net with data layers and a loss: same layers in between."""
    net_set = COMMITTED[set_name]
    base = COMMITTED_DIR / net_set.subdir / net
    train_val = _read(f"{base}_train_val.prototxt", caffe_pb2.NetParameter())
    deploy = _read(f"{base}_deploy.prototxt", caffe_pb2.NetParameter())
    train_body = [layer for layer in train_val.layer if layer.type not in ("Python", "SoftmaxWithLoss", "Accuracy")]
    deploy_body = [layer for layer in deploy.layer if layer.type not in ("Input", "Softmax")]
    assert train_body == deploy_body
    assert [layer.type for layer in train_val.layer[:2]] == ["Python", "Python"]


@pytest.mark.parametrize("set_name, net", [("tiny", net) for net in NET_NAMES] + [
    ("cnn_m_2048", "mfuse_conv5"), ("vgg19", "mfuse_fc7")])
def test_train_val_with_dummy_data_has_the_shapes(load_net, set_name, net):
    proto = build_net(net, COMMITTED[set_name], DummyInputs(batch_size=2))
    loaded = load_net(proto, phase=caffe.TRAIN)
    assert loaded.blobs["label"].data.shape == (2,)
    assert loaded.blobs["loss"].data.shape == ()
    scores = "cons_fc8" if net in ("baseline_a", "baseline_b", "mfuse_conv5", "mfuse_fc7") else "fc8_action"
    assert loaded.blobs[scores].data.shape == (2, NUM_CLASSES[set_name])


def test_custom_set_for_another_dataset(tmp_path):
    net_set = custom_set("tiny", 51, "data/hmdb51", split=2, fusion_activation="RELU")
    paths = write_all(tmp_path / "out", [net_set], net_root="nets/hmdb")
    assert len(paths) == 3 * len(NET_NAMES) and all(path.parent == tmp_path / "out" for path in paths)
    solver = _read(tmp_path / "out" / "mfuse_conv5_solver.prototxt", caffe_pb2.SolverParameter())
    assert solver.net == "nets/hmdb/mfuse_conv5_train_val.prototxt"
    train_val = _read(tmp_path / "out" / "mfuse_conv5_train_val.prototxt", caffe_pb2.NetParameter())
    assert json.loads(train_val.layer[0].python_param.param_str)["split"] == 2
    fusion = next(layer for layer in train_val.layer if layer.name == "mfuse")
    assert fusion.multiplicative_fusion_param.activation == caffe.params.MultiplicativeFusion.RELU
    assert next(layer for layer in train_val.layer if layer.name == "cons_fc8").inner_product_param.num_output == 51
    with pytest.raises(ValueError, match="2 classes"):
        custom_set("tiny", 1, "data/x")
    with pytest.raises(ValueError, match="backbone"):
        custom_set("resnet", 5, "data/x")
