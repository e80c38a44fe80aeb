"""Two-stream fusion nets (Sec. 4 of the paper): baselines A and B, multiplicative fusion of conv5 or fc7.

Both towers live in one net with prefixed names (``rgb_conv1`` ... from the spatial net, ``flow_conv1`` ...
from the temporal net) so ``mfuse.surgery.init_fusion`` can fill them; every tower layer is frozen
(``lr_mult: 0``), only the layers after the fusion are trained, as in the paper. Layer names after the fusion
follow the authors' code: ``cons_fc6``, ``cons_fc7``, ``cons_fc8`` (the classifier).

==============  ============================================================================================
kind            after the towers (conv-level kinds fuse the pool5 maps, N x C x s x s, of both towers)
==============  ============================================================================================
``baseline_a``  Concat(pool5) -> cons_fc6 -> cons_fc7 -> cons_fc8
``baseline_b``  Concat(pool5) -> 1x1 conv ``cons_conv`` (K) + ReLU -> cons_fc6 -> cons_fc7 -> cons_fc8
``mfuse_conv5`` MultiplicativeFusion(pool5, K = 2048) -> cons_fc6 (4096) -> cons_fc7 (4096) -> cons_fc8
``mfuse_fc7``   towers up to fc7 -> MultiplicativeFusion(fc7, K = 4096) -> dropout -> cons_fc8
==============  ============================================================================================

``MultiplicativeFusion`` computes ``prod_s act(W_s x_s + b_s)`` with ``b_s`` fixed at ``bias_value`` (1: the
paper's gamma = delta = 1); ``activation`` NONE is the paper's formula ``(A alpha + 1) * (B beta + 1)``, RELU
the authors' code (a ReLU after each projection).
"""
from __future__ import annotations

from dataclasses import dataclass

import caffe
from caffe import layers as L
from caffe import params as P
from caffe.proto import caffe_pb2

from mfuse.conventions import FUSION_KINDS, STACK_LENGTH
from mfuse.nets.backbones import (TRAINABLE, Backbone, add_conv_tower, add_fc, add_fc_layers, add_relu_dropout,
                                  get_backbone)
from mfuse.nets.inputs import add_inputs, add_outputs

#: The fusion net's classifier (the authors' name).
FUSION_CLASSIFIER = "cons_fc8"
#: Tower prefixes: the spatial tower, then the temporal tower.
PREFIXES = ("rgb_", "flow_")


@dataclass(frozen=True)
class Fusion:
    """What to fuse and how.

    Attributes:
        kind: one of ``FUSION_KINDS``.
        num_output: K of the fusion (or of baseline B's 1x1 conv); None: 2048, or 4096 for ``mfuse_fc7``.
        activation: ``"NONE"`` (the paper's formula) or ``"RELU"`` (the authors' code).
        spatial: ``"ELEMENTWISE"`` (the paper) or ``"DOT"`` (sum over positions).
        bias_value: gamma = delta (1 in the paper).
        bias_learnable: learn a K-vector bias per stream instead (not the paper).
        head: widths of the FC layers between the fusion and ``cons_fc8`` (at most 2: cons_fc6, cons_fc7);
            None: (4096, 4096) for conv-level kinds, () for ``mfuse_fc7``.
    """
    kind: str
    num_output: int | None = None
    activation: str = "NONE"
    spatial: str = "ELEMENTWISE"
    bias_value: float = 1.0
    bias_learnable: bool = False
    head: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.kind not in FUSION_KINDS:
            raise ValueError(f"unknown fusion kind {self.kind!r}; choose one of {list(FUSION_KINDS)}")
        if self.activation not in ("NONE", "RELU"):
            raise ValueError(f"fusion activation must be NONE or RELU, got {self.activation!r}")
        if self.head is not None and len(self.head) > 2:
            raise ValueError(f"at most 2 FC layers (cons_fc6, cons_fc7) before cons_fc8, got head={self.head}")

    @property
    def fuses_fc7(self) -> bool:
        return self.kind == "mfuse_fc7"

    @property
    def k(self) -> int:
        return self.num_output or (4096 if self.fuses_fc7 else 2048)

    @property
    def head_widths(self) -> tuple[int, ...]:
        if self.head is not None:
            return tuple(self.head)
        return () if self.fuses_fc7 else (4096, 4096)

    def layer_param(self) -> dict:
        """``multiplicative_fusion_param`` of the fusion layer."""
        return dict(num_output=self.k, weight_filler=dict(type="xavier"), bias_value=self.bias_value,
                    bias_learnable=self.bias_learnable,
                    activation=getattr(P.MultiplicativeFusion, self.activation),
                    spatial=getattr(P.MultiplicativeFusion, self.spatial))

    def param_specs(self, num_streams: int = 2) -> list:
        """``param`` specs: per stream its weight, then its bias when learnable (the layer's blob order)."""
        per_stream = list(TRAINABLE) if self.bias_learnable else [TRAINABLE[0]]
        return per_stream * num_streams


def tower_output_side(backbone: Backbone, crop_size: int) -> int:
    """Side of the pool5 map of ``backbone`` for a ``crop_size`` crop."""
    last = backbone.convs[-1]
    return backbone.spatial_sizes(crop_size)[last.pool.name if last.pool else last.conv]


def _check_aligned(rgb: Backbone, flow: Backbone, crop_size: int) -> None:
    sides = tower_output_side(rgb, crop_size), tower_output_side(flow, crop_size)
    if sides[0] != sides[1]:
        raise ValueError(f"conv-level fusion needs maps of one size: the {rgb.name} tower gives {sides[0]}x{sides[0]}"
                         f" and the {flow.name} tower {sides[1]}x{sides[1]} for {crop_size}x{crop_size} crops; "
                         "use the same backbone for both streams or fuse fc7")


def _add_fusion(n, rgb_features, flow_features, fusion: Fusion):
    if fusion.kind in ("baseline_a", "baseline_b"):
        n.concat = L.Concat(rgb_features, flow_features, axis=1)
        top = n.concat
        if fusion.kind == "baseline_b":
            n.cons_conv = L.Convolution(top, num_output=fusion.k, kernel_size=1, param=list(TRAINABLE),
                                        weight_filler=dict(type="xavier"),
                                        bias_filler=dict(type="constant", value=0))
            n.cons_relu = L.ReLU(n.cons_conv, in_place=True)
            top = n.cons_relu
        return top
    n.mfuse = L.MultiplicativeFusion(rgb_features, flow_features, param=fusion.param_specs(),
                                     multiplicative_fusion_param=fusion.layer_param())
    return n.mfuse


def fusion_net(rgb_backbone: str, flow_backbone: str, num_classes: int, inputs, fusion: Fusion,
               dropout: float = 0.7, stack_length: int = STACK_LENGTH, crop_size: int | None = None,
               name: str | None = None) -> caffe_pb2.NetParameter:
    """A two-stream fusion net.

    Inputs ``data_rgb`` N x 3 x S x S, ``data_flow`` N x 2L x S x S (one crop for both) and ``label``.

    Args:
        rgb_backbone, flow_backbone: backbones of the spatial and the temporal tower.
        num_classes: outputs of ``cons_fc8``.
        inputs: ``VideoData`` / ``DummyInputs`` / ``DeployInputs``.
        fusion: what to fuse and how.
        dropout: ratio after every trained FC layer, and in the towers' fc6/fc7 (0.7, as the authors).
        stack_length: flow frames per stack.
        crop_size: S; the spatial backbone's default when None.
        name: the net's name.

    Raises:
        ValueError: for conv-level fusion of towers whose pool5 maps differ in size.
    """
    rgb, flow = get_backbone(rgb_backbone), get_backbone(flow_backbone)
    crop = crop_size or rgb.crop_size
    if not fusion.fuses_fc7:
        _check_aligned(rgb, flow, crop)
    n = caffe.NetSpec()
    added = add_inputs(n, inputs, ["rgb", "flow"], crop, stack_length)
    features = []
    for prefix, backbone, modality in zip(PREFIXES, (rgb, flow), ("rgb", "flow")):
        top = add_conv_tower(n, added.tops[modality], backbone, prefix=prefix, trainable=False)
        if fusion.fuses_fc7:
            top = add_fc_layers(n, top, backbone, prefix=prefix, trainable=False, dropout=dropout)
        features.append(top)
    top = _add_fusion(n, *features, fusion)
    if not fusion.head_widths:
        n.cons_drop = L.Dropout(top, dropout_ratio=dropout, in_place=True)
        top = n.cons_drop
    for index, width in enumerate(fusion.head_widths, start=6):
        # The published backbones' fc filler (gaussian 0.005, bias 0.1: the authors' cons_fc*); the tiny
        # backbone's MSRA, without which its 64-wide head never leaves chance level in the demo's schedule.
        top = add_fc(n, top, f"cons_fc{index}", width, weight_filler=rgb.fc_filler,
                     bias_filler=dict(type="constant", value=0.1) if rgb.fc_filler == dict(type="gaussian", std=0.005)
                     else rgb.fc_bias_filler)
        top = add_relu_dropout(n, top, f"cons_relu{index}", f"cons_drop{index}", dropout)
    scores = add_fc(n, top, FUSION_CLASSIFIER, num_classes, weight_filler=rgb.classifier_filler)
    add_outputs(n, scores, added.label)
    proto = added.finish(n.to_proto())
    backbones = rgb_backbone if rgb_backbone == flow_backbone else f"{rgb_backbone}_{flow_backbone}"
    proto.name = name or f"{backbones}_{fusion.kind}"
    return proto
