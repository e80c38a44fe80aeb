"""Does a pretrained caffemodel fit the nets? Checked from the files alone, before anything is trained.

- :func:`param_shapes`: the parameter blob shapes of every layer of a net prototxt, inferred with Caffe's shape
  rules (no ``caffe.Net`` is built, so a VGG19 net costs nothing);
- :func:`stored_shapes`: the blob shapes a caffemodel declares, read with ``caffe_pb2`` (new ``layer`` and legacy
  V1 ``layers`` formats) without loading it into a net;
- :func:`pretrained_problems`: every backbone layer a stream net takes from the model must be in it with a shape
  that fits, as ``mfuse.surgery`` copies them (equal shapes, legacy 4-D shapes up to leading 1s, and for the
  temporal net's first conv with ``cross_modality`` the 3 RGB input channels).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from caffe.proto import caffe_pb2
from google.protobuf import text_format
from google.protobuf.message import DecodeError

from mfuse.nets.inputs import input_shapes

Shape = tuple[int, ...]
#: Layers whose top has the shape of their (first) bottom and that hold no parameters.
_SAME_SHAPE = {"ReLU", "Dropout", "LRN", "Softmax", "Power", "FlowAmplify", "Eltwise", "Sigmoid", "TanH",
               "Split", "Silence"}


class ShapeError(ValueError):
    """A prototxt whose shapes cannot be inferred, or a caffemodel that cannot be read."""


def _pair(values: Sequence[int], single: int | None, default: int) -> tuple[int, int]:
    if single:
        return single, single
    values = list(values) or [default]
    return (values[0], values[-1])


def _conv(layer, shape: Shape) -> tuple[Shape, list[Shape]]:
    p = layer.convolution_param
    n, c, h, w = shape
    kh, kw = (p.kernel_h, p.kernel_w) if p.kernel_h else _pair(p.kernel_size, None, 1)
    sh, sw = (p.stride_h, p.stride_w) if p.stride_h else _pair(p.stride, None, 1)
    ph, pw = (p.pad_h, p.pad_w) if p.pad_h or p.pad_w else _pair(p.pad, None, 0)
    dh, dw = _pair(p.dilation, None, 1)
    group = p.group or 1
    out_h = (h + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    out_w = (w + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    params = [(p.num_output, c // group, kh, kw)] + ([(p.num_output,)] if p.bias_term else [])
    return (n, p.num_output, out_h, out_w), params


def _pool(layer, shape: Shape) -> Shape:
    p = layer.pooling_param
    n, c, h, w = shape
    if p.global_pooling:
        return n, c, 1, 1
    kh, kw = (p.kernel_h, p.kernel_w) if p.kernel_h else (p.kernel_size, p.kernel_size)
    sh, sw = (p.stride_h, p.stride_w) if p.stride_h else (p.stride, p.stride)
    ph, pw = (p.pad_h, p.pad_w) if p.pad_h or p.pad_w else (p.pad, p.pad)
    sides = []
    for size, k, s, pad in ((h, kh, sh, ph), (w, kw, sw, pw)):
        side = int(math.ceil((size + 2 * pad - k) / s)) + 1
        if pad and (side - 1) * s >= size + pad:   # Caffe: the last pooling must start inside the image
            side -= 1
        sides.append(side)
    return n, c, sides[0], sides[1]


def _inner_product(layer, shape: Shape) -> tuple[Shape, list[Shape]]:
    p = layer.inner_product_param
    axis = p.axis if p.HasField("axis") else 1
    axis = axis % len(shape)
    inputs = int(math.prod(shape[axis:]))
    weight = (inputs, p.num_output) if p.transpose else (p.num_output, inputs)
    return shape[:axis] + (p.num_output,), [weight] + ([(p.num_output,)] if p.bias_term else [])


def _multiplicative_fusion(layer, bottoms: list[Shape]) -> tuple[Shape, list[Shape]]:
    """The fork's ``MultiplicativeFusion``: per stream a K x C_s (x 1 x 1 on maps) weight, and a K bias when
    learnable; top N x K (x H x W, or 1 x 1 with ``spatial: DOT``)."""
    p = layer.multiplicative_fusion_param
    k = p.num_output
    params = []
    for bottom in bottoms:
        params.append((k, bottom[1]) + ((1, 1) if len(bottom) == 4 else ()))
        if p.bias_learnable:
            params.append((k,))
    top = (bottoms[0][0], k) + tuple(bottoms[0][2:])
    if len(top) == 4 and p.spatial == caffe_pb2.MultiplicativeFusionParameter.DOT:
        top = top[:2] + (1, 1)
    return top, params


def read_prototxt(path: str | Path) -> caffe_pb2.NetParameter:
    net = caffe_pb2.NetParameter()
    try:
        text_format.Merge(Path(path).read_text(), net)
    except (OSError, text_format.ParseError) as error:
        raise ShapeError(f"{path}: not a readable net prototxt ({error})") from None
    return net


def param_shapes(net: caffe_pb2.NetParameter, source: str = "the net") -> dict[str, list[Shape]]:
    """``{layer: [blob shape, ...]}`` of every layer with parameters, in net order (Caffe's shape rules for
    Convolution, Pooling, InnerProduct, Concat, the fork's MultiplicativeFusion and the shape-keeping layers;
    ShapeError names any other)."""
    blobs: dict[str, Shape] = {name: tuple(shape) for name, shape in input_shapes(net).items()}
    params: dict[str, list[Shape]] = {}
    for layer in net.layer:
        if layer.type == "Input":
            continue
        try:
            bottoms = [blobs[name] for name in layer.bottom]
        except KeyError as missing:
            raise ShapeError(f"{source}: layer {layer.name} reads blob {missing} that nothing makes") from None
        if layer.type == "Convolution":
            top, params[layer.name] = _conv(layer, bottoms[0])
        elif layer.type == "InnerProduct":
            top, params[layer.name] = _inner_product(layer, bottoms[0])
        elif layer.type == "MultiplicativeFusion":
            top, params[layer.name] = _multiplicative_fusion(layer, bottoms)
        elif layer.type == "Pooling":
            top = _pool(layer, bottoms[0])
        elif layer.type == "Concat":
            axis = layer.concat_param.axis if layer.concat_param.HasField("axis") else 1
            top = bottoms[0][:axis] + (sum(b[axis] for b in bottoms),) + bottoms[0][axis + 1:]
        elif layer.type in _SAME_SHAPE:
            top = bottoms[0] if bottoms else ()
        else:
            raise ShapeError(f"{source}: cannot infer shapes through layer {layer.name} of type {layer.type}")
        for name in layer.top:
            blobs[name] = top
    return params


@dataclass(frozen=True)
class StoredLayer:
    """A caffemodel layer's declared blob shapes, whether they are legacy 4-D ones, and the values each holds."""
    shapes: list[Shape]
    legacy: bool
    counts: list[int]


def stored_shapes(caffemodel: str | Path) -> dict[str, StoredLayer]:
    """The layers with blobs of a caffemodel, read with ``caffe_pb2`` (no net is built); ShapeError when it is
    missing or not a Caffe NetParameter."""
    path = Path(caffemodel)
    if not path.is_file():
        raise ShapeError(f"{path} does not exist")
    model = caffe_pb2.NetParameter()
    try:
        model.ParseFromString(path.read_bytes())
    except DecodeError as error:
        raise ShapeError(f"{path} is not a caffemodel (Caffe NetParameter): {error}") from None
    layers = {}
    for layer in list(model.layer) + list(model.layers):
        if not len(layer.blobs):
            continue
        shapes, legacy = [], False
        for blob in layer.blobs:
            if blob.HasField("shape"):
                shapes.append(tuple(blob.shape.dim))
            else:
                shapes.append((blob.num, blob.channels, blob.height, blob.width))
                legacy = True
        layers[layer.name] = StoredLayer(shapes, legacy, [len(b.data) or len(b.double_data) for b in layer.blobs])
    if not layers:
        raise ShapeError(f"{path} holds no layer with weights: is it a caffemodel (not a prototxt)?")
    return layers


def _strip(shape: Shape) -> Shape:
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return shape


def fits(stored: Shape, wanted: Shape, legacy: bool, cross_modality: bool = False) -> bool:
    """Whether ``mfuse.surgery`` copies a stored blob into a target blob (see the module docstring)."""
    if stored == wanted or (legacy and _strip(stored) == _strip(wanted)):
        return True
    return (cross_modality and len(stored) == 4 == len(wanted) and stored[1] == 3
            and (stored[0],) + stored[2:] == (wanted[0],) + wanted[2:])


def _text(shapes: Sequence[Shape]) -> str:
    return ", ".join("x".join(map(str, s)) for s in shapes)


def pretrained_problems(model: Mapping[str, StoredLayer], expected: Mapping[str, list[Shape]], layers: Sequence[str],
                        net_label: str, cross_modality_layer: str | None = None) -> list[str]:
    """One sentence per backbone layer of ``layers`` that the model lacks or whose shapes do not fit the
    ``expected`` shapes of the net called ``net_label``."""
    problems = []
    for name in layers:
        wanted = expected[name]
        if name not in model:
            problems.append(f"has no layer {name} (the {net_label} net expects {_text(wanted)})")
            continue
        stored = model[name]
        values = [(count, math.prod(shape)) for count, shape in zip(stored.counts, stored.shapes)]
        if len(stored.shapes) != len(wanted) or not all(
                fits(s, w, stored.legacy, name == cross_modality_layer) for s, w in zip(stored.shapes, wanted)):
            problems.append(f"layer {name} holds {_text(stored.shapes)}, the {net_label} net expects {_text(wanted)}")
        elif any(count and count != size for count, size in values):
            problems.append(f"layer {name} holds {[c for c, _ in values]} values for shapes {_text(stored.shapes)}")
    return problems
