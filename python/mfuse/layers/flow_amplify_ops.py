"""FlowAmplify in numpy: the computation of the fork's ``FlowAmplify`` layer, without caffe.

Feature amplification by optical-flow magnitude (Park et al., WACV 2016, Sec. 3)::

    top[n, c] = feat[n, c] * gate[n]
    gate      = offset + scale * resize(min(|source|, clip_max))    (then / its spatial mean if MEAN)

Shapes: ``feat`` N x C x H x W; ``source`` N x G x H' x W' with G = 1 (a magnitude map, used as given)
or G = 2 (x/y flow: the magnitude is the per-pixel Euclidean norm); any H' x W'. ``resize`` reproduces
OpenCV's ``cv2.resize`` (INTER_AREA / INTER_LINEAR / INTER_NEAREST) as separable weight matrices, so
``resized = wy @ magnitude @ wx.T`` and its exact adjoint is ``wy.T @ d @ wx``.

Everything is computed in float64; the C++ layer (float or double) agrees to float precision. The pycaffe
layer ``mfuse.layers.flow_amplify.FlowAmplify`` and evaluation code call these functions.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mfuse.conventions import FLOW_AMPLIFY_DEFAULTS as DEFAULTS
from mfuse.conventions import FLOW_AMPLIFY_NORMALIZATIONS as NORMALIZATIONS
from mfuse.conventions import FLOW_AMPLIFY_RESIZES as RESIZE_METHODS
from mfuse.layers.params import Param, parse_param_str
# Per-sample gate means at or below this (absolute value) are refused under MEAN, as in the C++ layer.
MIN_GATE_MEAN = 1e-6

PARAM_SCHEMA = {
    "offset": Param(DEFAULTS["offset"], float, check=math.isfinite, rule="offset must be finite"),
    "scale": Param(DEFAULTS["scale"], float, check=math.isfinite, rule="scale must be finite"),
    "resize": Param(DEFAULTS["resize"], str, choices=RESIZE_METHODS),
    "clip_max": Param(DEFAULTS["clip_max"], float, check=lambda v: v >= 0, rule="clip_max >= 0 (0 disables clipping)"),
    "normalize": Param(DEFAULTS["normalize"], str, choices=NORMALIZATIONS),
    "allow_negative_scale": Param(DEFAULTS["allow_negative_scale"], bool),
}


@dataclass(frozen=True)
class FlowAmplifyParams:
    """The fields of the fork's ``FlowAmplifyParameter`` (same names, same defaults:
    ``mfuse.conventions.FLOW_AMPLIFY_DEFAULTS``).

    Args:
        offset: added to the scaled magnitude; 1 as in the paper ("scaled from 1").
        scale: multiplies the magnitude; 1 because magnitudes are stored as natural numbers of pixels.
        resize: "AREA", "BILINEAR" or "NEAREST" (OpenCV INTER_AREA / INTER_LINEAR / INTER_NEAREST).
        clip_max: magnitudes above it are clipped before resizing; 0 disables clipping.
        normalize: "NONE", or "MEAN" to divide each sample's gate by its spatial mean.
        allow_negative_scale: a negative ``scale`` is refused unless this is set.
    """
    offset: float = DEFAULTS["offset"]
    scale: float = DEFAULTS["scale"]
    resize: str = DEFAULTS["resize"]
    clip_max: float = DEFAULTS["clip_max"]
    normalize: str = DEFAULTS["normalize"]
    allow_negative_scale: bool = DEFAULTS["allow_negative_scale"]

    def __post_init__(self):
        if self.resize not in RESIZE_METHODS:
            raise ValueError(f"FlowAmplify: resize must be one of {list(RESIZE_METHODS)}, got {self.resize!r}")
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"FlowAmplify: normalize must be one of {list(NORMALIZATIONS)}, "
                             f"got {self.normalize!r}")
        if self.clip_max < 0:
            raise ValueError(f"FlowAmplify: clip_max must be >= 0 (0 disables clipping); got {self.clip_max}")
        if self.scale < 0 and not self.allow_negative_scale:
            raise ValueError(f"FlowAmplify: scale must be >= 0 unless allow_negative_scale is set; "
                             f"got scale {self.scale}")

    @classmethod
    def from_param_str(cls, param_str: str, layer: str = "FlowAmplify") -> FlowAmplifyParams:
        """Parses a JSON/YAML ``param_str``; raises ValueError naming ``layer`` on any bad key or value."""
        parsed = parse_param_str(param_str, PARAM_SCHEMA, layer)
        if parsed["scale"] < 0 and not parsed["allow_negative_scale"]:
            raise ValueError(f"{layer}: scale must be >= 0 unless allow_negative_scale is set; "
                             f"got scale {parsed['scale']}")
        return cls(**parsed)


def shape_string(shape: Sequence[int]) -> str:
    """Caffe's ``Blob::shape_string()``: ``"2 3 4 5 (120)"``."""
    return " ".join(str(d) for d in shape) + f" ({math.prod(shape)})"


def check_shapes(feat_shape: Sequence[int], source_shape: Sequence[int], layer: str = "FlowAmplify") -> None:
    """Checks the bottoms as the C++ layer does.

    Raises:
        ValueError: naming ``layer``, the broken rule and both shapes, when either is not 4-D, N differs,
            G is not 1 or 2, or either is zero-sized.
    """
    shapes = f" (features {shape_string(feat_shape)}, gate source {shape_string(source_shape)})"
    rules = [
        (len(feat_shape) == 4, "features must have 4 axes, N x C x H x W"),
        (len(source_shape) == 4, "the gate source must have 4 axes, N x G x H' x W'"),
        (feat_shape[0] == source_shape[0], "features and gate source must have the same N"),
        (source_shape[1] in (1, 2), "the gate source must have G = 1 (magnitude) or G = 2 (x/y flow) channels"),
        (math.prod(feat_shape) > 0, "features must not be zero-sized"),
        (math.prod(source_shape) > 0, "the gate source must not be zero-sized"),
    ]
    for holds, rule in rules:
        if not holds:
            raise ValueError(f"{layer}: {rule}{shapes}")


def resize_weights(src: int, dst: int, method: str, area_shrinks: bool = True) -> np.ndarray:
    """The ``dst x src`` matrix of ``cv2.resize`` along one axis (OpenCV's formulas, float32 weights).

    Args:
        src: source length (> 0).
        dst: destination length (> 0).
        method: "AREA", "BILINEAR" or "NEAREST".
        area_shrinks: AREA only: whether the image shrinks or keeps its size along BOTH axes. OpenCV then
            uses exact pixel-area weights; when either axis grows, its two-tap INTER_AREA upsampling weights.

    Returns:
        float64 array of shape (dst, src); row d holds the weights of destination pixel d.
    """
    if src <= 0 or dst <= 0:
        raise ValueError(f"resize_weights: lengths must be > 0, got src {src}, dst {dst}")
    weights = np.zeros((dst, src))
    inv_scale = dst / src  # as cv::resize, in double
    scale = 1.0 / inv_scale
    if method == "NEAREST":
        for d in range(dst):
            weights[d, min(math.floor(d * scale), src - 1)] = 1.0
        return weights
    if method == "AREA" and area_shrinks:
        for d in range(dst):  # computeResizeAreaTab
            fs1 = d * scale
            fs2 = fs1 + scale
            cell = min(scale, src - fs1)
            s2 = min(math.floor(fs2), src - 1)
            s1 = min(math.ceil(fs1), s2)
            if s1 - fs1 > 1e-3:
                weights[d, s1 - 1] += np.float32((s1 - fs1) / cell)
            for s in range(s1, s2):
                weights[d, s] += np.float32(1.0 / cell)
            if fs2 - s2 > 1e-3:
                weights[d, s2] += np.float32(min(fs2 - s2, 1.0, cell) / cell)
        return weights
    if method not in RESIZE_METHODS:
        raise ValueError(f"resize_weights: method must be one of {list(RESIZE_METHODS)}, got {method!r}")
    for d in range(dst):  # two taps, clamped at the edges
        if method == "BILINEAR":
            pos = (d + 0.5) * scale - 0.5
            s = math.floor(pos)
            frac = np.float32(pos - s)
        else:
            s = math.floor(d * scale)
            frac = np.float32((d + 1) - (s + 1) * inv_scale)
            frac = np.float32(0.0) if frac <= 0 else np.float32(frac - np.floor(frac))
        if s < 0:
            s, frac = 0, np.float32(0.0)
        if s >= src - 1:
            s, frac = src - 1, np.float32(0.0)
        weights[d, s] += np.float32(1.0) - frac
        if frac != 0:
            weights[d, s + 1] += frac
    return weights


def resize_matrices(src_hw: tuple[int, int], dst_hw: tuple[int, int], method: str
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``(wy, wx)`` with ``cv2.resize(m, (W, H)) == wy @ m @ wx.T`` for an ``src_hw`` map ``m``."""
    area_shrinks = dst_hw[0] <= src_hw[0] and dst_hw[1] <= src_hw[1]
    return (resize_weights(src_hw[0], dst_hw[0], method, area_shrinks),
            resize_weights(src_hw[1], dst_hw[1], method, area_shrinks))


def flow_magnitude(source: np.ndarray, clip_max: float = 0.0) -> np.ndarray:
    """N x G x H' x W' gate source -> N x H' x W' magnitude (G = 2: Euclidean norm), clipped if clip_max > 0."""
    source = np.asarray(source, dtype=np.float64)
    magnitude = source[:, 0] if source.shape[1] == 1 else np.sqrt(source[:, 0] ** 2 + source[:, 1] ** 2)
    return np.minimum(magnitude, clip_max) if clip_max > 0 else magnitude


def compute_gate(source: np.ndarray, out_hw: tuple[int, int], params: FlowAmplifyParams
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """The gate, N x H x W (float64), and the per-sample means it was divided by (MEAN; else None).

    Raises:
        ValueError: under MEAN, when a sample's gate mean is (near) zero.
    """
    wy, wx = resize_matrices(source.shape[2:], out_hw, params.resize)
    resized = np.einsum("yi,nij,xj->nyx", wy, flow_magnitude(source, params.clip_max), wx)
    gate = params.offset + params.scale * resized
    if params.normalize != "MEAN":
        return gate, None
    means = gate.mean(axis=(1, 2))
    bad = np.flatnonzero(np.abs(means) <= MIN_GATE_MEAN)
    if bad.size:
        raise ValueError(f"FlowAmplify: normalize: MEAN needs a gate whose spatial mean is not 0 "
                         f"(|mean| > {MIN_GATE_MEAN}); sample {bad[0]} has mean {means[bad[0]]}")
    return gate / means[:, None, None], means


def flow_amplify_forward(feat: np.ndarray, source: np.ndarray, params: FlowAmplifyParams) -> np.ndarray:
    """``feat * gate`` (gate broadcast over channels), float64, N x C x H x W."""
    check_shapes(feat.shape, source.shape)
    gate, _ = compute_gate(source, feat.shape[2:], params)
    return np.asarray(feat, dtype=np.float64) * gate[:, None]


def flow_amplify_backward(top_diff: np.ndarray, feat: np.ndarray, source: np.ndarray,
                          params: FlowAmplifyParams) -> tuple[np.ndarray, np.ndarray]:
    """Gradients ``(d feat, d source)`` of ``sum(top_diff * forward(feat, source))``, float64.

    The gate's gradient goes through the exact adjoint of every step: the MEAN normalisation, the resize
    (``wy.T @ d @ wx``), the clip (0 above clip_max) and the norm (x/|x|, 0 at 0).
    """
    check_shapes(feat.shape, source.shape)
    top_diff = np.asarray(top_diff, dtype=np.float64)
    source = np.asarray(source, dtype=np.float64)
    gate, means = compute_gate(source, feat.shape[2:], params)
    feat_diff = top_diff * gate[:, None]
    gate_diff = np.einsum("nchw,nchw->nhw", top_diff, np.asarray(feat, dtype=np.float64))
    if means is not None:
        dot = (gate_diff * gate).mean(axis=(1, 2), keepdims=True)
        gate_diff = (gate_diff - dot) / means[:, None, None]
    wy, wx = resize_matrices(source.shape[2:], feat.shape[2:], params.resize)
    magnitude_diff = params.scale * np.einsum("yi,nyx,xj->nij", wy, gate_diff, wx)
    raw = flow_magnitude(source)
    if params.clip_max > 0:
        magnitude_diff = np.where(raw > params.clip_max, 0.0, magnitude_diff)
    if source.shape[1] == 1:
        return feat_diff, magnitude_diff[:, None]
    safe = np.where(raw > 0, raw, 1.0)
    per_unit = np.where(raw > 0, magnitude_diff / safe, 0.0)
    return feat_diff, per_unit[:, None] * source
