"""The paper's test protocol in pycaffe (§5.2): 25 equally spaced frames x 10 crops per video, all crops of a
video in one batched forward, scores averaged.

The net's inputs say which modalities it needs, the crop side and the flow stack length: ``data_rgb``
(B x 3 x c x c), ``data_flow`` (B x 2L x c x c), ``data_mag`` (B x 1 x c x c), as the deploy prototxts of
``prototxt/`` declare them (:class:`mfuse.sampling.InputGeometry`). A protocol that leaves the crop size open
takes the net's; one that disagrees with the net is refused (:func:`protocol_for`). The output blob (default:
the net's last blob) is a softmax, or logits that are softmaxed here (``apply_softmax``).

Decoding and cropping of the next frames run in worker processes while the net runs (:func:`score_videos`;
threads would not overlap the net: pycaffe holds the GIL during ``forward``), as uint8; the crops are converted
to float32 minus the mean straight into the net's input blobs. Progress is kept in ``<out>.partial.npz`` every
``checkpoint_every`` videos, so an interrupted run resumes where it stopped, provided net, weights, data and
protocol are the same (:mod:`mfuse.evaluation.resume`); the final score file is written atomically (see
``scores.save_scores``).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mfuse.conventions import CUDNN_WORKSPACE_ENV, INPUT_BLOBS, MEANS, STACK_LENGTH
from mfuse.evaluation.aggregate import softmax
from mfuse.evaluation.resume import PartialScores, run_identity
from mfuse.evaluation.scores import ScoreSet, save_scores
from mfuse.processes import ParallelProducer, default_workers
from mfuse.sampling import InputGeometry, ProtocolCrops, input_threads, normalize, to_net_inputs
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


#: cuDNN workspace (MiB, at most a quarter of the GPU) of a process that tests on a GPU, unless
#: MFUSE_CUDNN_WORKSPACE_MB is set: the fastest algorithms for batches of 250 crops need more than the fork's 1 GiB
#: default (VGG19 spatial 25 x 10 on an H100, TF32: 10.8 vs 4.5 videos/s; benchmarks/results/2026-11-26-data-path.md).
#: The fork reads the setting once per process: a process that ran cuDNN before keeps its cap.
TEST_WORKSPACE_MIB = 8192


def use_test_workspace(gpu: int) -> None:
    """Sets this process's cuDNN workspace cap (``MFUSE_CUDNN_WORKSPACE_MB``) to :data:`TEST_WORKSPACE_MIB`, at most
    a quarter of GPU ``gpu``'s memory, unless the variable is set already."""
    if CUDNN_WORKSPACE_ENV not in os.environ:
        from mfuse.training import devices  # imported here: mfuse.training's package imports pycaffe

        os.environ[CUDNN_WORKSPACE_ENV] = str(min(TEST_WORKSPACE_MIB, devices.cuda_device_memory_mib(gpu) // 4))


def load_test_net(deploy: str | Path, weights: str | Path | None = None, gpu: int | None = None):
    """A pycaffe ``caffe.Net`` in TEST phase on the CPU (``gpu`` None) or GPU ``gpu`` (with the cuDNN workspace of
    :data:`TEST_WORKSPACE_MIB`); without ``weights`` the prototxt's fillers initialise it (for timing).

    Raises:
        mfuse.surgery.SurgeryError: ``weights`` lacks a layer of the net that has parameters (Caffe would test
            its random fillers) or its shapes differ, naming the layers; or it is not a caffemodel.
    """
    import caffe

    from mfuse.surgery import check_weights

    if gpu is None:
        caffe.set_mode_cpu()
    else:
        use_test_workspace(gpu)
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


def protocol_crops(stores: Mapping[str, object], videos, protocol: Protocol) -> ProtocolCrops:
    """The crops of ``videos`` (``[VideoEntry]`` of ``stores``' first modality) under ``protocol``, one sampled
    frame per item (:class:`mfuse.sampling.ProtocolCrops`)."""
    reference = next(iter(stores.values())).modality
    return ProtocolCrops(stores, [(v.video_id, rgb_frame_count(reference, v.num_frames)) for v in videos],
                         protocol.frames, protocol.crop_mode, protocol.crop_size, protocol.stack_length,
                         protocol.rgb_at_stack_centre)


def video_crops(stores: Mapping[str, object], video_id: str, num_frames: int, protocol: Protocol
                ) -> dict[str, np.ndarray]:
    """All crops of one video: ``{modality: float32 (frames * crops) x C x c x c}``, frame-major.

    ``num_frames``: the video's RGB frame count N (flow and mag have N - 1 images).
    """
    crops = ProtocolCrops(stores, [(video_id, num_frames)], protocol.frames, protocol.crop_mode, protocol.crop_size,
                          protocol.stack_length, protocol.rgb_at_stack_centre)
    item = {name: np.empty(shape, dtype) for name, (shape, dtype) in crops.layout().items()}
    per_frame = []
    for frame in range(protocol.frames):
        crops.fill(frame, item)
        per_frame.append({name: normalize(array, protocol.means[name]) for name, array in item.items()})
    return {name: np.concatenate([frame[name] for frame in per_frame]) for name in stores}


def score_videos(net, crops: ProtocolCrops, protocol: Protocol, output: str, workers: int | None = None
                 ) -> Iterator[np.ndarray]:
    """The net's outputs for every video of ``crops``, in order: ``(frames * crops_per_frame, K)`` per video.

    ``workers`` processes (None: the usable cores but one; 0: this thread) decode and crop the sampled frames
    ahead (:class:`mfuse.processes.ParallelProducer`); here each frame's uint8 crops are converted straight
    into the net's input blobs, and the net runs whenever ``protocol.max_batch`` crops (or a video's last ones)
    are in.
    """
    if not len(crops):
        return
    workers = default_workers() if workers is None else workers
    threads = input_threads()
    per_video = protocol.frames * crops.crops_per_frame
    with ParallelProducer(crops, 0, len(crops), workers, depth=4, name="test crops") as source, \
            ThreadPoolExecutor(threads, thread_name_prefix="mfuse-inputs") as pool:
        for _ in range(len(crops.videos)):
            yield _forward_video(net, source, per_video, protocol, output, pool, threads)


def _forward_video(net, source: ParallelProducer, per_video: int, protocol: Protocol, output: str,
                   pool: ThreadPoolExecutor, threads: int) -> np.ndarray:
    """One video's outputs ``(per_video, K)``: its frames' crops from ``source``, in chunks of ``max_batch``."""
    outputs, done, row, chunk, blobs = [], 0, 0, 0, {}
    for _ in range(protocol.frames):
        item = source.get()
        start, count = 0, len(next(iter(item.values())))
        while start < count:
            if row == 0:
                chunk = min(protocol.max_batch, per_video - done)
                blobs = _input_blobs(net, item, chunk)
            take = min(count - start, chunk - row)
            to_net_inputs(item, protocol.means, blobs, pool, threads, slice(start, start + take),
                          slice(row, row + take))
            start, row = start + take, row + take
            if row == chunk:
                result = net.forward(blobs=[output])
                outputs.append(np.array(result[output]).reshape(chunk, -1))
                done, row = done + chunk, 0
    return np.concatenate(outputs)


def _input_blobs(net, item: Mapping[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    """``{modality: input blob data}`` with ``rows`` crops of the item's shape (reshaping the net if needed)."""
    changed = False
    for name, array in item.items():
        blob = net.blobs[INPUT_BLOBS[name]]
        if blob.data.shape != (rows,) + array.shape[1:]:
            blob.reshape(rows, *array.shape[1:])
            changed = True
    if changed:
        net.reshape()
    return {name: net.blobs[INPUT_BLOBS[name]].data for name in item}


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
                 output: str | None = None, apply_softmax: bool | None = None, workers: int | None = None,
                 checkpoint_every: int = 20, progress: bool = True) -> ScoreSet:
    """Runs the protocol over every video of the stores and writes the score file ``out_path``.

    Args:
        net: a pycaffe ``caffe.Net`` in TEST phase (deploy prototxt + weights).
        stores: ``{modality: frame store}`` for the modalities of :func:`net_geometry` (test subset).
        protocol: the test settings; its crop size (None: the net's) and stack length must fit the net.
        meta: recorded in the score file; needs ``split`` and ``subset`` (plus e.g. net, weights, dataset).
        output: output blob (default: the net's last blob).
        apply_softmax: softmax the outputs (default: unless the last layer is a Softmax).
        workers: processes decoding and cropping ahead of the net (None: the usable cores but one; 0: none,
            this thread does it); see :func:`score_videos`.
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

    crops = protocol_crops(stores, todo, protocol)
    outputs = score_videos(net, crops, protocol, output, workers)
    for i, (video, scores) in enumerate(tqdm(zip(todo, outputs), total=len(todo), desc=f"test {out_path.stem}",
                                             unit="video", disable=not progress)):
        if scores.shape[1] != num_classes:
            raise ValueError(f"{output} has {scores.shape[1]} outputs, the stores have {num_classes} classes")
        probs = softmax(scores) if apply_softmax else scores
        collector.add(video.video_id, video.label, probs.reshape(protocol.frames, protocol.crops_per_frame, -1))
        if (i + 1) % checkpoint_every == 0:
            partial.save(collector)
    outputs.close()
    meta = {**meta, "protocol": {"frames": protocol.frames, "crop_mode": protocol.crop_mode,
                                 "crop_size": protocol.crop_size, "stack_length": protocol.stack_length,
                                 "rgb_at_stack_centre": protocol.rgb_at_stack_centre}}
    score_set = collector.result(json.loads(json.dumps(meta)))
    save_scores(out_path, score_set)
    partial.remove()
    return score_set
