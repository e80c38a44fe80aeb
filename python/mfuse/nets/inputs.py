"""Net inputs: the video data layer (train_val), a DummyData stand-in (shape checks), Input layers (deploy).

Every net names its input tops after the modality: ``data_rgb`` (N x 3 x S x S, BGR minus the mean),
``data_flow`` (N x 2L x S x S, x1, y1, ..., xL, yL minus 128; L = ``stack_length``, 10 in the paper),
``data_mag`` (N x 1 x S x S, raw magnitude 0..255) and ``label`` (N) — see docs/conventions.md.

The train_val nets read data with ``mfuse.layers.video_data.VideoDataLayer`` (a ``Python`` layer), one in each
phase; its ``param_str`` is the JSON of ``VideoData.param_dict``. Paths in it are used as written: the
committed prototxts say ``data/<dataset>``, relative to the repository root, where ``caffe train`` is run.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import caffe
from caffe import layers as L
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from mfuse.conventions import FLOW_MEAN, INPUT_BLOBS, LABEL_BLOB, MODALITIES, RGB_MEAN, STACK_LENGTH, input_channels
from mfuse.sampling import InputGeometry


def top_name(modality: str) -> str:
    """The input top of a modality: ``data_rgb``, ``data_flow`` or ``data_mag``."""
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; choose from {list(MODALITIES)}")
    return INPUT_BLOBS[modality]


def input_shape(modality: str, batch_size: int, crop_size: int, stack_length: int) -> list[int]:
    """N x C x S x S of a modality's input: C = 3 (rgb), 2 * stack_length (flow), 1 (mag)."""
    return [batch_size, input_channels(modality, stack_length), crop_size, crop_size]


def input_shapes(net: caffe_pb2.NetParameter) -> dict[str, list[int]]:
    """``{blob: shape}`` of a net's inputs: ``Input`` layers and the legacy ``input``/``input_shape``/``input_dim``
    fields."""
    shapes = {}
    if net.input:
        legacy = [list(net.input_dim[4 * i:4 * i + 4]) for i in range(len(net.input_dim) // 4)]
        given = [list(shape.dim) for shape in net.input_shape] or legacy
        shapes.update(zip(net.input, given))
    for layer in net.layer:
        if layer.type == "Input":
            specs = [list(shape.dim) for shape in layer.input_param.shape]
            specs = specs * len(layer.top) if len(specs) == 1 else specs
            shapes.update(zip(layer.top, specs))
    return shapes


def read_input_geometry(deploy_prototxt: str | Path) -> InputGeometry:
    """The input geometry (modalities, crop side, flow stack length) a deploy prototxt declares, without
    instantiating the net; ValueError naming the file when it is unreadable or its inputs do not fit
    ``mfuse.conventions`` (see :class:`mfuse.sampling.InputGeometry`)."""
    path = Path(deploy_prototxt)
    net = caffe_pb2.NetParameter()
    try:
        text_format.Merge(path.read_text(), net)
    except (OSError, text_format.ParseError) as error:
        raise ValueError(f"{path}: not a readable net prototxt ({error})") from error
    return InputGeometry.from_blob_shapes(input_shapes(net), str(path))


@dataclass(frozen=True)
class VideoData:
    """The train_val input: ``VideoDataLayer`` in the TRAIN phase (random crop, mirror, shuffle) and in the
    TEST phase (centre crop, no mirror, no shuffle, subset test).

    Attributes:
        source: dataset directory (LMDBs or frame folders), as the data layer will see it.
        storage: ``"lmdb"`` or ``"folder"``.
        split: 1, 2 or 3.
        batch_size, test_batch_size: samples per forward pass in each phase.
        seed: sampling seed of the TRAIN phase (the TEST phase uses it too).
        rgb_mean, flow_mean: subtracted by the layer (BGR mean; flow quantisation centre).
    """
    source: str
    batch_size: int
    test_batch_size: int
    storage: str = "lmdb"
    split: int = 1
    seed: int = 1
    rgb_mean: tuple[float, float, float] = RGB_MEAN
    flow_mean: float = FLOW_MEAN

    def param_dict(self, subset: str, modalities: Sequence[str], crop_size: int, stack_length: int) -> dict:
        """The layer's ``param_str`` keys for ``subset`` ("train" or "test")."""
        train = subset == "train"
        return {"source": self.source, "storage": self.storage, "split": self.split, "subset": subset,
                "modalities": list(modalities), "batch_size": self.batch_size if train else self.test_batch_size,
                "new_length": stack_length, "crop_size": crop_size, "mirror": train, "shuffle": train,
                "seed": self.seed, "rgb_mean": list(self.rgb_mean), "flow_mean": self.flow_mean}


@dataclass(frozen=True)
class DummyInputs:
    """A train_val net whose data layer is ``DummyData`` (zeros) of the same shapes: it can be instantiated
    without data or the Python layer, to check shapes."""
    batch_size: int


@dataclass(frozen=True)
class DeployInputs:
    """A deploy net: ``Input`` layers, no label, a ``Softmax`` top ``prob`` instead of the loss."""
    batch_size: int = 10


@dataclass
class AddedInputs:
    """What ``add_inputs`` made: the modality tops, the label top (None in deploy nets) and the layers to put
    into the net after ``to_proto`` (the TEST-phase data layer, which NetSpec cannot hold beside the TRAIN one).
    """
    tops: dict[str, object]
    label: object | None
    extra_layers: list[caffe_pb2.LayerParameter] = field(default_factory=list)

    def finish(self, net: caffe_pb2.NetParameter) -> caffe_pb2.NetParameter:
        """Inserts ``extra_layers`` right after the first layer of ``net`` (the TRAIN data layer)."""
        if self.extra_layers:
            layers = list(net.layer)
            del net.layer[:]
            net.layer.extend(layers[:1] + self.extra_layers + layers[1:])
        return net


def _video_data_layer(inputs: VideoData, subset: str, modalities: Sequence[str], crop_size: int,
                      stack_length: int, phase: int):
    param_str = json.dumps(inputs.param_dict(subset, modalities, crop_size, stack_length))
    return L.Python(name="data", module="mfuse.layers.video_data", layer="VideoDataLayer", param_str=param_str,
                    ntop=len(modalities) + 1, include=dict(phase=phase))


def add_inputs(n, inputs, modalities: Sequence[str], crop_size: int, stack_length: int = STACK_LENGTH) -> AddedInputs:
    """Adds the input layer(s) for ``modalities`` (tops in that order, then ``label``) to NetSpec ``n``.

    Args:
        n: ``caffe.NetSpec``.
        inputs: ``VideoData``, ``DummyInputs`` or ``DeployInputs``.
        modalities: subset of ``("rgb", "flow", "mag")``, in top order.
        crop_size: S.
        stack_length: flow frames per stack (the flow input has 2 * stack_length channels).
    """
    names = [top_name(m) for m in modalities]
    if isinstance(inputs, VideoData):
        tops = _video_data_layer(inputs, "train", modalities, crop_size, stack_length, caffe.TRAIN)
        test_spec = caffe.NetSpec()
        test_tops = _video_data_layer(inputs, "test", modalities, crop_size, stack_length, caffe.TEST)
        for name, top in zip(names + [LABEL_BLOB], test_tops):
            test_spec[name] = top
        extra = [test_spec.to_proto().layer[0]]
    elif isinstance(inputs, DummyInputs):
        shapes = [dict(dim=input_shape(m, inputs.batch_size, crop_size, stack_length)) for m in modalities]
        shapes.append(dict(dim=[inputs.batch_size]))
        tops = L.DummyData(name="data", shape=shapes, data_filler=[dict(type="constant", value=0)] * len(shapes),
                           ntop=len(shapes))
        extra = []
    elif isinstance(inputs, DeployInputs):
        for modality, name in zip(modalities, names):
            n[name] = L.Input(shape=dict(dim=input_shape(modality, inputs.batch_size, crop_size, stack_length)))
        return AddedInputs({m: n[name] for m, name in zip(modalities, names)}, None)
    else:
        raise TypeError(f"inputs must be VideoData, DummyInputs or DeployInputs, got {type(inputs).__name__}")
    for name, top in zip(names + [LABEL_BLOB], tops):
        n[name] = top
    return AddedInputs({m: n[name] for m, name in zip(modalities, names)}, n[LABEL_BLOB], extra)


def add_outputs(n, scores, label) -> None:
    """Adds the loss and TEST-phase accuracy (train_val, ``label`` given) or ``prob`` (deploy) on ``scores``."""
    if label is None:
        n.prob = L.Softmax(scores)
    else:
        n.loss = L.SoftmaxWithLoss(scores, label)
        n.accuracy = L.Accuracy(scores, label, include=dict(phase=caffe.TEST))
