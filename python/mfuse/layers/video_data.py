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
    rgb_mean ([104, 117, 123], BGR), flow_mean (128), prefetch (batches made ahead at least, 4),
    workers (-1: the usable cores but one, shared among the ranks; 0: batches made in the layer's forward),
    rank / num_ranks (0 / 1): the share of each epoch this layer reads, for multi-GPU training. A TRAIN layer
        in a multi-GPU run (``caffe.solver_count() > 1``: one pycaffe process per GPU, ``mfuse.training``)
        takes the solver's rank and count instead, as Caffe's own data layers do.

Tops: ``data_rgb`` B x 3 x c x c, ``data_flow`` B x 2L x c x c, ``data_mag`` B x 1 x c x c (raw 0..255
magnitudes), ``label`` B. With ``shuffle: false`` the samples are deterministic (middle frame, centre
crop, no mirror; for validation). Sampling rules: :mod:`mfuse.sampling` (``new_length`` is the stack
length L of ``mfuse.sampling.ClipSpec``; the key keeps TSN's name).

Each epoch visits every video once (in a seeded order). ``workers`` processes decode and crop the batches
ahead into shared memory as uint8 (:class:`mfuse.sampling.TrainBatches`, :class:`mfuse.processes.
ParallelProducer`); the layer's forward converts one batch to float32 minus the mean straight into its tops,
on a few threads. Processes, not threads: Caffe holds the GIL while the net runs, so a thread of this process
would decode only while the layer waits. Batch ``b`` is a pure function of the seed, the rank and ``b``,
whatever ``workers`` is; resuming sets the first batch through ``MFUSE_DATA_START_BATCH`` (see
``mfuse.conventions.START_BATCH_ENV``: ``mfuse.training`` sets it to ``iter * iter_size`` when resuming from a
``.solverstate``, so the resumed run sees the same batches as an uninterrupted one; with plain ``caffe train
-snapshot`` the data order restarts, as with Caffe's own data layers). The workers stop when the process
exits (or the layer is freed); a damaged store stops training with an error naming the database and the key.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import caffe
import numpy as np

from mfuse.conventions import (CROP_SIZE, FLOW_MEAN, MODALITIES, RGB_MEAN, SPLITS, STACK_LENGTH, START_BATCH_ENV,
                               STORAGES, SUBSETS, input_channels)
from mfuse.layers.params import REQUIRED, Param, parse_param_str
from mfuse.processes import ParallelProducer, default_workers
from mfuse.sampling import ClipSpec
from mfuse.sampling.batches import LABEL, TrainBatches, input_threads, to_net_inputs
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
    "workers": Param(-1, int, check=lambda v: v >= -1, rule="workers >= 0, or -1 for the usable cores but one"),
    "rank": Param(0, int, check=lambda v: v >= 0, rule="rank >= 0"),
    "num_ranks": Param(1, int, check=lambda v: v > 0, rule="num_ranks > 0"),
}


class VideoBatchLoader:
    """Batches of two-stream samples, independent of Caffe: :class:`mfuse.sampling.TrainBatches` made by
    ``workers`` processes (:class:`mfuse.processes.ParallelProducer`), converted to float32 here.

    Args:
        stores: ``{modality: frame store}`` (see :mod:`mfuse.stores.reader`), in top order.
        spec: what each sample holds.
        batch_size, shuffle, mirror, seed, rank, num_ranks: as the layer's param_str.
        start_batch: the first batch to produce (batches are a pure function of their index).
        workers: processes making batches (0: made in ``next_batch``); prefetch: batches made ahead at least
            (each worker keeps two slots); threads: threads converting a batch to float32.

    ``next_batch(out=None)`` returns ``{modality: float32 B x C x c x c, "label": float32 B}`` (written into
    ``out``, e.g. the layer's tops, when given). ``close()`` stops the workers (also done at exit).
    """

    def __init__(self, stores: Mapping[str, object], spec: ClipSpec, batch_size: int, shuffle: bool,
                 mirror: bool, seed: int, rank: int = 0, num_ranks: int = 1, start_batch: int = 0,
                 workers: int = 0, prefetch: int = 4, threads: int = 1):
        self.batches = TrainBatches(stores, spec, batch_size, shuffle, mirror, seed, rank, num_ranks)
        self.spec, self.batch_size, self.workers = spec, batch_size, workers
        self.videos, self.per_epoch = self.batches.videos, self.batches.per_epoch
        self.depth = max(2, -(-prefetch // workers)) if workers else 1
        self._source = ParallelProducer(self.batches, start_batch, None, workers, self.depth, "VideoDataLayer")
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="mfuse-inputs") if threads > 1 else None

    @property
    def sample_index(self) -> int:
        """The first sample of the next batch (0-based over the whole run)."""
        return self._source.next_index * self.batch_size

    @property
    def epoch(self) -> int:
        """The epoch the next sample belongs to."""
        return self.sample_index // self.per_epoch

    @property
    def worker_pids(self) -> list[int]:
        """The process ids of the workers."""
        return self._source.pids

    def video_of(self, index: int) -> tuple[str, int, dict[str, int]]:
        """``(video_id, label, {modality: images})`` of sample ``index``."""
        return self.batches.video_of(index)

    def next_batch(self, out: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """The next batch as float32 net inputs (into ``out`` when given); see the class docstring."""
        return self.convert(self._source.get(), out)

    def convert(self, item: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray] | None = None
                ) -> dict[str, np.ndarray]:
        """A uint8 batch (:meth:`mfuse.sampling.TrainBatches.fill`) as float32 minus the means, into ``out``."""
        if out is None:
            out = {m: np.empty(item[m].shape, np.float32) for m in self.spec.modalities}
            out[LABEL] = np.empty(self.batch_size, np.float32)
        to_net_inputs(item, self.spec.means, {m: out[m] for m in self.spec.modalities}, self._pool, self.threads)
        out[LABEL][...] = item[LABEL]
        return dict(out)

    def close(self) -> None:
        """Stops the worker processes and the conversion threads."""
        self._source.close()
        if self._pool is not None:
            self._pool.shutdown()


def open_stores(params: Mapping[str, object]) -> dict[str, object]:
    """The frame stores named by a validated param_str, in modality order."""
    return open_frame_stores(params["source"], params["split"], params["subset"].lower(), params["modalities"],
                             params["storage"].lower())


def worker_count(params: Mapping[str, object]) -> int:
    """The ``workers`` of a validated param_str, ``-1`` resolved: the usable cores but one (for the net's own
    thread), shared by the ``num_ranks`` ranks, at least one."""
    return params["workers"] if params["workers"] >= 0 else default_workers(params["num_ranks"])


def loader_from_params(params: Mapping[str, object], start_batch: int = 0) -> VideoBatchLoader:
    """A :class:`VideoBatchLoader` for a validated param_str, starting at batch ``start_batch``."""
    means = {"rgb": params["rgb_mean"], "flow": params["flow_mean"], "mag": None}
    spec = ClipSpec(tuple(params["modalities"]), params["new_length"], params["crop_size"], means)
    workers = worker_count(params)
    threads = input_threads() if workers else 1
    return VideoBatchLoader(open_stores(params), spec, params["batch_size"], params["shuffle"],
                            params["mirror"], params["seed"], params["rank"], params["num_ranks"], start_batch,
                            workers, params["prefetch"], threads)


def solver_share(params: Mapping[str, object], rank: int, count: int, name: str) -> dict[str, object]:
    """``params`` reading the share of solver ``rank`` of ``count``; ValueError naming the layer when its
    param_str sets another ``num_ranks``."""
    if params["num_ranks"] not in (1, count):
        raise ValueError(f"{name}: param_str num_ranks {params['num_ranks']} disagrees with the {count} solvers of "
                         f"this multi-GPU run; leave num_ranks out")
    return {**params, "rank": rank, "num_ranks": count}


class VideoDataLayer(caffe.Layer):
    """Caffe Python layer around :class:`VideoBatchLoader` (see the module docstring)."""

    def setup(self, bottom, top):
        name = self.__dict__.get("name", "VideoDataLayer")
        params = parse_param_str(self.param_str, SCHEMA, "VideoDataLayer")
        expected = len(params["modalities"]) + 1
        if bottom or len(top) != expected:
            raise ValueError(f"{name}: takes no bottom and {expected} tops (data_<modality>... label) for "
                             f"modalities {params['modalities']}, got {len(bottom)} bottoms, {len(top)} tops")
        if self.phase == caffe.TRAIN and caffe.solver_count() > 1:
            params = solver_share(params, caffe.solver_rank(), caffe.solver_count(), name)
        self.params = params
        start = int(os.environ.get(START_BATCH_ENV, "0")) if self.phase == caffe.TRAIN else 0
        self.loader = loader_from_params(params, start)

    def reshape(self, bottom, top):
        p = self.params
        for i, name in enumerate(p["modalities"]):
            top[i].reshape(p["batch_size"], input_channels(name, p["new_length"]), p["crop_size"], p["crop_size"])
        top[-1].reshape(p["batch_size"])

    def forward(self, bottom, top):
        tops = {name: top[i].data for i, name in enumerate(self.params["modalities"])}
        tops[LABEL] = top[-1].data
        self.loader.next_batch(out=tops)

    def backward(self, top, propagate_down, bottom):
        pass
