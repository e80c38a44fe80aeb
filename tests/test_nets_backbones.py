"""mfuse.nets.backbones: published layer names and shapes, spatial sizes, hooks."""
import caffe
import pytest
from caffe import layers as L

from mfuse.nets.backbones import BACKBONES, add_conv_tower, add_fc_layers, get_backbone
from mfuse.nets.inputs import DeployInputs
from mfuse.nets.streams import spatial_net

# Parameter shapes of the published ImageNet models (VGG_CNN_M_2048, VGG_ILSVRC_19_layers) for 224 crops.
CNN_M_2048 = {"conv1": (96, 3, 7, 7), "conv2": (256, 96, 5, 5), "conv3": (512, 256, 3, 3),
              "conv4": (512, 512, 3, 3), "conv5": (512, 512, 3, 3), "fc6": (4096, 512 * 6 * 6),
              "fc7": (2048, 4096)}
VGG19 = {"conv1_1": (64, 3, 3, 3), "conv1_2": (64, 64, 3, 3), "conv2_1": (128, 64, 3, 3),
         "conv2_2": (128, 128, 3, 3), "conv3_1": (256, 128, 3, 3), "conv3_4": (256, 256, 3, 3),
         "conv4_1": (512, 256, 3, 3), "conv4_4": (512, 512, 3, 3), "conv5_1": (512, 512, 3, 3),
         "conv5_4": (512, 512, 3, 3), "fc6": (4096, 512 * 7 * 7), "fc7": (4096, 4096)}


@pytest.mark.parametrize("name, published", [("cnn_m_2048", CNN_M_2048), ("vgg19", VGG19)])
def test_layer_names_and_shapes_are_the_published_ones(load_net, name, published):
    net = load_net(spatial_net(name, 101, DeployInputs(batch_size=1)))
    expected_names = [n for n in published] if name == "cnn_m_2048" else None
    shapes = {layer: tuple(blobs[0].data.shape) for layer, blobs in net.params.items()}
    for layer, shape in published.items():
        assert shapes[layer] == shape, layer
        assert net.params[layer][1].data.shape == (shape[0],), layer
    assert set(shapes) == set(BACKBONES[name].conv_names + BACKBONES[name].fc_names + ("fc8_action",))
    if expected_names:
        assert list(shapes)[:7] == expected_names
    assert shapes["fc8_action"] == (101, published["fc7"][0])


@pytest.mark.parametrize("name, crop, conv5, pool5", [("cnn_m_2048", 224, 13, 6), ("vgg19", 224, 14, 7),
                                                      ("tiny", 64, 13, 6)])
def test_spatial_sizes_match_caffe(load_net, name, crop, conv5, pool5):
    backbone = get_backbone(name)
    sizes = backbone.spatial_sizes(crop)
    assert sizes[backbone.last_conv] == conv5 and sizes["pool5"] == pool5  # the paper's 13x13 / 14x14 maps
    net = load_net(spatial_net(name, 5, DeployInputs(batch_size=1), crop_size=crop))
    for layer, side in sizes.items():
        top = net.top_names[layer][0]
        assert net.blobs[top].data.shape[2:] == (side, side), layer


def test_tiny_backbone_has_the_cnn_m_names_and_grid():
    tiny, cnn_m = get_backbone("tiny"), get_backbone("cnn_m_2048")
    assert tiny.conv_names == cnn_m.conv_names and tiny.fc_names == cnn_m.fc_names
    # CNN-M's LRNs; pool2 dropped so that its default 64 crop keeps CNN-M's 13 x 13 conv5 and 6 x 6 pool5
    assert [s.norm for s in tiny.convs] == [s.norm for s in cnn_m.convs]
    assert [s.pool.name for s in tiny.convs if s.pool] == ["pool1", "pool5"]
    sizes, reference = tiny.spatial_sizes(tiny.crop_size), cnn_m.spatial_sizes(cnn_m.crop_size)
    assert (sizes["conv5"], sizes["pool5"]) == (reference["conv5"], reference["pool5"]) == (13, 6)


def test_classifier_filler_is_the_published_one_except_for_the_tiny_backbone(load_net):
    assert get_backbone("cnn_m_2048").classifier_filler == dict(type="gaussian", std=0.01)
    assert get_backbone("vgg19").classifier_filler == dict(type="gaussian", std=0.01)
    for name, filler in (("cnn_m_2048", "gaussian"), ("tiny", "xavier")):
        layer = next(layer for layer in spatial_net(name, 5, DeployInputs(batch_size=1)).layer
                     if layer.name == "fc8_action")
        assert layer.inner_product_param.weight_filler.type == filler


def test_crop_too_small_is_refused():
    with pytest.raises(ValueError, match="too small"):
        get_backbone("cnn_m_2048").spatial_sizes(16)


def test_unknown_backbone_names_the_choices():
    with pytest.raises(ValueError, match="cnn_m_2048"):
        get_backbone("resnet")


def _tower(hooks=None, trainable=True, prefix=""):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 48, 48]))
    top = add_conv_tower(n, n.data, get_backbone("tiny"), prefix=prefix, trainable=trainable, hooks=hooks)
    add_fc_layers(n, top, get_backbone("tiny"), prefix=prefix, trainable=trainable, dropout=0.5)
    return n.to_proto()


def test_hook_goes_between_conv_and_its_relu():
    def double(top):
        return L.Power(top, scale=2, name="double")
    layers = _tower(hooks={"conv3": double}).layer
    names = [layer.name for layer in layers]
    assert names.index("conv3") + 1 == names.index("double") == names.index("relu3") - 1
    relu3 = layers[names.index("relu3")]
    assert relu3.bottom[0] == layers[names.index("double")].top[0]


def test_unknown_hook_is_refused():
    with pytest.raises(ValueError, match="no layer"):
        _tower(hooks={"conv9": lambda top: top})


def test_prefix_and_frozen_params():
    layers = _tower(trainable=False, prefix="rgb_").layer
    assert all(layer.name.startswith("rgb_") for layer in layers[1:])
    assert all(layer.top[0].startswith("rgb_") for layer in layers[1:])
    with_params = [layer for layer in layers if layer.param]
    assert [layer.name for layer in with_params] == ["rgb_conv1", "rgb_conv2", "rgb_conv3", "rgb_conv4", "rgb_conv5",
                                                     "rgb_fc6", "rgb_fc7"]
    assert all(p.lr_mult == 0 and p.decay_mult == 0 for layer in with_params for p in layer.param)
