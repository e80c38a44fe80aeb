"""The single-stream nets: spatial (RGB), spatial with flow amplification, temporal (stacked flow).

Each builder returns a ``caffe_pb2.NetParameter``; what kind of net (train_val or deploy) is decided by
``inputs`` (see ``mfuse.nets.inputs``). The classifier is ``fc8_action``.
"""
from __future__ import annotations

from dataclasses import dataclass

import caffe
from caffe import layers as L
from caffe import params as P
from caffe.proto import caffe_pb2

from mfuse.conventions import FLOW_AMPLIFY_DEFAULTS, STACK_LENGTH
from mfuse.nets.backbones import CLASSIFIER, add_conv_tower, add_fc, add_fc_layers, get_backbone
from mfuse.nets.inputs import add_inputs, add_outputs


@dataclass(frozen=True)
class Amplify:
    """Where and how ``FlowAmplify`` multiplies a conv map by ``offset + scale * resize(magnitude)``.

    Attributes:
        layer: unprefixed layer of the tower whose output is amplified; None means the last conv layer
            (conv5 / conv5_4), the paper's choice. Amplifying a conv layer puts the product before its ReLU,
            as the authors' code did; name the ReLU (``"relu5"``) to amplify after it.
        offset, scale, resize, clip_max, normalize: ``flow_amplify_param`` (see caffe.proto), defaults
            ``mfuse.conventions.FLOW_AMPLIFY_DEFAULTS``; offset 1 is the paper's "scaled from 1 rather than 0".
    """
    layer: str | None = None
    offset: float = FLOW_AMPLIFY_DEFAULTS["offset"]
    scale: float = FLOW_AMPLIFY_DEFAULTS["scale"]
    resize: str = FLOW_AMPLIFY_DEFAULTS["resize"]
    clip_max: float = FLOW_AMPLIFY_DEFAULTS["clip_max"]
    normalize: str = FLOW_AMPLIFY_DEFAULTS["normalize"]

    def param(self) -> dict:
        return dict(offset=self.offset, scale=self.scale, resize=getattr(P.FlowAmplify, self.resize),
                    clip_max=self.clip_max, normalize=getattr(P.FlowAmplify, self.normalize))


def _add_head(n, features, backbone, num_classes: int, trainable_fc: bool, dropout: float):
    fc7 = add_fc_layers(n, features, backbone, trainable=trainable_fc, dropout=dropout)
    return add_fc(n, fc7, CLASSIFIER, num_classes, weight_filler=backbone.classifier_filler)


def spatial_net(backbone: str, num_classes: int, inputs, amplify: Amplify | None = None,
                freeze_convs: bool = True, dropout: float = 0.7, crop_size: int | None = None,
                name: str | None = None) -> caffe_pb2.NetParameter:
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


def temporal_net(backbone: str, num_classes: int, inputs, stack_length: int = STACK_LENGTH, dropout: float = 0.7,
                 freeze_convs: bool = False, crop_size: int | None = None,
                 name: str | None = None) -> caffe_pb2.NetParameter:
    """The temporal net: ``data_flow`` N x 2L x S x S (L = ``stack_length`` flow frames; 20 channels in the
    paper), trained from scratch as in Simonyan and Zisserman. Arguments as ``spatial_net``."""
    net = get_backbone(backbone)
    crop = crop_size or net.crop_size
    n = caffe.NetSpec()
    added = add_inputs(n, inputs, ["flow"], crop, stack_length)
    features = add_conv_tower(n, added.tops["flow"], net, trainable=not freeze_convs)
    scores = _add_head(n, features, net, num_classes, True, dropout)
    add_outputs(n, scores, added.label)
    proto = added.finish(n.to_proto())
    proto.name = name or f"{backbone}_temporal"
    return proto
