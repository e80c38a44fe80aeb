"""Net surgery: initial caffemodels for the fusion and stream nets, and FlowAmplify insertion into any net.

- ``init_fusion``: a fusion net's initial weights from a trained spatial and a trained temporal caffemodel
  (``rgb_conv1`` <- spatial ``conv1``, ``flow_conv1`` <- temporal ``conv1``, ...).
- ``init_from_imagenet``: a stream net's initial weights from an ImageNet caffemodel; for the temporal net the
  first conv's RGB filters can be averaged over the channels and replicated (cross-modality initialisation).
- ``insert_flow_amplify``: adds an Input for the magnitude and a ``FlowAmplify`` after a named layer of a
  deploy prototxt, keeping every weight.

Every copy is checked: a layer of the target net that should come from a source but is absent there, or whose
blob shapes differ, is an error naming the layer, the file and the shapes, and nothing is written; so is a
source of which nothing fits the target. The result is a list of ``CopyRecord`` (``format_report`` prints it).

The written caffemodel holds the copied layers only. The target's other layers (the fusion layers, the
classifier) are initialised by the net that loads it: ``caffe train -weights`` fills them from the solver's
seeded RNG (``random_seed``), so a seeded run is reproducible; this process's unseeded fillers never reach a
file.

Weights are read straight from the caffemodel protobuf (new ``layer`` and legacy V1 ``layers`` formats), so a
source needs no prototxt; the target net is instantiated with pycaffe from its (deploy) prototxt.
"""
from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import caffe
import numpy as np
from caffe.proto import caffe_pb2
from google.protobuf import text_format
from google.protobuf.message import DecodeError

from mfuse.conventions import FLOW_AMPLIFY_DEFAULTS, INPUT_BLOBS
from mfuse.fileio import atomic_path, write_atomic
from mfuse.nets.fusion import PREFIXES
from mfuse.nets.inputs import input_shapes

#: The FlowAmplify fields ``insert_flow_amplify`` writes unless told otherwise.
AMPLIFY_FIELDS = {key: FLOW_AMPLIFY_DEFAULTS[key] for key in ("offset", "scale")}

#: What becomes of a target layer that no source fills: the written caffemodel leaves it out.
FILLER_NOTE = "not saved: the net that loads the caffemodel initialises it with its filler"

#: Status of a ``CopyRecord``.
COPIED, ADAPTED, SKIPPED, UNUSED, MISMATCH, MISSING = "copied", "adapted", "skipped", "unused", "mismatch", "missing"


class SurgeryError(ValueError):
    """A source does not fit the target net; the message lists every offending layer."""


@dataclass(frozen=True)
class WeightSource:
    """A caffemodel feeding the target layers whose names start with ``prefix``.

    Target layer ``prefix + name`` is filled from the source layer ``name``. With ``required``, a target
    layer with that prefix missing from the source is an error (a fusion tower must be complete); otherwise
    it is left to its filler (not saved) and is reported as skipped.
    """
    caffemodel: str
    prefix: str = ""
    required: bool = False


@dataclass(frozen=True)
class CopyRecord:
    """What happened to one layer: ``target`` (layer of the target net, "" for an unused source layer),
    ``source`` ("file:layer" or ""), ``status`` and a human-readable ``detail`` (shapes, reason)."""
    target: str
    source: str
    status: str
    detail: str


def _shape(blob: caffe_pb2.BlobProto) -> tuple[tuple[int, ...], bool]:
    """(shape, legacy) of a stored blob: ``shape.dim`` or the legacy num/channels/height/width."""
    if blob.HasField("shape"):
        return tuple(blob.shape.dim), False
    return (blob.num, blob.channels, blob.height, blob.width), True


def _blob_array(blob: caffe_pb2.BlobProto) -> np.ndarray:
    shape, _ = _shape(blob)
    values = blob.data if len(blob.data) else blob.double_data
    array = np.asarray(values, dtype=np.float32)
    if array.size != int(np.prod(shape)):
        raise SurgeryError(f"a blob holds {array.size} values for shape {shape}")
    return array.reshape(shape)


@dataclass
class StoredLayer:
    """The blobs of one layer of a caffemodel: arrays in their stored shapes, and whether the shapes are the
    legacy 4-D ones of V1 models (then leading 1s do not count, as Caffe's own copy allows)."""
    blobs: list[np.ndarray]
    legacy: bool


def _weighted_layers(path) -> list:
    """The layers with blobs of the caffemodel at ``path`` (new and V1 formats); SurgeryError if the file is
    missing, is not a Caffe NetParameter or holds no weights."""
    path = Path(path)
    if not path.is_file():
        raise SurgeryError(f"caffemodel {path} does not exist")
    model = caffe_pb2.NetParameter()
    try:
        model.ParseFromString(path.read_bytes())
    except DecodeError as err:
        raise SurgeryError(f"{path} is not a caffemodel (Caffe NetParameter): {err}") from err
    layers = [layer for layer in list(model.layer) + list(model.layers) if len(layer.blobs)]
    if not layers:
        raise SurgeryError(f"{path} holds no layer with weights: is it a caffemodel (not a prototxt)?")
    return layers


def read_caffemodel(path) -> dict[str, StoredLayer]:
    """Layer name -> blobs of every layer with parameters in the caffemodel at ``path``.

    Raises:
        SurgeryError: if the file is missing or is not a Caffe NetParameter.
    """
    layers = {}
    for layer in _weighted_layers(path):
        try:
            blobs = [_blob_array(blob) for blob in layer.blobs]
        except SurgeryError as err:
            raise SurgeryError(f"{path}: layer {layer.name}: {err}") from err
        layers[layer.name] = StoredLayer(blobs, any(_shape(blob)[1] for blob in layer.blobs))
    return layers


def check_weights(net, caffemodel, net_name: str) -> None:
    """Checks, before Caffe copies ``caffemodel`` into the pycaffe ``net`` (of the prototxt ``net_name``), that
    it holds every layer of the net that has parameters, with the same number of blobs and their shapes.

    Caffe's own copy skips a layer the caffemodel lacks (it keeps its random fillers: a test of such a net
    scores an untrained model) and aborts on a shape mismatch.

    Raises:
        SurgeryError: naming every missing or misfitting layer (and what the caffemodel holds instead).
    """
    stored = {layer.name: [_shape(blob) for blob in layer.blobs] for layer in _weighted_layers(caffemodel)}
    missing, misfits = [], []
    for name, blobs in net.params.items():
        if name not in stored:
            missing.append(name)
            continue
        shapes = [tuple(blob.data.shape) for blob in blobs]
        fits = [_shape_fits(shape, target, legacy) for (shape, legacy), target in zip(stored[name], shapes)]
        if len(stored[name]) != len(shapes) or not all(fits):
            held = _shapes(shape for shape, _ in stored[name])
            misfits.append(f"{name}: the net has {_shapes(shapes)}, the weights {held}")
    problems = []
    if missing:
        problems.append(f"{len(missing)} of the net's {len(net.params)} layers with parameters are missing from "
                        f"it: {', '.join(missing)} (it holds: {', '.join(stored)})")
    if misfits:
        problems.append("shapes differ: " + "; ".join(misfits))
    if problems:
        raise SurgeryError(f"{caffemodel} does not fit {net_name}: " + "; ".join(problems))


def _strip_leading_ones(shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(shape)
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return shape


def _shape_fits(stored: tuple[int, ...], target: tuple[int, ...], legacy: bool) -> bool:
    """Whether a stored blob shape fits a target blob (legacy V1 shapes: leading 1s do not count)."""
    if tuple(stored) == tuple(target):
        return True
    return legacy and _strip_leading_ones(stored) == _strip_leading_ones(target)


def _cross_modality(weights: np.ndarray, target_shape: tuple[int, ...]) -> np.ndarray | None:
    """RGB filters (O x 3 x k x k) averaged over channels and replicated to the target's input channels, or
    None when the shapes are not those of a first conv going from 3 to another number of channels."""
    if weights.ndim != 4 or len(target_shape) != 4 or weights.shape[1] != 3:
        return None
    if (weights.shape[0],) + weights.shape[2:] != (target_shape[0],) + tuple(target_shape[2:]):
        return None
    return np.repeat(weights.mean(axis=1, keepdims=True), target_shape[1], axis=1)


def _shapes(arrays) -> str:
    return ", ".join("x".join(map(str, shape)) for shape in arrays)


def _load_target(prototxt) -> caffe.Net:
    path = Path(prototxt)
    if not path.is_file():
        raise SurgeryError(f"prototxt {path} does not exist")
    try:
        text_format.Merge(path.read_text(), caffe_pb2.NetParameter())
    except text_format.ParseError as err:
        raise SurgeryError(f"{path} is not a valid net prototxt: {err}") from err
    return caffe.Net(str(path), caffe.TEST)


def _source_for(layer: str, sources: Sequence[WeightSource]) -> WeightSource | None:
    matching = [source for source in sources if layer.startswith(source.prefix)]
    return max(matching, key=lambda source: len(source.prefix)) if matching else None


def _copy_layer(name: str, target_blobs, source: WeightSource, stored: dict[str, StoredLayer],
                cross_modality: bool) -> CopyRecord:
    source_name = name[len(source.prefix):]
    label = f"{source.caffemodel}:{source_name}"
    target_shapes = [tuple(blob.data.shape) for blob in target_blobs]
    if source_name not in stored:
        if source.required:
            return CopyRecord(name, label, MISSING, f"no layer {source_name} in {source.caffemodel}")
        return CopyRecord(name, "", SKIPPED, f"not in {source.caffemodel}: {FILLER_NOTE}")
    layer = stored[source_name]
    source_shapes = [array.shape for array in layer.blobs]
    detail = f"target {_shapes(target_shapes)} <- source {_shapes(source_shapes)}"
    if len(layer.blobs) != len(target_blobs):
        return CopyRecord(name, label, MISMATCH, f"{len(target_blobs)} blobs <- {len(layer.blobs)} blobs; {detail}")
    new_values, adapted = [], False
    for array, shape in zip(layer.blobs, target_shapes):
        if _shape_fits(array.shape, shape, layer.legacy):
            new_values.append(array.reshape(shape))
            continue
        replicated = _cross_modality(array, shape) if cross_modality else None
        if replicated is None:
            return CopyRecord(name, label, MISMATCH, detail)
        new_values.append(replicated)
        adapted = True
    for blob, values in zip(target_blobs, new_values):
        blob.data[...] = values
    if adapted:
        return CopyRecord(name, label, ADAPTED, f"{detail} (RGB filters averaged and replicated)")
    return CopyRecord(name, label, COPIED, detail)


def _fill(net, target: str, sources: Sequence[WeightSource], cross_modality: bool) -> list[CopyRecord]:
    """Copies the sources into the pycaffe ``net`` (of the prototxt called ``target`` in messages); returns
    the records (see :func:`transplant`). Raises ``SurgeryError`` when a copy does not fit or nothing was
    copied at all."""
    stored = {source.caffemodel: read_caffemodel(source.caffemodel) for source in sources}
    records, used = [], set()
    for name, blobs in net.params.items():
        source = _source_for(name, sources)
        if source is None:
            records.append(CopyRecord(name, "", SKIPPED, f"no source for this name: {FILLER_NOTE}"))
            continue
        records.append(_copy_layer(name, blobs, source, stored[source.caffemodel], cross_modality))
        used.add((source.caffemodel, name[len(source.prefix):]))
    for source in sources:
        for name in stored[source.caffemodel]:
            if (source.caffemodel, name) not in used:
                records.append(CopyRecord("", f"{source.caffemodel}:{name}", UNUSED, "not in the target net"))
    errors = [record for record in records if record.status in (MISMATCH, MISSING)]
    if errors:
        lines = "\n".join(f"  {record.target} <- {record.source}: {record.status}: {record.detail}"
                          for record in errors)
        raise SurgeryError(f"the sources do not fit {target}; nothing written:\n{lines}")
    if not any(record.status in (COPIED, ADAPTED) for record in records):
        files = ", ".join(source.caffemodel for source in sources)
        raise SurgeryError(f"nothing of {files} fits {target}: no layer of the net ({', '.join(net.params)}) "
                           f"is in it (its layers: {', '.join(sorted({n for s in stored.values() for n in s}))}); "
                           f"nothing written")
    return records


def transplant(target_prototxt, sources: Sequence[WeightSource], out_caffemodel,
               cross_modality: bool = False) -> list[CopyRecord]:
    """Writes ``out_caffemodel`` for the net of ``target_prototxt``, its layers filled from ``sources``.

    The caffemodel holds the copied (and adapted) layers only: the others are initialised by the fillers of
    the net that loads it (``caffe train -weights``: the solver's ``random_seed`` makes them reproducible).

    Args:
        target_prototxt: the target net (a deploy prototxt: no data layer to open).
        sources: caffemodels with the name prefixes they fill.
        out_caffemodel: written only when every copy fits and at least one layer was copied (via a
            temporary file).
        cross_modality: a first conv layer whose source has 3 input channels and the target another number
            gets the channel-averaged RGB filters, replicated (the temporal net from an ImageNet model).

    Returns:
        one record per target layer with parameters, then one per unused source layer.

    Raises:
        SurgeryError: listing every missing or shape-mismatched layer (with file and shapes), or saying that
            no layer of the target is in the sources.
    """
    net = _load_target(target_prototxt)
    records = _fill(net, str(target_prototxt), sources, cross_modality)
    _save_copied(net, records, out_caffemodel)
    return records


def _save_copied(net, records: Sequence[CopyRecord], path) -> None:
    """Saves the layers of ``net`` that ``records`` mark copied or adapted, atomically, as a caffemodel."""
    copied = {record.target for record in records if record.status in (COPIED, ADAPTED)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as folder:
        whole = Path(folder) / "net.caffemodel"
        net.save(str(whole))
        model = caffe_pb2.NetParameter.FromString(whole.read_bytes())
    kept = [layer for layer in model.layer if layer.name in copied]
    del model.layer[:]
    model.layer.extend(kept)
    write_atomic(path, model.SerializeToString())


def init_fusion(fusion_prototxt, spatial_caffemodel, temporal_caffemodel, out_caffemodel,
                prefixes: tuple[str, str] = PREFIXES) -> list[CopyRecord]:
    """The initial caffemodel of a fusion net: its ``rgb_*`` layers from the trained spatial net, its
    ``flow_*`` layers from the trained temporal net; the layers after the fusion keep their fillers.

    Args:
        fusion_prototxt: the fusion net's deploy prototxt.
        spatial_caffemodel, temporal_caffemodel: trained stream nets (spatial or spatial_amp; temporal).
        out_caffemodel: output path.
        prefixes: tower prefixes (spatial, temporal).
    """
    sources = [WeightSource(str(spatial_caffemodel), prefixes[0], required=True),
               WeightSource(str(temporal_caffemodel), prefixes[1], required=True)]
    return transplant(fusion_prototxt, sources, out_caffemodel)


def init_from_imagenet(stream_prototxt, imagenet_caffemodel, out_caffemodel, cross_modality: bool = False,
                       allow_partial: bool = False) -> list[CopyRecord]:
    """The initial caffemodel of a stream net from an ImageNet model (same layer names). The net's last layer
    with parameters (the classifier, ``fc8_action``) is new and keeps its filler; every other layer must come
    from the ImageNet model unless ``allow_partial``. ``cross_modality``: the temporal net's first conv gets
    the RGB filters averaged over channels, replicated to its 2L flow channels.

    Raises:
        SurgeryError: as :func:`transplant`, and naming the layers the model lacks (without ``allow_partial``).
    """
    net = _load_target(stream_prototxt)
    records = _fill(net, str(stream_prototxt), [WeightSource(str(imagenet_caffemodel))], cross_modality)
    classifier = list(net.params)[-1]
    lacking = [record.target for record in records if record.status == SKIPPED and record.target != classifier]
    if lacking and not allow_partial:
        raise SurgeryError(f"{imagenet_caffemodel} lacks {len(lacking)} layer(s) of {stream_prototxt}: "
                           f"{', '.join(lacking)} (only the classifier {classifier} is expected to be new); "
                           f"allow_partial (--allow-partial) keeps their fillers; nothing written")
    _save_copied(net, records, out_caffemodel)
    return records


def _blob_names(net: caffe_pb2.NetParameter) -> set:
    names = set(net.input)
    for layer in net.layer:
        names.update(layer.top)
        names.update(layer.bottom)
    return names


def _rename_after(layers, start: int, old: str, new: str) -> None:
    """Makes every later reader of blob ``old`` read ``new``; in-place layers on it write ``new`` too. Stops
    after a layer that writes ``old`` afresh (a new blob of that name)."""
    for layer in layers[start:]:
        in_place = old in layer.bottom and old in layer.top
        layer.bottom[:] = [new if name == old else name for name in layer.bottom]
        if in_place:
            layer.top[:] = [new if name == old else name for name in layer.top]
        elif old in layer.top:
            return


def amplified_prototxt(deploy: caffe_pb2.NetParameter, after_layer: str,
                       magnitude_shape: Sequence[int] | None = None, magnitude_top: str = INPUT_BLOBS["mag"],
                       flow_amplify_param: dict | None = None,
                       layer_name: str = "flow_amplify") -> caffe_pb2.NetParameter:
    """A copy of ``deploy`` with an Input ``magnitude_top`` and ``FlowAmplify`` on the output of ``after_layer``.

    The amplified blob is ``<top>_amp``; every later layer reading the old top reads it instead (in-place
    layers such as a following ReLU move along).

    Args:
        deploy: a net in the current format (``layer``, not V1 ``layers``).
        after_layer: the layer whose (single) top is amplified.
        magnitude_shape: N x 1 x H x W of the magnitude input; default: N, H, W of the net's first input.
        magnitude_top: name of the new input blob.
        flow_amplify_param: fields of ``FlowAmplifyParameter``; default offset 1, scale 1.
        layer_name: name of the new layer.

    Raises:
        SurgeryError: V1 format, unknown layer, a layer with several tops, a name already taken, or no
            input shape to derive the magnitude shape from.
    """
    if len(deploy.layers):
        raise SurgeryError("the prototxt uses the legacy V1 'layers' format; convert it first with Caffe's "
                           "upgrade_net_proto_text tool")
    names = [layer.name for layer in deploy.layer]
    if after_layer not in names:
        raise SurgeryError(f"no layer {after_layer!r} in the net; layers: {names}")
    index = names.index(after_layer)
    target = deploy.layer[index]
    if len(target.top) != 1:
        raise SurgeryError(f"layer {after_layer} has {len(target.top)} tops; FlowAmplify needs a single one")
    top, blobs = target.top[0], _blob_names(deploy)
    amplified = f"{top}_amp"
    for name in (magnitude_top, amplified):
        if name in blobs:
            raise SurgeryError(f"the net already has a blob called {name!r}; choose another name")
    if layer_name in names:
        raise SurgeryError(f"the net already has a layer called {layer_name!r}; choose another name")
    if magnitude_shape is None:
        inputs = input_shapes(deploy)
        if not inputs:
            raise SurgeryError("the net has no Input layer or input shape: give magnitude_shape (N, 1, H, W)")
        first = next(iter(inputs.values()))
        magnitude_shape = [first[0], 1] + list(first[2:])
    net = caffe_pb2.NetParameter()
    net.CopyFrom(deploy)
    layers = list(net.layer)
    mag = caffe_pb2.LayerParameter(name=magnitude_top, type="Input", top=[magnitude_top])
    mag.input_param.shape.add().dim.extend(int(d) for d in magnitude_shape)
    amp = caffe_pb2.LayerParameter(
        name=layer_name, type="FlowAmplify", bottom=[top, magnitude_top], top=[amplified],
        flow_amplify_param=caffe_pb2.FlowAmplifyParameter(**(flow_amplify_param or AMPLIFY_FIELDS)))
    _rename_after(layers, index + 1, top, amplified)
    leading_inputs = next((i for i, layer in enumerate(layers) if layer.type != "Input"), len(layers))
    layers.insert(index + 1, amp)
    layers.insert(leading_inputs, mag)
    del net.layer[:]
    net.layer.extend(layers)
    return net


def insert_flow_amplify(deploy_prototxt, caffemodel, after_layer: str, out_prototxt, out_caffemodel,
                        magnitude_shape: Sequence[int] | None = None, magnitude_top: str = INPUT_BLOBS["mag"],
                        flow_amplify_param: dict | None = None) -> list[CopyRecord]:
    """Writes ``out_prototxt`` (``deploy_prototxt`` + magnitude Input + FlowAmplify after ``after_layer``) and
    ``out_caffemodel`` (every weight of ``caffemodel``; each layer with parameters must be in it, with its
    shapes). See ``amplified_prototxt`` for the arguments. Both files are written when everything succeeded,
    neither otherwise.

    With offset 1 and a zero magnitude the new net computes exactly what the old one did.
    """
    path = Path(deploy_prototxt)
    if not path.is_file():
        raise SurgeryError(f"prototxt {path} does not exist")
    deploy = caffe_pb2.NetParameter()
    try:
        text_format.Merge(path.read_text(), deploy)
    except text_format.ParseError as err:
        raise SurgeryError(f"{path} is not a valid net prototxt: {err}") from err
    net = amplified_prototxt(deploy, after_layer, magnitude_shape, magnitude_top, flow_amplify_param)
    header = f"# {path.name} with FlowAmplify after {after_layer} (mfuse.surgery.insert_flow_amplify)\n"
    with atomic_path(out_prototxt, suffix=".prototxt") as prototxt, atomic_path(out_caffemodel) as model:
        prototxt.write_text(header + text_format.MessageToString(net))
        target = _load_target(prototxt)
        records = _fill(target, str(out_prototxt), [WeightSource(str(caffemodel), required=True)], False)
        _save_copied(target, records, model)
    return records


def format_report(records: Sequence[CopyRecord]) -> str:
    """A table of the records, one line each, with a count per status at the end."""
    width = max([len(record.target) for record in records] + [6])
    lines = [f"{record.status:<8} {record.target or '-':<{width}}  {record.source or '-'}  {record.detail}"
             for record in records]
    counts = {}
    for record in records:
        counts[record.status] = counts.get(record.status, 0) + 1
    lines.append(", ".join(f"{count} {status}" for status, count in counts.items()))
    return "\n".join(lines)
