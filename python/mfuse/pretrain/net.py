"""The pretraining net: a backbone with an ImageNet-style head, fed by Caffe's own ``Data`` layer.

Layers: ``data`` (Datum LMDB, JPEG-encoded; TRAIN: random ``crop_size`` crop and mirror, TEST: centre crop;
the BGR mean of every mfuse net subtracted) -> the backbone's conv1..pool5, fc6, fc7 (ReLU, dropout) ->
``fc8`` over the image categories -> ``SoftmaxWithLoss``; ``accuracy`` in the TEST phase. The names are
those of the published ImageNet models, so the trained caffemodel feeds ``mfuse.surgery.init_from_imagenet``
as a real ImageNet model would (``fc8`` is then reported unused, ``fc8_action`` keeps its filler).
"""
from __future__ import annotations

import caffe
from caffe import layers as L
from caffe import params as P
from caffe.proto import caffe_pb2

from mfuse.conventions import RGB_MEAN
from mfuse.nets.backbones import add_conv_tower, add_fc, add_fc_layers, get_backbone

#: The ImageNet models' classifier name (the stream nets' is ``fc8_action``, so it is never copied into them).
IMAGENET_CLASSIFIER = "fc8"


def _data_layer(source: str, batch_size: int, crop_size: int, phase: int):
    return L.Data(name="data", source=source, backend=P.Data.LMDB, batch_size=batch_size, ntop=2,
                  transform_param=dict(crop_size=crop_size, mirror=phase == caffe.TRAIN, mean_value=list(RGB_MEAN)),
                  include=dict(phase=phase))


def pretrain_net(backbone: str, num_classes: int, train_source: str, val_source: str, batch_size: int,
                 crop_size: int | None = None, dropout: float = 0.5) -> caffe_pb2.NetParameter:
    """The train_val net of the image task for ``backbone`` (key of ``BACKBONES``).

    Args:
        num_classes: outputs of ``fc8``.
        train_source, val_source: Datum LMDBs (paths as caffe will see them).
        batch_size: images per pass, both phases.
        crop_size: input side; the backbone's default when None.
        dropout: after fc6 and fc7 (0.5 as the ImageNet models' training).
    """
    net = get_backbone(backbone)
    crop = crop_size or net.crop_size
    n = caffe.NetSpec()
    n.data, n.label = _data_layer(train_source, batch_size, crop, caffe.TRAIN)
    test = caffe.NetSpec()
    test.data, test.label = _data_layer(val_source, batch_size, crop, caffe.TEST)
    features = add_conv_tower(n, n.data, net)
    fc7 = add_fc_layers(n, features, net, dropout=dropout)
    scores = add_fc(n, fc7, IMAGENET_CLASSIFIER, num_classes, weight_filler=net.classifier_filler)
    n.loss = L.SoftmaxWithLoss(scores, n.label)
    n.accuracy = L.Accuracy(scores, n.label, include=dict(phase=caffe.TEST))
    proto = n.to_proto()
    layers = list(proto.layer)
    del proto.layer[:]
    proto.layer.extend(layers[:1] + [test.to_proto().layer[0]] + layers[1:])
    proto.name = f"{backbone}_pretrain"
    return proto
