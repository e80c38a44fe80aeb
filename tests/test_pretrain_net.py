"""mfuse.pretrain.net: the backbone with an ImageNet-style head on Caffe's Data layer."""
from mfuse.conventions import RGB_MEAN
from mfuse.pretrain.net import IMAGENET_CLASSIFIER, pretrain_net


def test_the_net_is_the_backbone_with_an_imagenet_head():
    proto = pretrain_net("tiny", 12, "train_lmdb", "val_lmdb", batch_size=8)
    names = [layer.name for layer in proto.layer]
    assert names[:2] == ["data", "data"] and [layer.type for layer in proto.layer[:2]] == ["Data", "Data"]
    train, val = proto.layer[:2]
    assert (train.data_param.source, val.data_param.source) == ("train_lmdb", "val_lmdb")
    assert train.transform_param.crop_size == 64 and train.transform_param.mirror and not val.transform_param.mirror
    assert list(train.transform_param.mean_value) == list(RGB_MEAN)  # the stream nets' BGR mean
    params = [layer.name for layer in proto.layer if layer.type in ("Convolution", "InnerProduct")]
    assert params == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", IMAGENET_CLASSIFIER]


def test_the_classifier_has_the_backbone_s_filler_and_dropout_is_set():
    proto = pretrain_net("tiny", 12, "train_lmdb", "val_lmdb", batch_size=8, dropout=0.25)
    layers = {layer.name: layer for layer in proto.layer}
    assert layers[IMAGENET_CLASSIFIER].inner_product_param.weight_filler.type == "xavier"
    assert layers[IMAGENET_CLASSIFIER].inner_product_param.num_output == 12
    assert [layers[name].dropout_param.dropout_ratio for name in ("drop6", "drop7")] == [0.25, 0.25]
