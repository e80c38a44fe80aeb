"""The paper's test protocol in pycaffe (§5.2): 25 equally spaced frames x 10 crops per video, all crops of a
video in one batched forward, scores averaged.

The net's inputs say which modalities it needs, the crop side and the flow stack length: ``data_rgb``
(B x 3 x c x c), ``data_flow`` (B x 2L x c x c), ``data_mag`` (B x 1 x c x c), as the deploy prototxts of
``prototxt/`` declare them (:class:`mfuse.sampling.InputGeometry`). A protocol that leaves the crop size open
takes the net's; one that disagrees with the net is refused (:func:`protocol_for`). The output blob (default:
the net's last blob) is a softmax, or logits that are softmaxed here (``apply_softmax``).

Decoding and cropping of the next videos run in worker threads while the net runs (JPEG decoding releases
the GIL). Progress is kept in ``<out>.partial.npz`` every ``checkpoint_every`` videos, so an interrupted run
resumes where it stopped, provided net, weights, data and protocol are the same (:mod:`mfuse.evaluation.resume`);
the final score file is written atomically (see ``scores.save_scores``).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mfuse.conventions import INPUT_BLOBS, MEANS, STACK_LENGTH
from mfuse.evaluation.aggregate import softmax
from mfuse.evaluation.resume import PartialScores, run_identity
from mfuse.evaluation.scores import ScoreSet, save_scores
from mfuse.sampling import InputGeometry, crop_modalities, flow_x_channels, frame_images, rgb_index, sample_positions
from mfuse.stores.format import rgb_frame_count


@dataclass(frozen=True)
class Protocol:
    """Test protocol settings.

    Args:
        frames: sampled positions per video (25 in the paper).
        crop_mode: ``ten`` (4 corners + centre, each mirrored) or ``center``.
        crop_size: crop side; None takes the net's input size (:func:`protocol_for`).
        stack_length: flow images per stack (L).
        rgb_at_stack_centre: pair the RGB frame with the middle of the flow stack (the authors' fusion
            test) instead of its first frame (the training convention of the data layer).
        max_batch: at most this many crops per forward (all of a video's when it is larger).
        means: ``{modality: mean or None}``.
    """
    frames: int = 25
    crop_mode: str = "ten"
    crop_size: int | None = None
    stack_length: int = STACK_LENGTH
    rgb_at_stack_centre: bool = False
    max_batch: int = 250
    means: Mapping[str, object] = field(default_factory=lambda: dict(MEANS))

    @property
    def crops_per_frame(self) -> int:
        return 10 if self.crop_mode == "ten" else 1


def protocol_for(protocol: Protocol, geometry: InputGeometry, source: str = "the net") -> Protocol:
    """``protocol`` with the net's crop size filled in; ValueError (one line, naming ``source``) when its crop
    size or stack length disagrees with the net's inputs."""
    if protocol.crop_size is None:
        protocol = replace(protocol, crop_size=geometry.crop_size)
    elif protocol.crop_size != geometry.crop_size:
        raise ValueError(f"crop size {protocol.crop_size} disagrees with {source}, whose inputs are "
                         f"{geometry.crop_size}x{geometry.crop_size}")
    if geometry.stack_length is not None and protocol.stack_length != geometry.stack_length:
        raise ValueError(f"stack length {protocol.stack_length} disagrees with {source}, whose flow input "
                         f"holds {geometry.stack_length} x/y pairs")
    return protocol


def load_test_net(deploy: str | Path, weights: str | Path | None = None, gpu: int | None = None):
    """A pycaffe ``caffe.Net`` in TEST phase on the CPU (``gpu`` None) or GPU ``gpu``; without ``weights`` the
    prototxt's fillers initialise it (for timing).

    Raises:
        mfuse.surgery.SurgeryError: ``weights`` lacks a layer of the net that has parameters (Caffe would test
            its random fillers) or its shapes differ, naming the layers; or it is not a caffemodel.
    """
    import caffe

    from mfuse.surgery import check_weights

    if gpu is None:
        caffe.set_mode_cpu()
    else:
        caffe.set_device(gpu)
        caffe.set_mode_gpu()
    net = caffe.Net(str(deploy), caffe.TEST)
    if weights is not None:
        check_weights(net, weights, str(deploy))
        net.copy_from(str(weights))
    return net


def net_geometry(net, source: str = "the net") -> InputGeometry:
    """The input geometry of a pycaffe net, from its input blobs (see :class:`mfuse.sampling.InputGeometry`)."""
    return InputGeometry.from_blob_shapes({name: net.blobs[name].data.shape for name in net.inputs}, source)


def video_crops(stores: Mapping[str, object], video_id: str, num_frames: int, protocol: Protocol
                ) -> dict[str, np.ndarray]:
    """All crops of one video: ``{modality: float32 (frames * crops) x C x c x c}``, frame-major.

    ``num_frames``: the video's RGB frame count N (flow and mag have N - 1 images).
    """
    per_frame = []
    for t in sample_positions(num_frames, protocol.frames, protocol.stack_length):
        rgb_t = rgb_index(int(t), num_frames, protocol.stack_length, protocol.rgb_at_stack_centre)
        images = frame_images(stores, video_id, int(t), protocol.stack_length, rgb_t)
        per_frame.append(crop_modalities(images, protocol.crop_size, protocol.crop_mode, means=protocol.means,
                                         x_channels=flow_x_channels(images)))
    return {name: np.concatenate([crops[name] for crops in per_frame]) for name in stores}


def forward_crops(net, crops: Mapping[str, np.ndarray], output: str, max_batch: int) -> np.ndarray:
    """Runs the net over the crops in chunks of at most ``max_batch``; returns (num_crops, K) outputs."""
    total = len(next(iter(crops.values())))
    outputs = []
    for start in range(0, total, max_batch):
        chunk = {name: array[start:start + max_batch] for name, array in crops.items()}
        for name, array in chunk.items():
            blob = net.blobs[INPUT_BLOBS[name]]
            if blob.data.shape != array.shape:
                blob.reshape(*array.shape)
        net.reshape()
        result = net.forward(blobs=[output], **{INPUT_BLOBS[n]: a for n, a in chunk.items()})
        outputs.append(np.array(result[output]).reshape(len(chunk[next(iter(chunk))]), -1))
    return np.concatenate(outputs)


def evaluate_net(net, stores: Mapping[str, object], out_path: Path, meta: dict, protocol: Protocol = Protocol(),
                 output: str | None = None, apply_softmax: bool | None = None, workers: int = 2,
                 checkpoint_every: int = 20, progress: bool = True) -> ScoreSet:
    """Runs the protocol over every video of the stores and writes the score file ``out_path``.

    Args:
        net: a pycaffe ``caffe.Net`` in TEST phase (deploy prototxt + weights).
        stores: ``{modality: frame store}`` for the modalities of :func:`net_geometry` (test subset).
        protocol: the test settings; its crop size (None: the net's) and stack length must fit the net.
        meta: recorded in the score file; needs ``split`` and ``subset`` (plus e.g. net, weights, dataset).
        output: output blob (default: the net's last blob).
        apply_softmax: softmax the outputs (default: unless the last layer is a Softmax).
        workers: threads decoding and cropping ahead of the net.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    geometry = net_geometry(net)
    protocol = protocol_for(protocol, geometry)
    modalities = geometry.modalities
    missing = [m for m in modalities if m not in stores]
    if missing:
        raise ValueError(f"the net needs {modalities}; no store given for {missing}")
    stores = {m: stores[m] for m in modalities}
    output = output or list(net.blobs)[-1]
    if apply_softmax is None:
        apply_softmax = net.layers[-1].type != "Softmax"
    reference = stores[modalities[0]].index
    num_classes = len(reference.classes)
    partial = PartialScores(out_path, run_identity(net, meta, protocol, output, apply_softmax))
    collector = partial.load(num_classes)
    done = set(collector.video_ids)
    todo = [v for v in sorted(reference.videos, key=lambda v: v.video_id) if v.video_id not in done]

    def prepare(video):
        return video_crops(stores, video.video_id, rgb_frame_count(reference.modality, video.num_frames), protocol)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = [pool.submit(prepare, v) for v in todo[:workers + 1]]
        for i, video in enumerate(tqdm(todo, desc=f"test {out_path.stem}", unit="video", disable=not progress)):
            crops = pending[i].result()
            if i + workers + 1 < len(todo):
                pending.append(pool.submit(prepare, todo[i + workers + 1]))
            pending[i] = None
            scores = forward_crops(net, crops, output, protocol.max_batch)
            if scores.shape[1] != num_classes:
                raise ValueError(f"{output} has {scores.shape[1]} outputs, the stores have {num_classes} classes")
            probs = softmax(scores) if apply_softmax else scores
            collector.add(video.video_id, video.label, probs.reshape(protocol.frames, protocol.crops_per_frame, -1))
            if (i + 1) % checkpoint_every == 0:
                partial.save(collector)
    meta = {**meta, "protocol": {"frames": protocol.frames, "crop_mode": protocol.crop_mode,
                                 "crop_size": protocol.crop_size, "stack_length": protocol.stack_length,
                                 "rgb_at_stack_centre": protocol.rgb_at_stack_centre}}
    score_set = collector.result(json.loads(json.dumps(meta)))
    save_scores(out_path, score_set)
    partial.remove()
    return score_set
