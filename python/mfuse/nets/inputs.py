"""Net inputs: the video data layer (train_val), a DummyData stand-in (shape checks), Input layers (deploy).

Every net names its input tops after the modality: ``data_rgb`` (N x 3 x S x S, BGR minus the mean),
``data_flow`` (N x 2L x S x S, x1, y1, ..., xL, yL minus 128; L = ``new_length``, 10 in the paper),
``data_mag`` (N x 1 x S x S, raw magnitude 0..255) and ``label`` (N) — see docs/conventions.md.

The train_val nets read data with ``mfuse.layers.video_data.VideoDataLayer`` (a ``Python`` layer), one in each
phase; its ``param_str`` is the JSON of ``VideoData.param_dict``. Paths in it are used as written: the
committed prototxts say ``data/<dataset>``, relative to the repository root, where ``caffe train`` is run.
"""
import json
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import caffe
from caffe import layers as L
from caffe.proto import caffe_pb2

MODALITIES = ("rgb", "flow", "mag")


def top_name(modality: str) -> str:
    """The input top of a modality: ``data_rgb``, ``data_flow`` or ``data_mag``."""
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; choose from {list(MODALITIES)}")
    return f"data_{modality}"


def input_shape(modality: str, batch_size: int, crop_size: int, new_length: int) -> List[int]:
    """N x C x S x S of a modality's input: C = 3 (rgb), 2 * new_length (flow), 1 (mag)."""
    channels = {"rgb": 3, "flow": 2 * new_length, "mag": 1}[modality]
    return [batch_size, channels, crop_size, crop_size]


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
    rgb_mean: Tuple[float, float, float] = (104, 117, 123)
    flow_mean: float = 128

    def param_dict(self, subset: str, modalities: Sequence[str], crop_size: int, new_length: int) -> Dict:
        """The layer's ``param_str`` keys for ``subset`` ("train" or "test")."""
        train = subset == "train"
        return {"source": self.source, "storage": self.storage, "split": self.split, "subset": subset,
                "modalities": list(modalities), "batch_size": self.batch_size if train else self.test_batch_size,
                "new_length": new_length, "crop_size": crop_size, "mirror": train, "shuffle": train,
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
    tops: Dict[str, object]
    label: Optional[object]
    extra_layers: List[caffe_pb2.LayerParameter] = field(default_factory=list)

    def finish(self, net: caffe_pb2.NetParameter) -> caffe_pb2.NetParameter:
        """Inserts ``extra_layers`` right after the first layer of ``net`` (the TRAIN data layer)."""
        if self.extra_layers:
            layers = list(net.layer)
            del net.layer[:]
            net.layer.extend(layers[:1] + self.extra_layers + layers[1:])
        return net


def _video_data_layer(inputs: VideoData, subset: str, modalities: Sequence[str], crop_size: int,
                      new_length: int, phase: int):
    param_str = json.dumps(inputs.param_dict(subset, modalities, crop_size, new_length))
    return L.Python(name="data", module="mfuse.layers.video_data", layer="VideoDataLayer", param_str=param_str,
                    ntop=len(modalities) + 1, include=dict(phase=phase))


def add_inputs(n, inputs, modalities: Sequence[str], crop_size: int, new_length: int = 10) -> AddedInputs:
    """Adds the input layer(s) for ``modalities`` (tops in that order, then ``label``) to NetSpec ``n``.

    Args:
        n: ``caffe.NetSpec``.
        inputs: ``VideoData``, ``DummyInputs`` or ``DeployInputs``.
        modalities: subset of ``("rgb", "flow", "mag")``, in top order.
        crop_size: S.
        new_length: flow frames per stack (the flow input has 2 * new_length channels).
    """
    names = [top_name(m) for m in modalities]
    if isinstance(inputs, VideoData):
        tops = _video_data_layer(inputs, "train", modalities, crop_size, new_length, caffe.TRAIN)
        test_spec = caffe.NetSpec()
        test_tops = _video_data_layer(inputs, "test", modalities, crop_size, new_length, caffe.TEST)
        for name, top in zip(names + ["label"], test_tops):
            test_spec[name] = top
        extra = [test_spec.to_proto().layer[0]]
    elif isinstance(inputs, DummyInputs):
        shapes = [dict(dim=input_shape(m, inputs.batch_size, crop_size, new_length)) for m in modalities]
        shapes.append(dict(dim=[inputs.batch_size]))
        tops = L.DummyData(name="data", shape=shapes, data_filler=[dict(type="constant", value=0)] * len(shapes),
                           ntop=len(shapes))
        extra = []
    elif isinstance(inputs, DeployInputs):
        for modality, name in zip(modalities, names):
            n[name] = L.Input(shape=dict(dim=input_shape(modality, inputs.batch_size, crop_size, new_length)))
        return AddedInputs({m: n[name] for m, name in zip(modalities, names)}, None)
    else:
        raise TypeError(f"inputs must be VideoData, DummyInputs or DeployInputs, got {type(inputs).__name__}")
    for name, top in zip(names + ["label"], tops):
        n[name] = top
    return AddedInputs({m: n[name] for m, name in zip(modalities, names)}, n.label, extra)


def add_outputs(n, scores, label) -> None:
    """Adds the loss and TEST-phase accuracy (train_val, ``label`` given) or ``prob`` (deploy) on ``scores``."""
    if label is None:
        n.prob = L.Softmax(scores)
    else:
        n.loss = L.SoftmaxWithLoss(scores, label)
        n.accuracy = L.Accuracy(scores, label, include=dict(phase=caffe.TEST))
