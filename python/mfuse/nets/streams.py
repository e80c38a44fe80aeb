"""The single-stream nets: spatial (RGB), spatial with flow amplification, temporal (stacked flow).

Each builder returns a ``caffe_pb2.NetParameter``; what kind of net (train_val or deploy) is decided by
``inputs`` (see ``mfuse.nets.inputs``). The classifier is ``fc8_action``.
"""
from dataclasses import dataclass
from typing import Optional

import caffe
from caffe import layers as L
from caffe import params as P
from caffe.proto import caffe_pb2

from .backbones import CLASSIFIER, add_conv_tower, add_fc, add_fc_layers, get_backbone
from .inputs import add_inputs, add_outputs


@dataclass(frozen=True)
class Amplify:
    """Where and how ``FlowAmplify`` multiplies a conv map by ``offset + scale * resize(magnitude)``.

    Attributes:
        layer: unprefixed layer of the tower whose output is amplified; None means the last conv layer
            (conv5 / conv5_4), the paper's choice. Amplifying a conv layer puts the product before its ReLU,
            as the authors' code did; name the ReLU (``"relu5"``) to amplify after it.
        offset, scale, resize, clip_max, normalize: ``flow_amplify_param`` (see caffe.proto); offset 1 is
            the paper's "scaled from 1 rather than 0".
    """
    layer: Optional[str] = None
    offset: float = 1.0
    scale: float = 1.0
    resize: str = "AREA"
    clip_max: float = 0.0
    normalize: str = "NONE"

    def param(self) -> dict:
        return dict(offset=self.offset, scale=self.scale, resize=getattr(P.FlowAmplify, self.resize),
                    clip_max=self.clip_max, normalize=getattr(P.FlowAmplify, self.normalize))


def _add_head(n, features, backbone, num_classes: int, trainable_fc: bool, dropout: float):
    fc7 = add_fc_layers(n, features, backbone, trainable=trainable_fc, dropout=dropout)
    return add_fc(n, fc7, CLASSIFIER, num_classes)


def spatial_net(backbone: str, num_classes: int, inputs, amplify: Optional[Amplify] = None,
                freeze_convs: bool = True, dropout: float = 0.7, crop_size: Optional[int] = None,
                name: Optional[str] = None) -> caffe_pb2.NetParameter:
    """The spatial (RGB) net, optionally with flow amplification (Sec. 3 of the paper).

    Inputs ``data_rgb`` N x 3 x S x S (+ ``data_mag`` N x 1 x S x S when amplifying) and ``label``; the
    amplified map is the top ``<layer>_amp``.

    Args:
        backbone: key of ``mfuse.nets.backbones.BACKBONES``.
        num_classes: outputs of ``fc8_action``.
        inputs: ``VideoData`` / ``DummyInputs`` / ``DeployInputs``.
        amplify: None for the plain spatial net.
        freeze_convs: conv layers get ``lr_mult: 0`` (the paper fine-tunes FC layers only).
        dropout: ratio after fc6 and fc7 (0.7 in the paper).
        crop_size: S; the backbone's default when None.
        name: the net's name.
    """
    net = get_backbone(backbone)
    crop = crop_size or net.crop_size
    modalities = ["rgb", "mag"] if amplify else ["rgb"]
    n = caffe.NetSpec()
    added = add_inputs(n, inputs, modalities, crop)
    hooks = {}
    if amplify:
        layer = amplify.layer or net.last_conv

        def amplify_top(top):
            n[f"{layer}_amp"] = L.FlowAmplify(top, added.tops["mag"], name="flow_amplify",
                                              flow_amplify_param=amplify.param())
            return n[f"{layer}_amp"]
        hooks[layer] = amplify_top
    features = add_conv_tower(n, added.tops["rgb"], net, trainable=not freeze_convs, hooks=hooks)
    scores = _add_head(n, features, net, num_classes, True, dropout)
    add_outputs(n, scores, added.label)
    proto = added.finish(n.to_proto())
    proto.name = name or (f"{backbone}_spatial_amp" if amplify else f"{backbone}_spatial")
    return proto


def temporal_net(backbone: str, num_classes: int, inputs, new_length: int = 10, dropout: float = 0.7,
                 freeze_convs: bool = False, crop_size: Optional[int] = None,
                 name: Optional[str] = None) -> caffe_pb2.NetParameter:
    """The temporal net: ``data_flow`` N x 2L x S x S (L = ``new_length`` flow frames; 20 channels in the
    paper), trained from scratch as in Simonyan and Zisserman. Arguments as ``spatial_net``."""
    net = get_backbone(backbone)
    crop = crop_size or net.crop_size
    n = caffe.NetSpec()
    added = add_inputs(n, inputs, ["flow"], crop, new_length)
    features = add_conv_tower(n, added.tops["flow"], net, trainable=not freeze_convs)
    scores = _add_head(n, features, net, num_classes, True, dropout)
    add_outputs(n, scores, added.label)
    proto = added.finish(n.to_proto())
    proto.name = name or f"{backbone}_temporal"
    return proto
