"""Optical flow between consecutive frames and its 8-bit image encodings.

Algorithms (all on 8-bit grayscale frames, returning ``(H, W, 2)`` float32 flow in pixels, x then y):

- ``tvl1``: OpenCV ``optflow.DualTVL1OpticalFlow`` with its default parameters (the default; the
  algorithm of dense_flow/TSN, the successors of Simonyan & Zisserman's two-stream work);
- ``farneback``: ``cv2.calcOpticalFlowFarneback`` (pyr_scale 0.5, 3 levels, window 15, 3 iterations,
  poly_n 5, poly_sigma 1.2), faster;
- ``dis``: ``cv2.DISOpticalFlow`` with the MEDIUM preset, fastest.

Camera-motion compensation (:func:`subtract_camera_motion`, before quantisation): Simonyan and Zisserman
(NIPS 2014, Sec. 3.1 "Mean flow subtraction"), whose flow protocol Park et al. "strictly followed", subtract
from every displacement field its mean vector, per frame and per component; the authors' code did the same.
``mean`` is that (the default); ``median`` subtracts the per-component median instead, robust when a moving
object covers a large part of the frame; ``none`` keeps the raw flow (TSN / dense_flow's convention). The
magnitude is computed from the compensated flow.

Encodings (the project's conventions, docs/conventions.md):

- x and y are clipped to ``[-bound, bound]`` (default 20) and quantised to
  ``q = rint(255 * (v + bound) / (2 * bound))``; dequantise with ``v = q * 2 * bound / 255 - bound``.
- ``flow_<t>.jpg``: one grayscale image ``(H, 2W)``, quantised x in columns ``[0, W)``, y in ``[W, 2W)``
  (:func:`pack_flow` / :func:`unpack_flow`).
- ``mag_<t>.jpg``: ``rint(sqrt(x^2 + y^2))`` of the (compensated) unclipped flow in pixels, clipped to 255.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

ALGORITHMS = ("tvl1", "farneback", "dis")
DEFAULT_BOUND = 20.0
#: Camera-motion compensations of :func:`subtract_camera_motion`; the first is the default ([18], Sec. 3.1).
SUBTRACTIONS = ("mean", "median", "none")

FlowFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]


def create_flow_function(algorithm: str = "tvl1") -> FlowFunction:
    """A function ``flow(prev, next) -> (H, W, 2) float32`` for two ``(H, W)`` uint8 gray frames.

    The OpenCV object is created once and reused by the returned function (it is not thread-safe:
    make one per process).
    """
    if algorithm == "tvl1":
        calc = cv2.optflow.DualTVL1OpticalFlow_create().calc
    elif algorithm == "farneback":
        def calc(prev, nxt, flow):
            return cv2.calcOpticalFlowFarneback(prev, nxt, flow, 0.5, 3, 15, 3, 5, 1.2, 0)
    elif algorithm == "dis":
        calc = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc
    else:
        raise ValueError(f"unknown flow algorithm {algorithm!r}; known: {ALGORITHMS}")

    def flow(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        if prev.shape != nxt.shape or prev.ndim != 2 or prev.dtype != np.uint8:
            raise ValueError(f"flow needs two uint8 gray frames of one size, got {prev.shape} {prev.dtype} "
                             f"and {nxt.shape} {nxt.dtype}")
        return calc(np.ascontiguousarray(prev), np.ascontiguousarray(nxt), None)

    return flow


def subtract_camera_motion(flow: np.ndarray, method: str = "mean") -> np.ndarray:
    """``(H, W, 2)`` flow minus its per-frame ``mean`` (or ``median``) vector, per component; ``none``:
    unchanged. Returns a new float32 array."""
    _check_flow(flow)
    flow = np.asarray(flow, np.float32)
    if method == "none":
        return flow.copy()
    vectors = flow.reshape(-1, 2)
    if method == "mean":
        centre = vectors.mean(axis=0, dtype=np.float64)
    elif method == "median":
        centre = np.median(vectors, axis=0)
    else:
        raise ValueError(f"unknown flow subtraction {method!r}; known: {SUBTRACTIONS}")
    return flow - centre.astype(np.float32)


def quantize_flow(flow: np.ndarray, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """``(H, W, 2)`` float flow -> ``(H, W, 2)`` uint8, clipped to ``±bound`` and mapped to 0..255."""
    _check_flow(flow)
    if bound <= 0:
        raise ValueError(f"flow bound must be positive, got {bound}")
    scaled = (np.clip(flow, -bound, bound) + bound) * (255.0 / (2.0 * bound))
    return np.rint(scaled).astype(np.uint8)


def dequantize_flow(quantized: np.ndarray, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """Inverse of :func:`quantize_flow` (up to the quantisation step ``2 * bound / 255``): float32."""
    return quantized.astype(np.float32) * np.float32(2.0 * bound / 255.0) - np.float32(bound)


def flow_magnitude(flow: np.ndarray) -> np.ndarray:
    """``(H, W, 2)`` float flow -> ``(H, W)`` uint8 ``rint(sqrt(x^2 + y^2))`` clipped to 255."""
    _check_flow(flow)
    magnitude = cv2.magnitude(flow[..., 0], flow[..., 1])
    return np.rint(np.minimum(magnitude, 255.0)).astype(np.uint8)


def pack_flow(quantized: np.ndarray) -> np.ndarray:
    """``(H, W, 2)`` uint8 -> ``(H, 2W)`` uint8 with x in columns ``[0, W)`` and y in ``[W, 2W)``."""
    _check_flow(quantized)
    return np.ascontiguousarray(np.concatenate([quantized[..., 0], quantized[..., 1]], axis=1))


def unpack_flow(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(H, 2W)`` image of :func:`pack_flow` -> ``(x, y)``, each ``(H, W)``."""
    if packed.ndim != 2 or packed.shape[1] % 2:
        raise ValueError(f"packed flow must be (H, 2W) with an even width, got shape {packed.shape}")
    width = packed.shape[1] // 2
    return packed[:, :width], packed[:, width:]


def _check_flow(flow: np.ndarray) -> None:
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must have shape (H, W, 2), got {flow.shape}")
