"""Crops of a sample's images: the test-time 10 crops and centre crop, the training-time random crop.

Test time (paper §5.2): four corners and the centre, each also mirrored: 10 crops per frame. Geometry and
order follow ``caffe.io.oversample``: boxes at (top, left), (top, right), (bottom, left), (bottom, right) and
the centre ``((H - h) // 2, (W - w) // 2)``, then the same five mirrored. ``mode="center"`` gives the single
unmirrored centre crop.

All modalities of one sample share the crop boxes and flips (``crop_modalities``). Mirroring a flow image
inverts its x component: quantised x channels become ``255 - q`` (``x_channels``, the even channels
``x1, y1, x2, y2, ...`` of a flow stack: ``FLOW_X_CHANNELS``).

Training time (:func:`choose_crop`): a uniformly placed crop and a fair-coin mirror, or the centre crop in
deterministic mode.

Output: float32 ``N x C x h x w`` arrays (Caffe's layout), minus a mean given by the caller
(``mfuse.conventions.MEANS``: BGR 104, 117, 123 for RGB, 128 for flow, ``None`` for magnitude).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from mfuse.conventions import CROP_MODES, CROP_SIZE

#: The x channels of a flow stack ``x1, y1, ..., xL, yL``: inverted (``255 - q``) by a mirror.
FLOW_X_CHANNELS = slice(0, None, 2)

Mean = float | Sequence[float] | np.ndarray | None
ChannelSelector = slice | Sequence[int] | None


class CropBox(NamedTuple):
    """Top-left corner (``top``, ``left``) of a crop and whether it is mirrored."""

    top: int
    left: int
    mirror: bool


def crop_boxes(height: int, width: int, crop_size: int | tuple[int, int] = CROP_SIZE, mode: str = "ten"
               ) -> list[CropBox]:
    """The crop boxes of an ``height x width`` image, in ``caffe.io.oversample`` order (10 for ``"ten"``,
    1 for ``"center"``). ``crop_size``: an int (square) or (crop_height, crop_width)."""
    crop_h, crop_w = _crop_hw(crop_size)
    if crop_h > height or crop_w > width:
        raise ValueError(f"crop {crop_h}x{crop_w} does not fit in an image of {height}x{width}")
    centre = CropBox((height - crop_h) // 2, (width - crop_w) // 2, False)
    if mode == "center":
        return [centre]
    if mode != "ten":
        raise ValueError(f"unknown crop mode {mode!r}; expected one of {CROP_MODES}")
    five = [CropBox(top, left, False) for top in (0, height - crop_h) for left in (0, width - crop_w)] + [centre]
    return five + [box._replace(mirror=True) for box in five]


def choose_crop(height: int, width: int, crop_size: int, rng: np.random.RandomState | None,
                mirror: bool) -> CropBox:
    """A training crop box: uniform position and a fair-coin mirror (when ``mirror``), or the centre when
    ``rng`` is None."""
    if crop_size > height or crop_size > width:
        raise ValueError(f"crop {crop_size} does not fit frames of {height}x{width}")
    if rng is None:
        return crop_boxes(height, width, crop_size, "center")[0]
    top = int(rng.randint(0, height - crop_size + 1))
    left = int(rng.randint(0, width - crop_size + 1))
    return CropBox(top, left, bool(mirror and rng.randint(2)))


def _crop_hw(crop_size: int | tuple[int, int]) -> tuple[int, int]:
    crop_h, crop_w = (crop_size, crop_size) if np.isscalar(crop_size) else crop_size
    if crop_h < 1 or crop_w < 1:
        raise ValueError(f"crop size must be positive, got {crop_size}")
    return int(crop_h), int(crop_w)


def _as_hwc(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        return image[:, :, None]
    if image.ndim != 3:
        raise ValueError(f"expected an H x W or H x W x C image, got shape {image.shape}")
    return image


def flow_x_channels(modalities) -> dict[str, slice]:
    """The ``x_channels`` argument of :func:`crop_modalities` for a sample of ``modalities``."""
    return {"flow": FLOW_X_CHANNELS} if "flow" in modalities else {}


def split_flow_image(image: np.ndarray) -> np.ndarray:
    """An ``H x 2W`` flow image (x in columns [0, W), y in [W, 2W)) as an ``H x W x 2`` array (x, y)."""
    image = np.asarray(image)
    if image.ndim != 2 or image.shape[1] % 2:
        raise ValueError(f"expected a grey H x 2W flow image, got shape {image.shape}")
    half = image.shape[1] // 2
    return np.stack([image[:, :half], image[:, half:]], axis=2)


def stack_flow(images: Sequence[np.ndarray]) -> np.ndarray:
    """``L`` flow images (``H x 2W`` each) as one ``H x W x 2L`` stack: channels x1, y1, ..., xL, yL."""
    if not len(images):
        raise ValueError("stack_flow needs at least one flow image")
    pairs = [split_flow_image(image) for image in images]
    shapes = {p.shape for p in pairs}
    if len(shapes) != 1:
        raise ValueError(f"flow images of a stack differ in size: {sorted(shapes)}")
    return np.concatenate(pairs, axis=2)


def _subtract_mean(crops: np.ndarray, mean: Mean) -> np.ndarray:
    if mean is None:
        return crops
    mean = np.asarray(mean, dtype=np.float32)
    if mean.ndim == 0:
        return crops - mean
    if mean.shape != (crops.shape[1],):
        raise ValueError(f"mean has {mean.size} values for {crops.shape[1]} channels")
    return crops - mean[None, :, None, None]


def crop_image(image: np.ndarray, crop_size: int | tuple[int, int] = CROP_SIZE, mode: str = "ten", *,
               mean: Mean = None, x_channels: ChannelSelector = None,
               boxes: Sequence[CropBox] | None = None) -> np.ndarray:
    """Crops of one ``H x W`` or ``H x W x C`` uint8 image as a float32 ``N x C x h x w`` array.

    ``x_channels``: channels holding quantised x flow, inverted (``255 - q``) in mirrored crops.
    ``mean``: scalar or per-channel mean subtracted after cropping (``None``: nothing subtracted).
    ``boxes``: explicit crop boxes (default ``crop_boxes(H, W, crop_size, mode)``).
    """
    image = _as_hwc(image)
    height, width, channels = image.shape
    crop_h, crop_w = _crop_hw(crop_size)
    boxes = crop_boxes(height, width, (crop_h, crop_w), mode) if boxes is None else boxes
    out = np.empty((len(boxes), crop_h, crop_w, channels), np.float32)
    x_index = np.arange(channels)[x_channels] if x_channels is not None else np.empty(0, int)
    for i, box in enumerate(boxes):
        if box.top < 0 or box.left < 0 or box.top + crop_h > height or box.left + crop_w > width:
            raise ValueError(f"crop box {box} of {crop_h}x{crop_w} outside the {height}x{width} image")
        patch = image[box.top:box.top + crop_h, box.left:box.left + crop_w].astype(np.float32)
        if box.mirror:
            patch = patch[:, ::-1]
            patch[:, :, x_index] = 255.0 - patch[:, :, x_index]
        out[i] = patch
    return _subtract_mean(np.ascontiguousarray(out.transpose(0, 3, 1, 2)), mean)


def crop_modalities(images: Mapping[str, np.ndarray], crop_size: int | tuple[int, int] = CROP_SIZE,
                    mode: str = "ten", *, means: Mapping[str, Mean],
                    x_channels: Mapping[str, ChannelSelector] | None = None,
                    boxes: Sequence[CropBox] | None = None) -> dict[str, np.ndarray]:
    """Crop every modality of one sample with the same boxes and mirrors.

    ``images``: ``{name: H x W (x C) uint8}``, all of the same ``H x W`` (e.g. ``{"rgb": frame,
    "flow": stack_flow(...), "mag": magnitude}``); ``means``: ``{name: mean or None}`` for every name;
    ``x_channels``: ``{name: x-flow channels}`` for the modalities that hold x flow (e.g.
    ``{"flow": FLOW_X_CHANNELS}``, see :func:`flow_x_channels`); ``boxes``: explicit crop boxes (default
    ``crop_boxes(H, W, crop_size, mode)``). Returns ``{name: float32 N x C x h x w}``.
    """
    if not images:
        raise ValueError("crop_modalities needs at least one image")
    sizes = {name: _as_hwc(image).shape[:2] for name, image in images.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"modalities of one sample differ in size: {sizes}")
    missing = set(images) - set(means)
    if missing:
        raise ValueError(f"no mean given for {sorted(missing)} (use None for no mean subtraction)")
    x_channels = x_channels or {}
    unknown = set(x_channels) - set(images)
    if unknown:
        raise ValueError(f"x_channels names modalities that are not in images: {sorted(unknown)}")
    height, width = next(iter(sizes.values()))
    boxes = crop_boxes(height, width, crop_size, mode) if boxes is None else boxes
    return {name: crop_image(image, crop_size, boxes=boxes, mean=means[name], x_channels=x_channels.get(name))
            for name, image in images.items()}
