"""The video data layer: RGB frames, 10-frame flow stacks and magnitude maps for two-stream training.

Usable from the ``caffe`` binary (through the launcher ``.venv/bin/caffe``) and from pycaffe::

    layer { name: "data" type: "Python" top: "data_rgb" top: "data_flow" top: "data_mag" top: "label"
      python_param { module: "mfuse.layers.video_data" layer: "VideoDataLayer"
        param_str: '{"source": "data/ucf101", "split": 1, "subset": "train",
                     "modalities": ["rgb", "flow", "mag"], "batch_size": 64}' } }

``param_str`` keys (JSON/YAML, validated):
    source (required): a prepared dataset folder (``<out>`` of ``tools/prepare.py``).
    storage: ``lmdb`` (default) or ``folder``.
    split (1..3), subset (``train``/``test``).
    modalities (required): non-empty list of ``rgb``, ``flow``, ``mag``; tops ``data_<modality>`` in this
        order, then ``label``.
    batch_size (32), new_length (10), crop_size (224), mirror (true), shuffle (true), seed (1),
    rgb_mean ([104, 117, 123], BGR), flow_mean (128), prefetch (batches, 4),
    rank / num_ranks (0 / 1): the share of each epoch this layer reads, for multi-GPU training.

Tops: ``data_rgb`` B x 3 x c x c, ``data_flow`` B x 2L x c x c, ``data_mag`` B x 1 x c x c (raw 0..255
magnitudes), ``label`` B. With ``shuffle: false`` the samples are deterministic (middle frame, centre
crop, no mirror; for validation). Sampling rules: :mod:`mfuse.sampling` (``new_length`` is the stack
length L of ``mfuse.sampling.ClipSpec``; the key keeps TSN's name).

Each epoch visits every video once (in a seeded order); batches are assembled by a background thread
(JPEG decoding releases the GIL), ``prefetch`` batches ahead. Batch ``b`` is a pure function of the seed,
the rank and ``b``; resuming sets the first batch through ``MFUSE_DATA_START_BATCH`` (see
``mfuse.conventions.START_BATCH_ENV``: ``mfuse.training`` sets it to ``iter * iter_size`` when resuming from a
``.solverstate``, so the resumed run sees the same batches as an uninterrupted one; with plain ``caffe train
-snapshot`` the data order restarts, as with Caffe's own data layers).
"""
from __future__ import annotations

import os
import queue
import threading
from collections.abc import Mapping

import caffe
import numpy as np

from mfuse.conventions import (CROP_SIZE, FLOW_MEAN, MODALITIES, RGB_MEAN, SPLITS, STACK_LENGTH, START_BATCH_ENV,
                               STORAGES, SUBSETS, input_channels)
from mfuse.layers.params import REQUIRED, Param, parse_param_str
from mfuse.sampling import ClipSpec, common_videos, epoch_order, make_sample
from mfuse.stores.reader import open_frame_stores

SCHEMA = {
    "source": Param(REQUIRED, str),
    "storage": Param("LMDB", str, choices=tuple(s.upper() for s in STORAGES)),
    "split": Param(1, int, check=lambda v: v in SPLITS, rule=f"split is one of {SPLITS}"),
    "subset": Param("TRAIN", str, choices=tuple(s.upper() for s in SUBSETS)),
    "modalities": Param(REQUIRED, list, check=lambda v: 0 < len(v) == len(set(v)) and set(v) <= set(MODALITIES),
                        rule=f"a non-empty list of distinct names among {list(MODALITIES)}"),
    "batch_size": Param(32, int, check=lambda v: v > 0, rule="batch_size > 0"),
    "new_length": Param(STACK_LENGTH, int, check=lambda v: v > 0, rule="new_length > 0"),
    "crop_size": Param(CROP_SIZE, int, check=lambda v: v > 0, rule="crop_size > 0"),
    "mirror": Param(True, bool),
    "shuffle": Param(True, bool),
    "seed": Param(1, int),
    "rgb_mean": Param([float(v) for v in RGB_MEAN], list, check=lambda v: len(v) == 3, rule="three BGR values"),
    "flow_mean": Param(float(FLOW_MEAN), float),
    "prefetch": Param(4, int, check=lambda v: v > 0, rule="prefetch > 0"),
    "rank": Param(0, int, check=lambda v: v >= 0, rule="rank >= 0"),
    "num_ranks": Param(1, int, check=lambda v: v > 0, rule="num_ranks > 0"),
}


class VideoBatchLoader:
    """Batches of two-stream samples, independent of Caffe.

    Args:
        stores: ``{modality: frame store}`` (see :mod:`mfuse.stores.reader`), in top order.
        spec: what each sample holds.
        batch_size, shuffle, mirror, seed, rank, num_ranks: as the layer's param_str.
        start_batch: the first batch to produce (batches are a pure function of their index).

    ``next_batch()`` returns ``{modality: float32 B x C x c x c, "label": float32 B}``.
    """

    def __init__(self, stores: Mapping[str, object], spec: ClipSpec, batch_size: int, shuffle: bool,
                 mirror: bool, seed: int, rank: int = 0, num_ranks: int = 1, start_batch: int = 0):
        self.stores, self.spec, self.batch_size = dict(stores), spec, batch_size
        self.shuffle, self.mirror, self.seed = shuffle, mirror, seed
        self.rank, self.num_ranks = rank, num_ranks
        self.videos = common_videos(self.stores)
        if len(self.videos) < num_ranks:
            raise ValueError(f"{len(self.videos)} videos cannot be shared by {num_ranks} ranks")
        self.per_epoch = len(epoch_order(len(self.videos), 0, seed, shuffle, rank, num_ranks))
        self.sample_index = start_batch * batch_size
        self._epoch_cache = (None, None)

    @property
    def epoch(self) -> int:
        """The epoch the next sample belongs to."""
        return self.sample_index // self.per_epoch

    def _video(self, index: int):
        epoch, position = divmod(index, self.per_epoch)
        if self._epoch_cache[0] != epoch:
            order = epoch_order(len(self.videos), epoch, self.seed, self.shuffle, self.rank, self.num_ranks)
            self._epoch_cache = (epoch, order)
        return self.videos[self._epoch_cache[1][position]]

    def _sample_rng(self, index: int) -> np.random.RandomState | None:
        # Each sample's frame, crop and mirror depend on (seed, rank, index) alone, so a loader started at
        # batch b yields exactly the batches b, b+1, ... of a loader started at 0.
        return np.random.RandomState([self.seed, self.rank, index]) if self.shuffle else None

    def next_batch(self) -> dict[str, np.ndarray]:
        samples, labels = [], []
        for _ in range(self.batch_size):
            index = self.sample_index
            self.sample_index += 1
            video_id, label, counts = self._video(index)
            samples.append(make_sample(self.stores, video_id, counts, self.spec, self._sample_rng(index),
                                       self.mirror))
            labels.append(label)
        batch = {name: np.stack([s[name] for s in samples]) for name in self.spec.modalities}
        batch["label"] = np.asarray(labels, np.float32)
        return batch


class _Prefetcher:
    """Runs ``produce()`` in a daemon thread, keeping up to ``depth`` results ahead."""

    def __init__(self, produce, depth: int):
        self._queue = queue.Queue(maxsize=depth)
        self._produce = produce
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            try:
                item = self._produce()
            except Exception as err:  # handed to the consumer, which raises it with context
                item = err
            self._queue.put(item)
            if isinstance(item, Exception):
                return

    def get(self):
        item = self._queue.get()
        if isinstance(item, Exception):
            raise RuntimeError(f"the data layer's loader failed: {item}") from item
        return item


def open_stores(params: Mapping[str, object]) -> dict[str, object]:
    """The frame stores named by a validated param_str, in modality order."""
    return open_frame_stores(params["source"], params["split"], params["subset"].lower(), params["modalities"],
                             params["storage"].lower())


def loader_from_params(params: Mapping[str, object], start_batch: int = 0) -> VideoBatchLoader:
    """A :class:`VideoBatchLoader` for a validated param_str, starting at batch ``start_batch``."""
    means = {"rgb": params["rgb_mean"], "flow": params["flow_mean"], "mag": None}
    spec = ClipSpec(tuple(params["modalities"]), params["new_length"], params["crop_size"], means)
    return VideoBatchLoader(open_stores(params), spec, params["batch_size"], params["shuffle"],
                            params["mirror"], params["seed"], params["rank"], params["num_ranks"], start_batch)


class VideoDataLayer(caffe.Layer):
    """Caffe Python layer around :class:`VideoBatchLoader` (see the module docstring)."""

    def setup(self, bottom, top):
        name = self.__dict__.get("name", "VideoDataLayer")
        params = parse_param_str(self.param_str, SCHEMA, "VideoDataLayer")
        expected = len(params["modalities"]) + 1
        if bottom or len(top) != expected:
            raise ValueError(f"{name}: takes no bottom and {expected} tops (data_<modality>... label) for "
                             f"modalities {params['modalities']}, got {len(bottom)} bottoms, {len(top)} tops")
        self.params = params
        start = int(os.environ.get(START_BATCH_ENV, "0")) if self.phase == caffe.TRAIN else 0
        self.loader = loader_from_params(params, start)
        self.prefetcher = _Prefetcher(self.loader.next_batch, params["prefetch"])

    def reshape(self, bottom, top):
        p = self.params
        for i, name in enumerate(p["modalities"]):
            top[i].reshape(p["batch_size"], input_channels(name, p["new_length"]), p["crop_size"], p["crop_size"])
        top[-1].reshape(p["batch_size"])

    def forward(self, bottom, top):
        batch = self.prefetcher.get()
        for i, name in enumerate(self.params["modalities"]):
            top[i].data[...] = batch[name]
        top[-1].data[...] = batch["label"]

    def backward(self, top, propagate_down, bottom):
        pass
