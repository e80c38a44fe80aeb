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

The data path works in two steps, so that worker processes move bytes and the net's process only converts:
:func:`crop_uint8` / :func:`crop_flow_images` cut the crops as uint8 ``N x C x h x w`` (mirrors and ``255 - q``
applied; a flow stack is cut from its ``H x 2W`` images directly, never assembled at full size), and
:func:`normalize` turns them into float32 minus the mean. ``crop_image`` is the two in one; the results are
the same numbers, as every value is an integer below 256 until the mean is subtracted.
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


def normalize(crops: np.ndarray, mean: Mean, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 crops ``N x C x h x w`` as float32 minus ``mean`` (scalar, one value per channel, or None), into
    ``out`` when given (e.g. a net's input blob); returns the float32 array."""
    if mean is None:
        mean = np.float32(0)
    mean = np.asarray(mean, dtype=np.float32)
    if mean.ndim == 1:
        if mean.shape != (crops.shape[1],):
            raise ValueError(f"mean has {mean.size} values for {crops.shape[1]} channels")
        mean = mean[:, None, None]
    elif mean.ndim != 0:
        raise ValueError(f"mean must be a scalar or one value per channel, got shape {mean.shape}")
    if out is None:
        out = np.empty(crops.shape, np.float32)
    return np.subtract(crops, mean, out=out, dtype=np.float32)


def _check_box(box: CropBox, crop_h: int, crop_w: int, height: int, width: int) -> None:
    if box.top < 0 or box.left < 0 or box.top + crop_h > height or box.left + crop_w > width:
        raise ValueError(f"crop box {box} of {crop_h}x{crop_w} outside the {height}x{width} image")


def crop_uint8(image: np.ndarray, boxes: Sequence[CropBox], crop_size: int | tuple[int, int] = CROP_SIZE, *,
               x_channels: ChannelSelector = None, out: np.ndarray | None = None) -> np.ndarray:
    """Crops of one ``H x W`` or ``H x W x C`` uint8 image as uint8 ``N x C x h x w`` (into ``out`` if given; an
    image of another dtype gives crops of its dtype).

    ``x_channels``: channels holding quantised x flow, inverted (``255 - q``) in mirrored crops.
    """
    image = _as_hwc(image)
    height, width, channels = image.shape
    crop_h, crop_w = _crop_hw(crop_size)
    if out is None:
        out = np.empty((len(boxes), channels, crop_h, crop_w), image.dtype)
    x_index = np.arange(channels)[x_channels] if x_channels is not None else np.empty(0, int)
    for i, box in enumerate(boxes):
        _check_box(box, crop_h, crop_w, height, width)
        patch = image[box.top:box.top + crop_h, box.left:box.left + crop_w]
        out[i] = (patch[:, ::-1] if box.mirror else patch).transpose(2, 0, 1)
        if box.mirror and x_index.size:
            out[i, x_index] = 255 - out[i, x_index]
    return out


def crop_flow_images(images: Sequence[np.ndarray], boxes: Sequence[CropBox],
                     crop_size: int | tuple[int, int] = CROP_SIZE, out: np.ndarray | None = None) -> np.ndarray:
    """Crops of the flow stack of ``L`` grey ``H x 2W`` flow images (x in columns [0, W), y in [W, 2W)) as uint8
    ``N x 2L x h x w``, channels x1, y1, ..., xL, yL (the crops of ``stack_flow(images)``, without building it);
    mirrored crops flip every channel and invert x (``255 - q``)."""
    if not len(images):
        raise ValueError("a flow stack needs at least one flow image")
    shapes = {np.shape(image) for image in images}
    if len(shapes) != 1:
        raise ValueError(f"flow images of a stack differ in size: {sorted(shapes)}")
    shape = shapes.pop()
    if len(shape) != 2 or shape[1] % 2:
        raise ValueError(f"expected grey H x 2W flow images, got shape {shape}")
    height, width = shape[0], shape[1] // 2
    crop_h, crop_w = _crop_hw(crop_size)
    if out is None:
        out = np.empty((len(boxes), 2 * len(images), crop_h, crop_w), np.uint8)
    for i, box in enumerate(boxes):
        _check_box(box, crop_h, crop_w, height, width)
        rows = slice(box.top, box.top + crop_h)
        for k, image in enumerate(images):
            x = image[rows, box.left:box.left + crop_w]
            y = image[rows, width + box.left:width + box.left + crop_w]
            if box.mirror:
                np.subtract(255, x[:, ::-1], out=out[i, 2 * k])
                out[i, 2 * k + 1] = y[:, ::-1]
            else:
                out[i, 2 * k] = x
                out[i, 2 * k + 1] = y
    return out


def crop_image(image: np.ndarray, crop_size: int | tuple[int, int] = CROP_SIZE, mode: str = "ten", *,
               mean: Mean = None, x_channels: ChannelSelector = None,
               boxes: Sequence[CropBox] | None = None) -> np.ndarray:
    """Crops of one ``H x W`` or ``H x W x C`` uint8 image as a float32 ``N x C x h x w`` array.

    ``x_channels``: channels holding quantised x flow, inverted (``255 - q``) in mirrored crops.
    ``mean``: scalar or per-channel mean subtracted after cropping (``None``: nothing subtracted).
    ``boxes``: explicit crop boxes (default ``crop_boxes(H, W, crop_size, mode)``).
    """
    image = _as_hwc(image)
    boxes = crop_boxes(image.shape[0], image.shape[1], crop_size, mode) if boxes is None else boxes
    return normalize(crop_uint8(image, boxes, crop_size, x_channels=x_channels), mean)


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
