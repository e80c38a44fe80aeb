"""mfuse.nets.streams: spatial, spatial + FlowAmplify, temporal nets."""
import caffe
import numpy as np
import pytest

from mfuse.nets.inputs import DeployInputs, DummyInputs, VideoData
from mfuse.nets.streams import Amplify, spatial_net, temporal_net


def _layer(proto, name):
    return next(layer for layer in proto.layer if layer.name == name)


def _lr_mults(proto):
    return {layer.name: [p.lr_mult for p in layer.param] for layer in proto.layer if layer.param}


def test_spatial_net_freezes_convs_and_trains_fcs():
    proto = spatial_net("cnn_m_2048", 101, DeployInputs())
    mults = _lr_mults(proto)
    assert all(mults[f"conv{i}"] == [0, 0] for i in range(1, 6))
    assert mults["fc6"] == mults["fc7"] == mults["fc8_action"] == [1, 2]
    assert _layer(proto, "drop6").dropout_param.dropout_ratio == pytest.approx(0.7)
    assert _layer(proto, "drop7").dropout_param.dropout_ratio == pytest.approx(0.7)
    trainable = _lr_mults(spatial_net("cnn_m_2048", 101, DeployInputs(), freeze_convs=False))
    assert trainable["conv1"] == [1, 2]


def test_amplification_sits_between_conv5_and_relu5():
    proto = spatial_net("cnn_m_2048", 101, DeployInputs(), amplify=Amplify())
    names = [layer.name for layer in proto.layer]
    assert names.index("conv5") + 1 == names.index("flow_amplify") == names.index("relu5") - 1
    amp = _layer(proto, "flow_amplify")
    assert amp.type == "FlowAmplify" and list(amp.bottom) == ["conv5", "data_mag"] and list(amp.top) == ["conv5_amp"]
    assert amp.flow_amplify_param.offset == 1 and amp.flow_amplify_param.scale == 1
    assert list(_layer(proto, "relu5").bottom) == ["conv5_amp"]
    assert list(_layer(proto, "pool5").bottom) == ["conv5_amp"]
    assert list(proto.layer[1].top) == ["data_mag"]


def test_amplification_is_configurable():
    proto = spatial_net("vgg19", 51, DeployInputs(), amplify=Amplify(layer="relu5_4", offset=0.5, scale=2,
                                                                    resize="BILINEAR"))
    names = [layer.name for layer in proto.layer]
    assert names.index("relu5_4") + 1 == names.index("flow_amplify")
    amp = _layer(proto, "flow_amplify")
    assert list(amp.bottom) == ["conv5_4", "data_mag"]
    assert amp.flow_amplify_param.offset == 0.5 and amp.flow_amplify_param.scale == 2
    assert amp.flow_amplify_param.resize == caffe.params.FlowAmplify.BILINEAR


def test_amplified_net_shapes(load_net):
    net = load_net(spatial_net("cnn_m_2048", 101, DeployInputs(batch_size=2), amplify=Amplify()))
    assert net.blobs["data_mag"].data.shape == (2, 1, 224, 224)
    assert net.blobs["conv5_amp"].data.shape == (2, 512, 13, 13)
    assert net.blobs["prob"].data.shape == (2, 101)


def test_temporal_net_takes_20_flow_channels(load_net):
    proto = temporal_net("cnn_m_2048", 101, DeployInputs(batch_size=1))
    assert all(mults == [1, 2] for mults in _lr_mults(proto).values())
    net = load_net(proto)
    assert net.blobs["data_flow"].data.shape == (1, 20, 224, 224)
    assert net.params["conv1"][0].data.shape == (96, 20, 7, 7)
    assert net.blobs["prob"].data.shape == (1, 101)


def test_train_val_data_layers_feed_the_nets():
    spatial = spatial_net("tiny", 8, VideoData("data/synthetic", 16, 8), amplify=Amplify())
    assert [list(layer.top) for layer in spatial.layer[:2]] == [["data_rgb", "data_mag", "label"]] * 2
    temporal = temporal_net("tiny", 8, VideoData("data/synthetic", 16, 8), stack_length=5)
    assert list(temporal.layer[0].top) == ["data_flow", "label"]
    assert '"new_length": 5' in temporal.layer[0].python_param.param_str


@pytest.mark.parametrize("build", [
    lambda inputs: spatial_net("tiny", 8, inputs),
    lambda inputs: spatial_net("tiny", 8, inputs, amplify=Amplify()),
    lambda inputs: temporal_net("tiny", 8, inputs)], ids=["spatial", "spatial_amp", "temporal"])
def test_train_val_with_dummy_data_runs(load_net, build):
    net = load_net(build(DummyInputs(batch_size=3)), fast=False, phase=caffe.TRAIN)
    assert net.blobs["fc8_action"].data.shape == (3, 8)
    loss = net.forward()["loss"]
    assert loss == pytest.approx(np.log(8), rel=0.2)  # near chance with zero inputs
