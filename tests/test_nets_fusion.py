"""mfuse.nets.fusion: baselines A/B and multiplicative fusion of conv5 / fc7."""
import caffe
import numpy as np
import pytest

from mfuse.nets.backbones import get_backbone
from mfuse.nets.fusion import Fusion, fusion_net
from mfuse.nets.inputs import DeployInputs, DummyInputs, VideoData


def _layer(proto, name):
    return next(layer for layer in proto.layer if layer.name == name)


def _param_layers(proto):
    return {layer.name: layer for layer in proto.layer if layer.param}


@pytest.mark.parametrize("kind", ["baseline_a", "baseline_b", "mfuse_conv5", "mfuse_fc7"])
def test_towers_are_prefixed_and_frozen_and_the_rest_trained(kind):
    proto = fusion_net("cnn_m_2048", "cnn_m_2048", 101, DeployInputs(), Fusion(kind))
    layers = _param_layers(proto)
    towers = [f"{p}conv{i}" for p in ("rgb_", "flow_") for i in range(1, 6)]
    if kind == "mfuse_fc7":
        towers += [f"{p}fc{i}" for p in ("rgb_", "flow_") for i in (6, 7)]
    assert sorted(name for name in layers if name.startswith(("rgb_", "flow_"))) == sorted(towers)
    for name in towers:
        assert all(p.lr_mult == 0 and p.decay_mult == 0 for p in layers[name].param), name
    trained = [name for name in layers if name not in towers]
    assert trained and all(any(p.lr_mult > 0 for p in layers[name].param) for name in trained)
    assert trained[-1] == "cons_fc8"
    assert list(_layer(proto, "rgb_conv1").bottom) == ["data_rgb"]
    assert list(_layer(proto, "flow_conv1").bottom) == ["data_flow"]


def test_mfuse_conv5_is_the_authors_layout():
    proto = fusion_net("cnn_m_2048", "cnn_m_2048", 101, DeployInputs(), Fusion("mfuse_conv5"))
    fusion = _layer(proto, "mfuse")
    assert fusion.type == "MultiplicativeFusion" and list(fusion.bottom) == ["rgb_pool5", "flow_pool5"]
    param = fusion.multiplicative_fusion_param
    assert param.num_output == 2048 and param.bias_value == 1 and not param.bias_learnable
    assert param.activation == caffe.params.MultiplicativeFusion.NONE  # the paper's formula by default
    assert param.weight_filler.type == "xavier"
    assert [p.lr_mult for p in fusion.param] == [1, 1]  # one weight per stream, constant biases
    names = [layer.name for layer in proto.layer]
    head = names[names.index("mfuse") + 1:]
    assert head == ["cons_fc6", "cons_relu6", "cons_drop6", "cons_fc7", "cons_relu7", "cons_drop7", "cons_fc8",
                    "prob"]
    assert _layer(proto, "cons_fc6").inner_product_param.num_output == 4096
    assert _layer(proto, "cons_fc7").inner_product_param.num_output == 4096
    assert _layer(proto, "cons_drop6").dropout_param.dropout_ratio == pytest.approx(0.7)


def test_authors_relu_is_one_argument_away():
    proto = fusion_net("tiny", "tiny", 8, DeployInputs(), Fusion("mfuse_conv5", activation="RELU"))
    assert _layer(proto, "mfuse").multiplicative_fusion_param.activation == caffe.params.MultiplicativeFusion.RELU


TINY = get_backbone("tiny")
TINY_POOL5 = TINY.spatial_sizes(TINY.crop_size)["pool5"]
TINY_FC7 = TINY.fcs[-1].num_output


@pytest.mark.parametrize("kind, fused_shape", [("baseline_a", (2, 64, TINY_POOL5, TINY_POOL5)),
                                               ("baseline_b", (2, 24, TINY_POOL5, TINY_POOL5)),
                                               ("mfuse_conv5", (2, 24, TINY_POOL5, TINY_POOL5)), ("mfuse_fc7", (2, 24))])
def test_tiny_fusion_shapes(load_net, kind, fused_shape):
    proto = fusion_net("tiny", "tiny", 8, DeployInputs(batch_size=2), Fusion(kind, num_output=24, head=(16, 16)))
    net = load_net(proto)
    fused = {"baseline_a": "concat", "baseline_b": "cons_conv"}.get(kind, "mfuse")
    assert net.blobs[fused].data.shape == fused_shape
    assert net.blobs["prob"].data.shape == (2, 8)
    if kind.startswith("mfuse"):
        channels = TINY_FC7 if kind == "mfuse_fc7" else 32
        expected = (24, channels) if kind == "mfuse_fc7" else (24, channels, 1, 1)
        assert [blob.data.shape for blob in net.params["mfuse"]] == [expected, expected]


def test_learnable_biases_get_param_specs(load_net):
    proto = fusion_net("tiny", "tiny", 8, DeployInputs(batch_size=1),
                       Fusion("mfuse_conv5", num_output=24, bias_learnable=True))
    assert [(p.lr_mult, p.decay_mult) for p in _layer(proto, "mfuse").param] == [(1, 1), (2, 0), (1, 1), (2, 0)]
    net = load_net(proto)
    assert [blob.data.shape for blob in net.params["mfuse"]] == [(24, 32, 1, 1), (24,), (24, 32, 1, 1), (24,)]


def test_mfuse_fc7_is_fusion_dropout_classifier(load_net):
    proto = fusion_net("cnn_m_2048", "cnn_m_2048", 101, DeployInputs(batch_size=1), Fusion("mfuse_fc7"))
    names = [layer.name for layer in proto.layer]
    assert names[names.index("mfuse"):] == ["mfuse", "cons_drop", "cons_fc8", "prob"]
    assert list(_layer(proto, "mfuse").bottom) == ["rgb_fc7", "flow_fc7"]
    assert _layer(proto, "mfuse").multiplicative_fusion_param.num_output == 4096
    net = load_net(proto)
    assert net.blobs["mfuse"].data.shape == (1, 4096)
    assert net.params["mfuse"][0].data.shape == (4096, 2048)


def test_conv_fusion_of_misaligned_towers_is_refused():
    with pytest.raises(ValueError, match="7x7.*6x6"):
        fusion_net("vgg19", "cnn_m_2048", 101, DeployInputs(), Fusion("mfuse_conv5"))
    proto = fusion_net("vgg19", "cnn_m_2048", 101, DeployInputs(), Fusion("mfuse_fc7"))  # fc7 needs no alignment
    assert list(_layer(proto, "mfuse").bottom) == ["rgb_fc7", "flow_fc7"]


def test_bad_fusion_options_are_refused():
    with pytest.raises(ValueError, match="kind"):
        Fusion("mfuse_fc9")
    with pytest.raises(ValueError, match="activation"):
        Fusion("mfuse_conv5", activation="TANH")
    with pytest.raises(ValueError, match="at most 2"):
        Fusion("mfuse_conv5", head=(8, 8, 8))


def test_train_val_reads_rgb_and_flow():
    proto = fusion_net("tiny", "tiny", 8, VideoData("data/synthetic", 16, 8), Fusion("mfuse_conv5"))
    assert [list(layer.top) for layer in proto.layer[:2]] == [["data_rgb", "data_flow", "label"]] * 2


@pytest.mark.parametrize("kind", ["baseline_a", "baseline_b", "mfuse_conv5", "mfuse_fc7"])
def test_one_sgd_step_changes_only_the_layers_after_the_fusion(tmp_path, kind):
    proto = fusion_net("tiny", "tiny", 8, DummyInputs(batch_size=4), Fusion(kind, num_output=16, head=(16, 16)))
    data = proto.layer[0].dummy_data_param
    for filler in data.data_filler[:2]:  # random images and flow, labels 0
        filler.type, filler.std = "gaussian", 1.0
    (tmp_path / "net.prototxt").write_text(str(proto))
    (tmp_path / "solver.prototxt").write_text(
        f'net: "{tmp_path / "net.prototxt"}" base_lr: 0.1 lr_policy: "fixed" momentum: 0.9 weight_decay: 0.0005 '
        'max_iter: 1 display: 0 snapshot_after_train: false solver_mode: CPU')
    caffe.set_mode_cpu()
    solver = caffe.SGDSolver(str(tmp_path / "solver.prototxt"))
    net = solver.net
    assert net.blobs["cons_fc8"].data.shape == (4, 8)
    before = {name: [blob.data.copy() for blob in blobs] for name, blobs in net.params.items()}
    solver.step(1)
    assert np.isfinite(net.blobs["loss"].data).all()
    for name, blobs in net.params.items():
        changed = any(not np.array_equal(old, blob.data) for old, blob in zip(before[name], blobs))
        assert changed == (not name.startswith(("rgb_", "flow_"))), name
