"""Multiplicative fusion (Park et al., WACV 2016, Sec. 4.1) as a Python layer.

The twin of the fork's C++ ``MultiplicativeFusion`` layer, for stock pycaffe users and as a readable
reference::

    top = prod_s act(W_s x_s + b_s)

with ``x_s`` the S >= 2 bottoms, all ``(N, C_s, H, W)`` (same N, H, W) or all ``(N, C_s)``, ``W_s`` a
``(K, C_s)`` projection applied at every position (a 1x1 convolution), ``b_s`` the constant
``bias_value`` (gamma = delta = 1 in the paper) or a learnable K-vector, ``act`` the identity (``NONE``, the
paper's formula) or a ReLU (``RELU``, the authors' code). ``spatial: DOT`` sums the product over the H x W
positions (top ``(N, K, 1, 1)``).

Learnable blobs, in the C++ layer's order, per stream s in bottom order: the weight -- ``(K, C_s, 1, 1)``
for 4-D bottoms (a 1x1 Convolution's shape), ``(K, C_s)`` for 2-D ones (an InnerProduct's) -- then, only
when ``bias_learnable``, the bias ``(K,)``. Prototxt::

    layer { name: "fuse" type: "Python" bottom: "rgb_pool5" bottom: "flow_pool5" top: "fuse"
            python_param { module: "mfuse.layers.multiplicative_fusion" layer: "MultiplicativeFusion"
                           param_str: '{"num_output": 2048, "activation": "RELU"}' } }

``param_str`` keys (JSON/YAML): ``num_output`` (required, > 0); ``weight_filler`` (a Caffe filler as a
mapping, default ``{"type": "xavier"}``); ``stream_weight_filler`` (a list of fillers, one per stream,
overriding ``weight_filler``); ``bias_value`` (1.0); ``bias_learnable`` (false); ``activation``
(NONE | RELU); ``spatial`` (ELEMENTWISE | DOT); ``seed`` (0, of the weight fillers' numpy generator).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import caffe
import numpy as np

from mfuse.layers.params import REQUIRED, Param, parse_param_str

LAYER = "MultiplicativeFusion"

# Caffe filler types and the keys each accepts (FillerParameter fields, same defaults).
FILLER_KEYS = {
    "constant": {"value": 0.0},
    "uniform": {"min": 0.0, "max": 1.0},
    "gaussian": {"mean": 0.0, "std": 1.0},
    "xavier": {"variance_norm": "FAN_IN"},
    "msra": {"variance_norm": "FAN_IN"},
}
VARIANCE_NORMS = ("FAN_IN", "FAN_OUT", "AVERAGE")


def _is_filler(spec: Any) -> bool:
    if not isinstance(spec, dict) or spec.get("type") not in FILLER_KEYS:
        return False
    accepted = FILLER_KEYS[spec["type"]]
    for key, value in spec.items():
        if key == "type":
            continue
        if key not in accepted:
            return False
        if key == "variance_norm":
            if str(value).upper() not in VARIANCE_NORMS:
                return False
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
    return True


FILLER_RULE = (f"a filler mapping with 'type' in {sorted(FILLER_KEYS)} and that type's keys "
               f"{ {k: sorted(v) for k, v in FILLER_KEYS.items()} }")

SCHEMA = {
    "num_output": Param(REQUIRED, int, check=lambda v: v > 0, rule="num_output (K) must be > 0"),
    "weight_filler": Param({"type": "xavier"}, dict, check=_is_filler, rule=FILLER_RULE),
    "stream_weight_filler": Param([], list, check=lambda v: all(_is_filler(f) for f in v),
                                  rule=f"a list of fillers, each {FILLER_RULE}"),
    "bias_value": Param(1.0, float),
    "bias_learnable": Param(False, bool),
    "activation": Param("NONE", str, choices=("NONE", "RELU")),
    "spatial": Param("ELEMENTWISE", str, choices=("ELEMENTWISE", "DOT")),
    "seed": Param(0, int),
}


def fill(spec: dict[str, Any], shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Draws an array like Caffe's filler ``spec`` would (same distribution, not the same numbers).

    Fan-in is ``count / shape[0]`` and fan-out ``count / shape[1]``, as in Caffe's Xavier/MSRA fillers.
    """
    kind = spec["type"]
    args = {**FILLER_KEYS[kind], **{k: v for k, v in spec.items() if k != "type"}}
    if kind == "constant":
        return np.full(shape, args["value"], dtype=np.float64)
    if kind == "uniform":
        return rng.uniform(args["min"], args["max"], size=shape)
    if kind == "gaussian":
        return rng.normal(args["mean"], args["std"], size=shape)
    count = int(np.prod(shape))
    fan_in, fan_out = count / shape[0], count / shape[1]
    norm = {"FAN_IN": fan_in, "FAN_OUT": fan_out,
            "AVERAGE": (fan_in + fan_out) / 2}[str(args["variance_norm"]).upper()]
    if kind == "xavier":
        scale = np.sqrt(3.0 / norm)
        return rng.uniform(-scale, scale, size=shape)
    return rng.normal(0.0, np.sqrt(2.0 / norm), size=shape)  # msra


def check_bottom_shapes(shapes: Sequence[tuple[int, ...]], layer: str = LAYER) -> None:
    """Raises ValueError unless the bottom shapes can be fused (the C++ layer's rules).

    Args:
        shapes: S shapes, all ``(N, C_s, H, W)`` with equal N, H, W, or all ``(N, C_s)`` with equal N.
    """
    if len(shapes) < 2:
        raise ValueError(f"{layer}: needs at least 2 bottoms (streams to fuse), got {len(shapes)}: "
                         f"{[tuple(s) for s in shapes]}")
    first = tuple(shapes[0])
    if len(first) not in (2, 4):
        raise ValueError(f"{layer}: bottoms must be 4-D (N x C x H x W) or 2-D (N x C); bottom[0] is {first}")
    for s, shape in enumerate(shapes[1:], start=1):
        shape = tuple(shape)
        if len(shape) != len(first):
            raise ValueError(f"{layer}: all bottoms must have the same number of axes; "
                             f"bottom[0] is {first}, bottom[{s}] is {shape}")
        if shape[0] != first[0]:
            raise ValueError(f"{layer}: all bottoms must have the same N; bottom[0] is {first}, "
                             f"bottom[{s}] is {shape}")
        if shape[2:] != first[2:]:
            raise ValueError(f"{layer}: all bottoms must have the same H x W; bottom[0] is {first}, "
                             f"bottom[{s}] is {shape}")


def _flat(x: np.ndarray) -> np.ndarray:
    """``(N, C, H, W)`` or ``(N, C)`` -> ``(N, C, P)`` float64, P = H*W (1 for 2-D)."""
    return np.asarray(x, dtype=np.float64).reshape(x.shape[0], x.shape[1], -1)


def _activate(z: np.ndarray, relu: bool) -> np.ndarray:
    return np.maximum(z, 0.0) if relu else z


def project(bottoms: Sequence[np.ndarray], weights: Sequence[np.ndarray],
            biases: Sequence[Any]) -> list[np.ndarray]:
    """The shifted projections ``z_s = W_s x_s + b_s``, each ``(N, K, P)`` float64.

    Args:
        bottoms: S arrays ``(N, C_s, H, W)`` or ``(N, C_s)``.
        weights: S arrays ``(K, C_s)`` (trailing 1x1 axes allowed).
        biases: S floats or ``(K,)`` arrays.
    """
    projections = []
    for x, w, b in zip(bottoms, weights, biases):
        w = np.asarray(w, dtype=np.float64).reshape(w.shape[0], -1)
        b = np.broadcast_to(np.asarray(b, dtype=np.float64), (w.shape[0],))
        projections.append(np.matmul(w, _flat(x)) + b[:, None])
    return projections


def fusion_forward(bottoms: Sequence[np.ndarray], weights: Sequence[np.ndarray], biases: Sequence[Any],
                   relu: bool, dot: bool) -> np.ndarray:
    """``prod_s act(W_s x_s + b_s)``: ``(N, K, H, W)`` / ``(N, K)``; DOT ``(N, K, 1, 1)`` / ``(N, K)``.

    Computed in float64; arguments as in :func:`project`.
    """
    product = np.prod([_activate(z, relu) for z in project(bottoms, weights, biases)], axis=0)
    n, k = product.shape[:2]
    if dot:
        return product.sum(axis=2).reshape((n, k) + (1,) * (bottoms[0].ndim - 2))
    return product.reshape((n, k) + bottoms[0].shape[2:])


def fusion_backward(top_diff: np.ndarray, bottoms: Sequence[np.ndarray], weights: Sequence[np.ndarray],
                    biases: Sequence[Any], relu: bool, dot: bool
                    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Gradients of ``sum(top_diff * fusion_forward(...))``, float64.

    Returns:
        (bottom gradients shaped like the bottoms, weight gradients shaped like the weights,
        bias gradients ``(K,)``), one per stream.
    """
    projections = project(bottoms, weights, biases)
    activations = [_activate(z, relu) for z in projections]
    n, k, positions = projections[0].shape
    grad = np.asarray(top_diff, dtype=np.float64).reshape(n, k, -1)
    grad = np.broadcast_to(grad, (n, k, positions))  # DOT: spread over positions
    bottom_diffs, weight_diffs, bias_diffs = [], [], []
    for s, (x, w) in enumerate(zip(bottoms, weights)):
        others = np.prod([a for r, a in enumerate(activations) if r != s], axis=0)
        dz = grad * others * ((projections[s] > 0) if relu else 1.0)
        w2 = np.asarray(w, dtype=np.float64).reshape(w.shape[0], -1)
        weight_diffs.append(np.einsum("nkp,ncp->kc", dz, _flat(x)).reshape(w.shape))
        bias_diffs.append(dz.sum(axis=(0, 2)))
        bottom_diffs.append(np.matmul(w2.T, dz).reshape(x.shape))
    return bottom_diffs, weight_diffs, bias_diffs


def _blob_list(blobs) -> list:
    """pycaffe's vector of raw blob pointers can be indexed but not iterated."""
    return [blobs[i] for i in range(len(blobs))]


class MultiplicativeFusion(caffe.Layer):
    """Python twin of the C++ ``MultiplicativeFusion`` layer (see the module docstring)."""

    def setup(self, bottom, top):
        self.params = parse_param_str(self.param_str, SCHEMA, LAYER)
        shapes = [tuple(b.data.shape) for b in _blob_list(bottom)]
        check_bottom_shapes(shapes)
        fillers = self.params["stream_weight_filler"]
        if fillers and len(fillers) != len(bottom):
            raise ValueError(f"{LAYER}: stream_weight_filler must be given once per stream "
                             f"({len(bottom)} bottoms), got {len(fillers)}")
        self.relu = self.params["activation"] == "RELU"
        self.dot = self.params["spatial"] == "DOT"
        self.learnable = self.params["bias_learnable"]
        self.channels = [shape[1] for shape in shapes]
        k = self.params["num_output"]
        weight_shapes = [(k, c) + (1, 1) * (len(shapes[0]) == 4) for c in self.channels]
        per_stream = 2 if self.learnable else 1
        if len(self.blobs) == 0:
            rng = np.random.default_rng(self.params["seed"])
            for s, shape in enumerate(weight_shapes):
                self.blobs.add_blob(*shape)
                self.blobs[per_stream * s].data[...] = fill(
                    fillers[s] if fillers else self.params["weight_filler"], shape, rng)
                if self.learnable:
                    self.blobs.add_blob(k)
                    self.blobs[2 * s + 1].data[...] = self.params["bias_value"]
        found = [tuple(b.data.shape) for b in self.blobs]
        expected = [shape for w in weight_shapes for shape in ([w, (k,)] if self.learnable else [w])]
        if found != expected:
            raise ValueError(f"{LAYER}: blobs {found} do not fit bottoms {shapes}; expected {expected}")

    def _weights(self) -> list[np.ndarray]:
        per_stream = 2 if self.learnable else 1
        return [self.blobs[per_stream * s].data for s in range(len(self.channels))]

    def _biases(self) -> list[Any]:
        if self.learnable:
            return [self.blobs[2 * s + 1].data for s in range(len(self.channels))]
        return [self.params["bias_value"]] * len(self.channels)

    def reshape(self, bottom, top):
        shapes = [tuple(b.data.shape) for b in _blob_list(bottom)]
        check_bottom_shapes(shapes)
        if [shape[1] for shape in shapes] != self.channels:
            raise ValueError(f"{LAYER}: bottoms {shapes} have channels other than the "
                             f"{self.channels} the layer was set up for")
        n, k = shapes[0][0], self.params["num_output"]
        spatial = shapes[0][2:]
        top[0].reshape(n, k, *((1,) * len(spatial) if self.dot else spatial))

    def forward(self, bottom, top):
        top[0].data[...] = fusion_forward([b.data for b in _blob_list(bottom)], self._weights(), self._biases(),
                                          self.relu, self.dot)

    def backward(self, top, propagate_down, bottom):
        bottom_diffs, weight_diffs, bias_diffs = fusion_backward(
            top[0].diff, [b.data for b in _blob_list(bottom)], self._weights(), self._biases(), self.relu, self.dot)
        per_stream = 2 if self.learnable else 1
        for s, blob in enumerate(_blob_list(bottom)):
            if propagate_down[s]:
                blob.diff[...] = bottom_diffs[s]
            self.blobs[per_stream * s].diff[...] += weight_diffs[s]
            if self.learnable:
                self.blobs[2 * s + 1].diff[...] += bias_diffs[s]
