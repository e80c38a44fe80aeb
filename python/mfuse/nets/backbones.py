"""Backbones: the conv towers and fc6/fc7 of CNN-M-2048, VGG19 and a tiny CPU net, as NetSpec builders.

Layer names and parameter shapes equal those of the published ImageNet models (``VGG_CNN_M_2048`` of
Chatfield et al. 2014, ``VGG_ILSVRC_19_layers`` of Simonyan and Zisserman 2014), so ``caffe train -weights
<imagenet>.caffemodel`` copies conv1..conv5, fc6 and fc7 into a net built here. The classifier is never
called ``fc8``: its shape differs from ImageNet's 1000 classes (see ``CLASSIFIER``).

Spatial sizes for a crop of side S (Caffe rounds convolutions down and poolings up):

- ``cnn_m_2048``, S = 224: conv1 109, pool1 54, conv2 26, pool2 13, conv3..conv5 13 x 13, pool5 6 x 6;
- ``vgg19``, S = 224: conv5_4 14 x 14, pool5 7 x 7;
- ``tiny``, S = 64: conv1 30, pool1 15, conv2 13, conv3..conv5 13 x 13, pool5 6 x 6 (CNN-M's conv5 and pool5
  sizes from a 64 x 64 crop: no pool2, an unpadded conv2).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from caffe import layers as L
from caffe import params as P

from mfuse.conventions import CROP_SIZE

#: Name of the classification layer of every stream net (not ``fc8``: ImageNet's fc8 has 1000 outputs).
CLASSIFIER = "fc8_action"

#: Parameter specs of a learnable layer (weights, bias): Caffe's usual 1/2 learning-rate multipliers.
TRAINABLE = (dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0))
#: Parameter specs of a frozen layer: no update, no weight decay.
FROZEN = (dict(lr_mult=0, decay_mult=0), dict(lr_mult=0, decay_mult=0))


@dataclass(frozen=True)
class Pool:
    """A max pooling after a conv stage: Caffe layer ``name``, square ``kernel``, ``stride``."""
    name: str
    kernel: int
    stride: int


@dataclass(frozen=True)
class ConvStage:
    """One convolution with its ReLU, optional LRN and optional pooling, named as in the published model."""
    conv: str
    num_output: int
    kernel: int
    relu: str
    stride: int = 1
    pad: int = 0
    norm: str | None = None
    pool: Pool | None = None


@dataclass(frozen=True)
class FcStage:
    """An inner product with its ReLU and dropout (``relu``/``drop`` layer names)."""
    fc: str
    num_output: int
    relu: str
    drop: str


@dataclass(frozen=True)
class Backbone:
    """A conv tower plus fc6/fc7.

    Attributes:
        name: key in ``BACKBONES``.
        convs: conv stages, first to last; the last one is the layer the paper amplifies.
        fcs: fc6, fc7.
        crop_size: default side of the square input crop.
        lrn: ``lrn_param`` of the norm layers (Caffe's alpha, i.e. already multiplied by local_size).
        conv_filler, fc_filler, fc_bias_filler: fillers of layers trained from scratch (the published weights
            replace them when a caffemodel is given).
        input_scale: when set, a ``Power`` layer ``input_scale`` multiplies the (mean-subtracted) input by it
            before conv1; in the net itself, so training, testing and deploy agree. The published models
            take raw pixel ranges (None); the tiny backbone, trained from scratch with MSRA fillers,
            diverges to a constant output on +-128 inputs and learns with 1/64.
        classifier_filler: filler of the classification layer put after fc7 (``fc8_action``, ``cons_fc8``,
            the pretraining ``fc8``). N(0, 0.01) as the published recipes; the tiny backbone's fc7 is so
            narrow that it starves the tower of gradient (the loss stays at chance), Xavier does not.
    """
    name: str
    convs: tuple[ConvStage, ...]
    fcs: tuple[FcStage, ...]
    crop_size: int
    lrn: dict[str, float]
    conv_filler: dict[str, object]
    fc_filler: dict[str, object]
    fc_bias_filler: dict[str, object]
    input_scale: float | None = None
    classifier_filler: dict[str, object] = field(default_factory=lambda: dict(type="gaussian", std=0.01))

    @property
    def last_conv(self) -> str:
        return self.convs[-1].conv

    @property
    def conv_names(self) -> tuple[str, ...]:
        return tuple(stage.conv for stage in self.convs)

    @property
    def fc_names(self) -> tuple[str, ...]:
        return tuple(stage.fc for stage in self.fcs)

    def spatial_sizes(self, crop_size: int) -> dict[str, int]:
        """Side of every conv and pool output for a square input of side ``crop_size``.

        Uses Caffe's rules: convolution ``floor((s + 2 pad - k) / stride) + 1``, pooling (no padding)
        ``ceil((s - k) / stride) + 1``.

        Raises:
            ValueError: if the crop is too small for some layer.
        """
        sizes, side = {}, crop_size
        for stage in self.convs:
            side = (side + 2 * stage.pad - stage.kernel) // stage.stride + 1
            self._check_side(stage.conv, side, crop_size)
            sizes[stage.conv] = side
            if stage.pool is not None:
                side = int(math.ceil((side - stage.pool.kernel) / stage.pool.stride)) + 1
                self._check_side(stage.pool.name, side, crop_size)
                sizes[stage.pool.name] = side
        return sizes

    def _check_side(self, layer: str, side: int, crop_size: int) -> None:
        if side < 1:
            raise ValueError(f"backbone {self.name}: a {crop_size}x{crop_size} crop is too small, "
                             f"layer {layer} would have side {side}")


def _lrn() -> dict[str, float]:
    # Chatfield et al.'s LRN, written as in the published CNN-M-2048 prototxt.
    return dict(local_size=5, alpha=0.0005, beta=0.75, k=2)


def _vgg19_convs() -> tuple[ConvStage, ...]:
    stages = []
    for block, (width, depth) in enumerate([(64, 2), (128, 2), (256, 4), (512, 4), (512, 4)], start=1):
        for i in range(1, depth + 1):
            pool = Pool(f"pool{block}", 2, 2) if i == depth else None
            stages.append(ConvStage(f"conv{block}_{i}", width, 3, f"relu{block}_{i}", pad=1, pool=pool))
    return tuple(stages)


def _fcs(fc6: int, fc7: int) -> tuple[FcStage, ...]:
    return (FcStage("fc6", fc6, "relu6", "drop6"), FcStage("fc7", fc7, "relu7", "drop7"))


_MSRA = dict(type="msra")
_FC_GAUSSIAN = dict(type="gaussian", std=0.005)

BACKBONES: dict[str, Backbone] = {
    # Chatfield et al. 2014 (BMVC), "CNN-M-2048"; the "basic" net of the paper and of Simonyan and Zisserman's
    # two-stream nets.
    "cnn_m_2048": Backbone(
        name="cnn_m_2048",
        convs=(
            ConvStage("conv1", 96, 7, "relu1", stride=2, norm="norm1", pool=Pool("pool1", 3, 2)),
            ConvStage("conv2", 256, 5, "relu2", stride=2, pad=1, norm="norm2", pool=Pool("pool2", 3, 2)),
            ConvStage("conv3", 512, 3, "relu3", pad=1),
            ConvStage("conv4", 512, 3, "relu4", pad=1),
            ConvStage("conv5", 512, 3, "relu5", pad=1, pool=Pool("pool5", 3, 2)),
        ),
        fcs=_fcs(4096, 2048), crop_size=CROP_SIZE, lrn=_lrn(), conv_filler=_MSRA, fc_filler=_FC_GAUSSIAN,
        fc_bias_filler=dict(type="constant", value=0.1)),
    # Simonyan and Zisserman 2015 (ICLR), configuration E, "VGG_ILSVRC_19_layers".
    "vgg19": Backbone(
        name="vgg19", convs=_vgg19_convs(), fcs=_fcs(4096, 4096), crop_size=CROP_SIZE, lrn=_lrn(),
        conv_filler=_MSRA, fc_filler=_FC_GAUSSIAN, fc_bias_filler=dict(type="constant", value=0.1)),
    # The CNN-M structure shrunk to train on 2 CPU cores in minutes, for the synthetic demo and the tests:
    # CNN-M's layer names and its 13 x 13 conv5 / 6 x 6 pool5 from 64 x 64 crops (pool2 dropped, conv2
    # unpadded), so that conv-level fusion and amplification have CNN-M's spatial grid.
    "tiny": Backbone(
        name="tiny",
        convs=(
            ConvStage("conv1", 16, 5, "relu1", stride=2, norm="norm1", pool=Pool("pool1", 3, 2)),
            ConvStage("conv2", 32, 3, "relu2", norm="norm2"),
            ConvStage("conv3", 32, 3, "relu3", pad=1),
            ConvStage("conv4", 32, 3, "relu4", pad=1),
            ConvStage("conv5", 32, 3, "relu5", pad=1, pool=Pool("pool5", 3, 2)),
        ),
        fcs=_fcs(128, 128), crop_size=64, lrn=_lrn(), conv_filler=_MSRA, fc_filler=_MSRA,
        fc_bias_filler=dict(type="constant", value=0.0), input_scale=1.0 / 64,
        classifier_filler=dict(type="xavier")),
}


def get_backbone(name: str) -> Backbone:
    """Returns the backbone called ``name`` (a key of ``BACKBONES``); ValueError names the choices."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    return BACKBONES[name]


#: A function inserted into a tower: receives the top after a layer, returns the top the tower goes on from.
Hook = Callable[[object], object]


def add_conv_tower(n, bottom, backbone: Backbone, prefix: str = "", trainable: bool = True,
                   hooks: dict[str, Hook] | None = None):
    """Adds conv1 .. pool5 of ``backbone`` to the NetSpec ``n``.

    Layers and tops are named ``prefix + <published name>``; ReLUs are in place, as in the published models.

    Args:
        n: ``caffe.NetSpec`` to add to.
        bottom: input top, N x C x S x S.
        backbone: the tower.
        prefix: prepended to every layer and top name (``"rgb_"`` in the fusion nets).
        trainable: False freezes every conv layer (``lr_mult: 0, decay_mult: 0``).
        hooks: maps an unprefixed layer name of the tower (e.g. ``"conv5"`` or ``"relu5"``) to a function
            called with the top right after that layer; the tower continues from the top it returns. This is
            how ``FlowAmplify`` goes between conv5 and relu5.

    Returns:
        the tower's output top (pool5), N x C5 x s x s.
    """
    hooks = dict(hooks or {})
    known = {name for stage in backbone.convs
             for name in (stage.conv, stage.relu, stage.norm, stage.pool and stage.pool.name) if name}
    unknown = sorted(set(hooks) - known)
    if unknown:
        raise ValueError(f"backbone {backbone.name} has no layer(s) {unknown} to hook; layers: {sorted(known)}")

    def hooked(layer, top):
        return hooks[layer](top) if layer in hooks else top

    top = bottom
    if backbone.input_scale is not None:
        n[prefix + "input_scale"] = L.Power(top, power_param=dict(scale=backbone.input_scale))
        top = n[prefix + "input_scale"]
    param = TRAINABLE if trainable else FROZEN
    for stage in backbone.convs:
        n[prefix + stage.conv] = L.Convolution(
            top, num_output=stage.num_output, kernel_size=stage.kernel, stride=stage.stride, pad=stage.pad,
            weight_filler=backbone.conv_filler, bias_filler=dict(type="constant", value=0), param=list(param))
        top = hooked(stage.conv, n[prefix + stage.conv])
        n[prefix + stage.relu] = L.ReLU(top, in_place=True)
        top = hooked(stage.relu, n[prefix + stage.relu])
        if stage.norm:
            n[prefix + stage.norm] = L.LRN(top, **backbone.lrn)
            top = hooked(stage.norm, n[prefix + stage.norm])
        if stage.pool:
            n[prefix + stage.pool.name] = L.Pooling(top, pool=P.Pooling.MAX, kernel_size=stage.pool.kernel,
                                                   stride=stage.pool.stride)
            top = hooked(stage.pool.name, n[prefix + stage.pool.name])
    return top


def add_fc(n, bottom, name: str, num_output: int, trainable: bool = True,
           weight_filler: dict[str, object] | None = None, bias_filler: dict[str, object] | None = None):
    """Adds one InnerProduct layer ``name`` (a top of the same name) and returns its top."""
    n[name] = L.InnerProduct(bottom, num_output=num_output, param=list(TRAINABLE if trainable else FROZEN),
                             weight_filler=weight_filler or dict(type="gaussian", std=0.01),
                             bias_filler=bias_filler or dict(type="constant", value=0))
    return n[name]


def add_relu_dropout(n, bottom, relu: str, drop: str | None, dropout: float):
    """Adds an in-place ReLU and (when ``drop`` is given and ``dropout`` > 0) an in-place Dropout."""
    n[relu] = L.ReLU(bottom, in_place=True)
    top = n[relu]
    if drop and dropout > 0:
        n[drop] = L.Dropout(top, dropout_ratio=dropout, in_place=True)
        top = n[drop]
    return top


def add_fc_layers(n, bottom, backbone: Backbone, prefix: str = "", trainable: bool = True,
                  dropout: float = 0.7):
    """Adds fc6 and fc7 of ``backbone`` (each with ReLU and dropout) and returns the fc7 top (N x D7)."""
    top = bottom
    for stage in backbone.fcs:
        top = add_fc(n, top, prefix + stage.fc, stage.num_output, trainable, backbone.fc_filler,
                     backbone.fc_bias_filler)
        top = add_relu_dropout(n, top, prefix + stage.relu, prefix + stage.drop, dropout)
    return top

