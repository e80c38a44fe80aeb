"""A generic, seeded synthetic IMAGE classification task: the stand-in for ImageNet pretraining.

The paper starts its spatial nets (and, by cross-modality initialisation, its temporal nets) from an ImageNet
model. The tiny backbone has no such model, so it is pretrained on this task instead: one object per image,
whose category is its **shape x colour x texture**, on a varied background. It is deliberately NOT an action
task -- no motion, no fixed pair of colours -- so what the frozen convolutions carry into the action nets is
generic appearance (colour, shape, texture at a location), as ImageNet features are.

- shapes (``SHAPES``): disc, ring, square, triangle, cross, star; any rotation, radius ``radius`` (fractions
  of the height H), anywhere in the image (fully inside);
- colours (``HUES``): hue on ``num_hues`` equal steps of the HSV circle (+- a quarter step), saturation
  0.55-1, value 0.55-1;
- textures (``TEXTURES``): solid, stripes (random angle and period), checks;
- backgrounds: smooth multi-octave noise with a random tint and contrast, a linear colour gradient, or
  clutter (random thin lines and small blobs of any colour), each a third of the time;
- nuisances: Gaussian noise (sigma 0-6), global gain 0.8-1.2.

Categories are numbered ``(shape * num_hues + hue) * len(textures) + texture``. An image depends only on the
seed, its category and its index (``SeedSequence([seed, category, index])``).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SHAPES = ("disc", "ring", "square", "triangle", "cross", "star")
TEXTURES = ("solid", "stripes", "checks")


@dataclass(frozen=True)
class ImageTaskConfig:
    """Parameters of the image task. ``size`` is (width, height); the net crops ``crop_size`` from it.

    ``num_shapes`` / ``num_textures``: the first ones of ``SHAPES`` / ``TEXTURES``; ``train_per_class`` /
    ``val_per_class``: images per category in the training and the validation set; ``radius``: the object's
    radius range as fractions of the height. The defaults (4 x 8 x 2 = 64 categories of 72 x 72 images, 9600 +
    640 images) are the demo's, chosen in docs/demo-design-notes.md (E3): the tiny backbone learns colour at
    once but fine shape categories of small objects only slowly.
    """
    num_shapes: int = 4
    num_hues: int = 8
    num_textures: int = 2
    size: tuple[int, int] = (72, 72)
    train_per_class: int = 150
    val_per_class: int = 10
    radius: tuple[float, float] = (0.12, 0.3)
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", tuple(int(v) for v in self.size))
        object.__setattr__(self, "radius", tuple(float(v) for v in self.radius))
        if len(self.radius) != 2 or not 0 < self.radius[0] <= self.radius[1] < 0.5:
            raise ValueError(f"radius must be (min, max) fractions of the height in (0, 0.5), got {self.radius}")
        if not 1 <= self.num_shapes <= len(SHAPES):
            raise ValueError(f"num_shapes must be in 1..{len(SHAPES)}, got {self.num_shapes}")
        if not 1 <= self.num_textures <= len(TEXTURES):
            raise ValueError(f"num_textures must be in 1..{len(TEXTURES)}, got {self.num_textures}")
        if self.num_hues < 1:
            raise ValueError(f"num_hues must be >= 1, got {self.num_hues}")
        if len(self.size) != 2 or min(self.size) < 32:
            raise ValueError(f"size must be (width, height), both >= 32, got {self.size}")
        if self.train_per_class < 1 or self.val_per_class < 1:
            raise ValueError("train_per_class and val_per_class must be >= 1, got "
                             f"{self.train_per_class} and {self.val_per_class}")

    @property
    def num_classes(self) -> int:
        return self.num_shapes * self.num_hues * self.num_textures

    def category(self, label: int) -> tuple[str, int, str]:
        """(shape, hue index, texture) of category ``label``."""
        if not 0 <= label < self.num_classes:
            raise ValueError(f"label must be in 0..{self.num_classes - 1}, got {label}")
        rest, texture = divmod(label, self.num_textures)
        shape, hue = divmod(rest, self.num_hues)
        return SHAPES[shape], hue, TEXTURES[texture]

    def class_names(self) -> list[str]:
        return [f"{shape}_hue{hue}_{texture}" for shape, hue, texture in map(self.category, range(self.num_classes))]


#: Offsets of the validation images' indices, so they never equal a training image's.
_VAL_OFFSET = 1 << 20


def image_rng(seed: int, label: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, label, index]))


def _smooth_noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """H x W float32 noise, zero mean and unit standard deviation, with structure at several scales."""
    total = np.zeros((height, width), np.float32)
    for cells, weight in ((3, 1.0), (6, 0.6), (12, 0.4), (24, 0.3)):
        grid = rng.standard_normal((cells, cells)).astype(np.float32)
        total += weight * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    return (total - total.mean()) / (total.std() + 1e-6)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """H x W x 3 float32 BGR background of one of three kinds."""
    kind = rng.integers(3)
    base = rng.uniform(40, 215, size=3).astype(np.float32)
    if kind == 0:  # tinted smooth noise
        image = base + rng.uniform(8, 40) * _smooth_noise(rng, height, width)[..., None]
        image = image + rng.uniform(2, 10) * np.stack([_smooth_noise(rng, height, width) for _ in range(3)], 2)
    elif kind == 1:  # linear gradient between two colours
        angle = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        ramp = (xs * np.cos(angle) + ys * np.sin(angle))
        ramp = (ramp - ramp.min()) / (np.ptp(ramp) + 1e-6)
        other = rng.uniform(40, 215, size=3).astype(np.float32)
        image = base + ramp[..., None] * (other - base)
    else:  # clutter: thin lines and small blobs of any colour
        image = np.empty((height, width, 3), np.float32)
        image[...] = base
        for _ in range(rng.integers(6, 16)):
            colour = tuple(float(v) for v in rng.uniform(0, 255, size=3))
            if rng.random() < 0.5:
                p1 = tuple(int(v) for v in rng.uniform(0, (width, height)))
                p2 = tuple(int(v) for v in rng.uniform(0, (width, height)))
                cv2.line(image, p1, p2, colour, thickness=int(rng.integers(1, 3)), lineType=cv2.LINE_AA)
            else:
                centre = tuple(int(v) for v in rng.uniform(0, (width, height)))
                cv2.circle(image, centre, int(rng.integers(1, max(2, height // 32))), colour, -1, cv2.LINE_AA)
    return image


def _outline(shape: str, centre: np.ndarray, radius: float, angle: float) -> list[np.ndarray]:
    """Polygons (int32 N x 2, 16x sub-pixel) of a shape; a ring is an outer and an inner circle."""
    def ring(r, count, phase=0.0):
        t = angle + phase + 2 * np.pi * np.arange(count) / count
        return centre + r * np.stack([np.cos(t), np.sin(t)], 1)

    if shape in ("disc", "ring"):
        points = [ring(radius, 48)] + ([ring(radius * 0.55, 48)] if shape == "ring" else [])
    elif shape == "square":
        points = [ring(radius, 4, np.pi / 4)]
    elif shape == "triangle":
        points = [ring(radius, 3)]
    elif shape == "star":
        outer, inner = ring(radius, 5), ring(radius * 0.45, 5, np.pi / 5)
        points = [np.stack([outer, inner], 1).reshape(-1, 2)]
    elif shape == "cross":
        w = radius * 0.35
        arm = np.array([[-w, -radius], [w, -radius], [w, -w], [radius, -w], [radius, w], [w, w], [w, radius],
                        [-w, radius], [-w, w], [-radius, w], [-radius, -w], [-w, -w]])
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        points = [centre + arm @ rot.T]
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return [np.round(p * 16).astype(np.int32) for p in points]


def _texture(rng: np.random.Generator, texture: str, colour: np.ndarray, height: int, width: int) -> np.ndarray:
    """H x W x 3 float32 fill of the object: its colour, striped or checked with a darker shade."""
    fill = np.empty((height, width, 3), np.float32)
    fill[...] = colour
    if texture == "solid":
        return fill
    dark = colour * rng.uniform(0.35, 0.6)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    period = rng.uniform(0.05, 0.09) * height
    angle = rng.uniform(0, np.pi)
    u = xs * np.cos(angle) + ys * np.sin(angle)
    if texture == "stripes":
        on = (np.floor(u / period) % 2) == 1
    elif texture == "checks":
        v = -xs * np.sin(angle) + ys * np.cos(angle)
        on = ((np.floor(u / period) + np.floor(v / period)) % 2) == 1
    else:
        raise ValueError(f"unknown texture {texture!r}")
    fill[on] = dark
    return fill


def hue_bgr(rng: np.random.Generator, hue_index: int, num_hues: int) -> np.ndarray:
    """A BGR colour (float32, 0..255) of hue step ``hue_index`` of ``num_hues``, jittered."""
    step = 180.0 / num_hues  # OpenCV's hue range is 0..180
    hue = (hue_index * step + rng.uniform(-0.25, 0.25) * step) % 180.0
    hsv = np.uint8([[[round(hue) % 180, round(rng.uniform(0.55, 1.0) * 255), round(rng.uniform(0.55, 1.0) * 255)]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def render_image(config: ImageTaskConfig, label: int, index: int) -> np.ndarray:
    """Image ``index`` of category ``label``: H x W x 3 uint8 BGR."""
    shape, hue, texture = config.category(label)
    rng = image_rng(config.seed, label, index)
    width, height = config.size
    image = _background(rng, height, width)
    radius = rng.uniform(*config.radius) * height
    centre = rng.uniform((radius + 1, radius + 1), (width - radius - 1, height - radius - 1))
    polygons = _outline(shape, centre, radius, rng.uniform(0, 2 * np.pi))
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, polygons[:1], 255, cv2.LINE_AA, shift=4)
    if len(polygons) > 1:  # the ring's hole
        cv2.fillPoly(mask, polygons[1:], 0, cv2.LINE_AA, shift=4)
    alpha = (mask.astype(np.float32) / 255.0)[..., None]
    fill = _texture(rng, texture, hue_bgr(rng, hue, config.num_hues), height, width)
    image = image * (1 - alpha) + fill * alpha
    image = image * rng.uniform(0.8, 1.2) + rng.normal(0, rng.uniform(0, 6), size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def plan_images(config: ImageTaskConfig, subset: str) -> list[tuple[int, int]]:
    """(label, index) of every image of ``subset`` (``train`` or ``val``), in label, index order."""
    if subset == "train":
        count, offset = config.train_per_class, 0
    elif subset == "val":
        count, offset = config.val_per_class, _VAL_OFFSET
    else:
        raise ValueError(f"subset must be 'train' or 'val', got {subset!r}")
    return [(label, offset + i) for label in range(config.num_classes) for i in range(count)]
