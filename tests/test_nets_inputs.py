"""mfuse.nets.inputs: the video data layer contract, DummyData and Input stand-ins."""
import json

import caffe
import pytest

from mfuse.nets.inputs import DeployInputs, DummyInputs, VideoData, add_inputs, add_outputs, input_shape

DATA = VideoData(source="data/ucf101", batch_size=64, test_batch_size=32, split=2, storage="folder")


def _net(inputs, modalities, crop=224, stack_length=10):
    n = caffe.NetSpec()
    added = add_inputs(n, inputs, modalities, crop, stack_length)
    n.score = caffe.layers.InnerProduct(added.tops[modalities[0]], num_output=3)
    add_outputs(n, n.score, added.label)
    return added.finish(n.to_proto())


def test_video_data_layers_of_both_phases():
    net = _net(DATA, ["rgb", "flow", "mag"])
    train, test = net.layer[0], net.layer[1]
    for layer, phase in ((train, caffe.TRAIN), (test, caffe.TEST)):
        assert layer.type == "Python" and layer.name == "data"
        assert list(layer.top) == ["data_rgb", "data_flow", "data_mag", "label"]
        assert [rule.phase for rule in layer.include] == [phase]
        assert layer.python_param.module == "mfuse.layers.video_data"
        assert layer.python_param.layer == "VideoDataLayer"
    train_param, test_param = (json.loads(layer.python_param.param_str) for layer in (train, test))
    assert train_param == {"source": "data/ucf101", "storage": "folder", "split": 2, "subset": "train",
                           "modalities": ["rgb", "flow", "mag"], "batch_size": 64, "new_length": 10,
                           "crop_size": 224, "mirror": True, "shuffle": True, "seed": 1,
                           "rgb_mean": [104, 117, 123], "flow_mean": 128}
    assert test_param == dict(train_param, subset="test", batch_size=32, mirror=False, shuffle=False)
    assert [layer.type for layer in net.layer[2:]] == ["InnerProduct", "SoftmaxWithLoss", "Accuracy"]


def test_dummy_inputs_have_the_data_layer_shapes(load_net):
    net = load_net(_net(DummyInputs(batch_size=4), ["flow", "rgb"], crop=48, stack_length=5), phase=caffe.TRAIN)
    assert net.blobs["data_flow"].data.shape == (4, 10, 48, 48)
    assert net.blobs["data_rgb"].data.shape == (4, 3, 48, 48)
    assert net.blobs["label"].data.shape == (4,)
    assert "loss" in net.blobs


def test_deploy_inputs_end_in_prob(load_net):
    proto = _net(DeployInputs(batch_size=2), ["rgb", "mag"])
    assert [layer.type for layer in proto.layer] == ["Input", "Input", "InnerProduct", "Softmax"]
    net = load_net(proto)
    assert net.blobs["data_mag"].data.shape == (2, 1, 224, 224)
    assert net.blobs["prob"].data.shape == (2, 3)


def test_input_shape_and_bad_modality():
    assert input_shape("flow", 8, 224, 10) == [8, 20, 224, 224]
    with pytest.raises(ValueError, match="depth"):
        _net(DeployInputs(), ["depth"])
