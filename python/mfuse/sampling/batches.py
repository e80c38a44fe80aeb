"""Fixed-size items of the data path, each a pure function of its index: training batches and the test's crops.

Both are *producers* of :mod:`mfuse.processes` (``layout()`` + ``fill(index, out)``), so worker processes can
make them ahead into shared memory; they hold uint8 crops (the mean is subtracted by :func:`to_net_inputs` in
the net's process, straight into the input blobs) and pickle without open database handles.

- :class:`TrainBatches`: batch ``b`` of a training run = samples ``b*B .. b*B + B-1``; sample ``i`` is a video of
  epoch ``i // per_epoch`` (:func:`mfuse.sampling.clips.epoch_order`) with its frame, crop and mirror drawn
  from ``RandomState([seed, rank, i])``: a pure function of (seed, rank, b), whatever made it and in whatever
  order, so a run resumed at batch b sees exactly the batches of an uninterrupted one.
- :class:`ProtocolCrops`: item ``i`` = sampled frame ``i % F`` of video ``i // F`` of the paper's test (F = 25 frames
  by :func:`mfuse.sampling.positions.sample_positions`, 10 crops each in ``caffe.io.oversample`` order).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Executor

import numpy as np

from mfuse.conventions import input_channels
from mfuse.processes import usable_cores
from mfuse.sampling.clips import ClipSpec, common_videos, cut_crops, epoch_order, make_sample_uint8, read_images
from mfuse.sampling.crops import crop_boxes, normalize
from mfuse.sampling.positions import rgb_index, sample_positions

LABEL = "label"
#: Most threads converting uint8 crops to net inputs in the net's process (:func:`to_net_inputs`).
INPUT_THREADS = 8


def input_threads() -> int:
    """Threads for :func:`to_net_inputs`: ``INPUT_THREADS``, or the usable cores when there are fewer."""
    return min(INPUT_THREADS, usable_cores())


class TrainBatches:
    """Training batches of two-stream samples (see the module docstring).

    Args:
        stores: ``{modality: frame store}`` in top order (:mod:`mfuse.stores.reader`).
        spec: what a sample holds (modalities, stack length, crop size, means).
        batch_size, shuffle, mirror, seed, rank, num_ranks: as the data layer's param_str.

    ``fill(b, out)`` writes ``out[modality]`` uint8 ``B x C x c x c`` and ``out["label"]`` float32 ``B``.
    """

    def __init__(self, stores: Mapping[str, object], spec: ClipSpec, batch_size: int, shuffle: bool, mirror: bool,
                 seed: int, rank: int = 0, num_ranks: int = 1):
        self.stores, self.spec, self.batch_size = dict(stores), spec, batch_size
        self.shuffle, self.mirror, self.seed = shuffle, mirror, seed
        self.rank, self.num_ranks = rank, num_ranks
        self.videos = common_videos(self.stores)
        if len(self.videos) < num_ranks:
            raise ValueError(f"{len(self.videos)} videos cannot be shared by {num_ranks} ranks")
        self.per_epoch = len(epoch_order(len(self.videos), 0, seed, shuffle, rank, num_ranks))
        self._epoch_cache = (None, None)

    def layout(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """``{modality: ((B, C, c, c), "uint8"), "label": ((B,), "float32")}``."""
        crop, length = self.spec.crop_size, self.spec.stack_length
        arrays = {m: ((self.batch_size, input_channels(m, length), crop, crop), "uint8") for m in self.spec.modalities}
        arrays[LABEL] = ((self.batch_size,), "float32")
        return arrays

    def video_of(self, index: int) -> tuple[str, int, dict[str, int]]:
        """``(video_id, label, {modality: images})`` of sample ``index`` (0-based over the whole run)."""
        epoch, position = divmod(index, self.per_epoch)
        if self._epoch_cache[0] != epoch:
            order = epoch_order(len(self.videos), epoch, self.seed, self.shuffle, self.rank, self.num_ranks)
            self._epoch_cache = (epoch, order)
        return self.videos[self._epoch_cache[1][position]]

    def sample_rng(self, index: int) -> np.random.RandomState | None:
        """The generator of sample ``index``'s frame, crop and mirror (None when not shuffling)."""
        return np.random.RandomState([self.seed, self.rank, index]) if self.shuffle else None

    def fill(self, batch: int, out: Mapping[str, np.ndarray]) -> None:
        """Writes batch ``batch`` into ``out`` (see :meth:`layout`)."""
        first = batch * self.batch_size
        for row in range(self.batch_size):
            video_id, label, counts = self.video_of(first + row)
            make_sample_uint8(self.stores, video_id, counts, self.spec, self.sample_rng(first + row), self.mirror,
                              out={m: out[m][row:row + 1] for m in self.spec.modalities})
            out[LABEL][row] = label


class ProtocolCrops:
    """The crops of the paper's test protocol, one sampled frame per item (see the module docstring).

    Args:
        stores: ``{modality: frame store}`` of the test subset.
        videos: ``[(video_id, N)]`` with N the video's RGB frame count, in scoring order.
        frames: frames sampled per video (25); crop_mode: ``"ten"`` or ``"center"``; crop_size: crop side;
        stack_length: flow images per stack; rgb_at_stack_centre: the RGB frame of a sample is the middle of its
            stack (the authors' fusion test) instead of its first frame.

    ``fill(i, out)`` writes ``out[modality]`` uint8 ``crops x C x c x c`` of frame ``i % frames`` of video
    ``i // frames``.
    """

    def __init__(self, stores: Mapping[str, object], videos: Sequence[tuple[str, int]], frames: int, crop_mode: str,
                 crop_size: int, stack_length: int, rgb_at_stack_centre: bool = False):
        self.stores, self.videos = dict(stores), list(videos)
        self.frames, self.crop_mode, self.crop_size = frames, crop_mode, crop_size
        self.stack_length, self.rgb_at_stack_centre = stack_length, rgb_at_stack_centre
        self.crops_per_frame = len(crop_boxes(crop_size, crop_size, crop_size, crop_mode))

    def __len__(self) -> int:
        return len(self.videos) * self.frames

    def layout(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """``{modality: ((crops, C, c, c), "uint8")}``."""
        return {m: ((self.crops_per_frame, input_channels(m, self.stack_length), self.crop_size, self.crop_size),
                    "uint8") for m in self.stores}

    def fill(self, item: int, out: Mapping[str, np.ndarray]) -> None:
        """Writes the crops of item ``item`` into ``out`` (see :meth:`layout`)."""
        video_id, num_frames = self.videos[item // self.frames]
        t = int(sample_positions(num_frames, self.frames, self.stack_length)[item % self.frames])
        rgb_t = rgb_index(t, num_frames, self.stack_length, self.rgb_at_stack_centre)
        images = read_images(self.stores, video_id, t, self.stack_length, rgb_t)
        first = images[next(iter(images))]
        height, width = (first[0].shape[0], first[0].shape[1] // 2) if isinstance(first, list) else first.shape[:2]
        cut_crops(images, crop_boxes(height, width, self.crop_size, self.crop_mode), self.crop_size, out)


def to_net_inputs(item: Mapping[str, np.ndarray], means: Mapping[str, object], out: Mapping[str, np.ndarray],
                  pool: Executor | None = None, parts: int = 1, rows: slice = slice(None),
                  out_rows: slice = slice(None)) -> None:
    """Net inputs from uint8 crops: ``out[name][out_rows] = item[name][rows] - means[name]`` (float32) for every
    name of ``out``, each cut into ``parts`` row blocks converted on the threads of ``pool`` (numpy releases
    the GIL while it converts)."""
    jobs = []
    for name, target in out.items():
        source, target = item[name][rows], target[out_rows]
        if source.shape != target.shape:
            raise ValueError(f"{name}: crops {source.shape} do not fit the input {target.shape}")
        bounds = np.linspace(0, len(source), min(len(source), parts) + 1).astype(int)
        jobs += [(source[a:b], means[name], target[a:b]) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    if pool is None or len(jobs) == 1:
        for source, mean, target in jobs:
            normalize(source, mean, out=target)
        return
    for future in [pool.submit(normalize, source, mean, out=target) for source, mean, target in jobs]:
        future.result()
