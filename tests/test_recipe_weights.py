"""Parameter shapes inferred from prototxts agree with Caffe's; a caffemodel's declared shapes are read without a
net; the fit rules of mfuse.surgery (exact, legacy 4-D, cross-modality) and every kind of misfit."""
import pytest
from caffe.proto import caffe_pb2

from mfuse.conventions import NET_NAMES
from mfuse.nets.build_all import COMMITTED, build_net
from mfuse.nets.inputs import DeployInputs
from mfuse.recipe.weights import (ShapeError, StoredLayer, fits, param_shapes, pretrained_problems, read_prototxt,
                                  stored_shapes)
from recipe_helpers import write_caffemodel

CASES = [("tiny", net) for net in NET_NAMES] + [("cnn_m_2048", "spatial_amp"), ("vgg19", "spatial"),
                                                 ("vgg19", "temporal")]


@pytest.mark.parametrize("backbone, net", CASES)
def test_inferred_shapes_equal_caffes(load_net, backbone, net):
    proto = build_net(net, COMMITTED[backbone], DeployInputs(batch_size=1))
    inferred = param_shapes(proto, net)
    loaded = load_net(proto)
    assert inferred == {name: [tuple(blob.data.shape) for blob in blobs] for name, blobs in loaded.params.items()}


def test_unknown_layer_types_and_dangling_blobs_are_named(tmp_path):
    net = caffe_pb2.NetParameter()
    net.layer.add(name="in", type="Input", top=["x"]).input_param.shape.add(dim=[1, 3, 8, 8])
    net.layer.add(name="bn", type="BatchNorm", bottom=["x"], top=["y"])
    with pytest.raises(ShapeError, match="layer bn of type BatchNorm"):
        param_shapes(net)
    net.layer[1].CopyFrom(caffe_pb2.LayerParameter(name="fc", type="InnerProduct", bottom=["z"], top=["y"]))
    with pytest.raises(ShapeError, match="layer fc reads blob 'z'"):
        param_shapes(net)
    (tmp_path / "bad.prototxt").write_text("layer { name: ")
    with pytest.raises(ShapeError, match="not a readable net prototxt"):
        read_prototxt(tmp_path / "bad.prototxt")


def test_stored_shapes_of_new_and_legacy_models(tmp_path):
    path = write_caffemodel(tmp_path / "new.caffemodel", {"conv1": [(4, 3, 3, 3), (4,)]}, values=True)
    assert stored_shapes(path) == {"conv1": StoredLayer([(4, 3, 3, 3), (4,)], False, [108, 4])}
    legacy = caffe_pb2.NetParameter()
    layer = legacy.layers.add(name="fc6")
    layer.blobs.add(num=1, channels=1, height=8, width=20)
    (tmp_path / "v1.caffemodel").write_bytes(legacy.SerializeToString())
    assert stored_shapes(tmp_path / "v1.caffemodel") == {"fc6": StoredLayer([(1, 1, 8, 20)], True, [0])}
    (tmp_path / "text.caffemodel").write_text("name: 'not binary'")
    with pytest.raises(ShapeError):
        stored_shapes(tmp_path / "text.caffemodel")
    with pytest.raises(ShapeError, match="does not exist"):
        stored_shapes(tmp_path / "absent.caffemodel")


def test_fit_rules():
    assert fits((8, 20), (8, 20), legacy=False)
    assert fits((1, 1, 8, 20), (8, 20), legacy=True) and not fits((1, 1, 8, 20), (8, 20), legacy=False)
    assert fits((64, 3, 3, 3), (64, 20, 3, 3), legacy=False, cross_modality=True)
    assert not fits((64, 3, 3, 3), (64, 20, 3, 3), legacy=False)
    assert not fits((64, 3, 5, 5), (64, 20, 3, 3), legacy=False, cross_modality=True)


def test_pretrained_problems_name_the_layer_and_both_shapes():
    expected = {"conv1": [(4, 3, 3, 3), (4,)], "fc6": [(8, 36), (8,)]}
    model = {"conv1": StoredLayer([(4, 3, 5, 5), (4,)], False, [0, 0]),
             "fc6": StoredLayer([(8, 36), (8,)], False, [10, 8])}
    problems = pretrained_problems(model, expected, ["conv1", "fc6"], "tiny spatial")
    assert problems == ["layer conv1 holds 4x3x5x5, 4, the tiny spatial net expects 4x3x3x3, 4",
                        "layer fc6 holds [10, 8] values for shapes 8x36, 8"]
    assert pretrained_problems({}, expected, ["conv1"], "tiny spatial") == [
        "has no layer conv1 (the tiny spatial net expects 4x3x3x3, 4)"]
    flow = {"conv1": [(4, 20, 3, 3), (4,)]}
    rgb = {"conv1": StoredLayer([(4, 3, 3, 3), (4,)], False, [108, 4])}
    assert pretrained_problems(rgb, flow, ["conv1"], "temporal", cross_modality_layer="conv1") == []
    assert pretrained_problems(rgb, flow, ["conv1"], "temporal") != []
