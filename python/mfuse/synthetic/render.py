"""Rendering of one synthetic clip: background scene, disc trajectories, camera jitter and noise.

Geometry is expressed relative to the frame height ``H`` so that every ``size`` gives the same task:

- disc radius ``r``: 0.09-0.11 H, one value per scene (group), shared by both discs;
- oscillation amplitude ``A``: 0.12-0.18 H (an orbit has radius 0.8 A), period 10-16 frames, random
  phase: at 96x72 a moving disc moves about 3 px per frame on average, up to about 8;
- camera jitter: a smooth random walk of the whole frame, steps N(0, 0.012 H), within +-0.04 H;
- sensor noise: Gaussian, sigma 3 grey levels per channel and frame; global gain 0.9-1.1 per clip.

The background is smooth multi-octave noise with a slight colour tint (low saturation, grey level
145-190 with a contrast of 10-16), darker discs (grey level about 97) stand out in grey level; the red
(BGR 40, 50, 210) and blue (BGR 210, 108, 30) discs are isoluminant (grey 96.7 and 96.3).

Every clip comes with its discs' masks (:class:`Clip`), rendered with the same geometry and camera shift.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from mfuse.synthetic.classes import ActionClass

DISC_BGR = {"red": (40, 50, 210), "blue": (210, 108, 30)}
#: Values of the object masks (:class:`Clip`): 0 is the background, then one value per disc colour.
MASK_VALUES = {"red": 1, "blue": 2}
_SUBPIXEL_BITS = 4
_MIN_GAP = 2.0  # pixels between the swept boxes of two discs
_MAX_PLACEMENT_TRIES = 2000


@dataclass(frozen=True)
class Scene:
    """What a group shares across its clips (and across classes): background and disc radius.

    ``background``: H x W x 3 uint8 BGR; ``radius`` in pixels.
    """

    background: np.ndarray
    radius: float


@dataclass(frozen=True)
class DiscMotion:
    """Parameters of one disc's motion in one clip (pixels and frames)."""

    motion: str
    centre: tuple[float, float]  # (x, y)
    amplitude: float
    period: float
    phase: float
    clockwise: bool

    def positions(self, num_frames: int) -> np.ndarray:
        """(num_frames, 2) float array of the disc centre (x, y) in every frame."""
        angle = self.phase + 2.0 * np.pi * np.arange(num_frames) / self.period
        dx = np.zeros(num_frames)
        dy = np.zeros(num_frames)
        if self.motion == "swing":
            dx = self.amplitude * np.sin(angle)
        elif self.motion == "bounce":
            dy = self.amplitude * np.sin(angle)
        elif self.motion == "orbit":
            dx = self.amplitude * np.cos(angle)
            dy = self.amplitude * np.sin(angle) * (1.0 if self.clockwise else -1.0)
        elif self.motion != "still":
            raise ValueError(f"unknown motion {self.motion!r}")
        return np.stack([self.centre[0] + dx, self.centre[1] + dy], axis=1)

    def extent(self) -> tuple[float, float]:
        """Half-width and half-height of the box the centre sweeps."""
        return {"still": (0.0, 0.0), "swing": (self.amplitude, 0.0), "bounce": (0.0, self.amplitude),
                "orbit": (self.amplitude, self.amplitude)}[self.motion]


def _smooth_noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """H x W float32 multi-octave noise with zero mean and unit standard deviation."""
    total = np.zeros((height, width), np.float32)
    for cells, weight in ((3, 1.0), (6, 0.6), (12, 0.4), (24, 0.3)):
        grid = rng.standard_normal((cells, max(2, round(cells * width / height)))).astype(np.float32)
        total += weight * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    return (total - total.mean()) / (total.std() + 1e-6)


def make_scene(rng: np.random.Generator, size: tuple[int, int]) -> Scene:
    """A random background and disc radius for frames of ``size`` = (width, height)."""
    width, height = size
    base = rng.uniform(145.0, 190.0)
    contrast = rng.uniform(10.0, 16.0)
    grey = base + contrast * _smooth_noise(rng, height, width)
    channels = [grey + rng.uniform(-8.0, 8.0) + 3.0 * _smooth_noise(rng, height, width) for _ in range(3)]
    background = np.clip(np.rint(np.stack(channels, axis=2)), 0, 255).astype(np.uint8)
    return Scene(background=background, radius=float(rng.uniform(0.09, 0.11) * height))


def _random_motion(rng: np.random.Generator, motion: str, height: int) -> DiscMotion:
    amplitude = rng.uniform(0.12, 0.18) * height
    if motion == "orbit":
        amplitude *= 0.8
    return DiscMotion(motion=motion, centre=(0.0, 0.0), amplitude=float(amplitude),
                      period=float(rng.uniform(10.0, 16.0)), phase=float(rng.uniform(0.0, 2.0 * np.pi)),
                      clockwise=bool(rng.integers(2)))


def place_discs(rng: np.random.Generator, action: ActionClass, size: tuple[int, int],
                radius: float) -> dict[str, DiscMotion]:
    """Random motions and centres for the discs of ``action``, inside the frame and apart.

    Every disc stays inside the frame over the whole clip, camera jitter included, and the boxes swept
    by two discs keep ``_MIN_GAP`` pixels between them; all centres are drawn together and redrawn until
    they fit. Raises ``ValueError`` if ``size`` is too small to place them.
    """
    width, height = size
    margin = radius + 0.04 * height + 1.0
    specs = {colour: _random_motion(rng, motion, height) for colour, motion in action.motions().items()}
    ranges = {}
    for colour, spec in specs.items():
        ex, ey = spec.extent()
        ranges[colour] = ((margin + ex, width - margin - ex), (margin + ey, height - margin - ey))
        if ranges[colour][0][0] > ranges[colour][0][1] or ranges[colour][1][0] > ranges[colour][1][1]:
            raise ValueError(f"frame {width}x{height} too small for a {spec.motion} disc of radius {radius:.1f}")
    for _ in range(_MAX_PLACEMENT_TRIES):
        discs = {colour: dataclasses.replace(spec, centre=(float(rng.uniform(*ranges[colour][0])),
                                                            float(rng.uniform(*ranges[colour][1]))))
                 for colour, spec in specs.items()}
        placed = list(discs.values())
        if all(_apart(a, b, radius) for i, a in enumerate(placed) for b in placed[i + 1:]):
            return discs
    raise ValueError(f"cannot place the discs of {action.name} apart in a {width}x{height} frame; "
                     "use a larger size")


def _apart(a: DiscMotion, b: DiscMotion, radius: float) -> bool:
    """Whether the boxes swept by discs ``a`` and ``b`` (of ``radius``) are ``_MIN_GAP`` apart."""
    (ax, ay), (bx, by) = a.extent(), b.extent()
    gap_x = abs(a.centre[0] - b.centre[0]) - (ax + bx + 2 * radius)
    gap_y = abs(a.centre[1] - b.centre[1]) - (ay + by + 2 * radius)
    return max(gap_x, gap_y) >= _MIN_GAP


def camera_jitter(rng: np.random.Generator, num_frames: int, height: int) -> np.ndarray:
    """(num_frames, 2) float array of (dx, dy) frame offsets: a clipped, smooth random walk."""
    steps = rng.normal(0.0, 0.012 * height, size=(num_frames, 2))
    steps[0] = 0.0
    return np.clip(np.cumsum(steps, axis=0), -0.04 * height, 0.04 * height)


@dataclass(frozen=True)
class Clip:
    """One rendered clip.

    ``frames``: ``num_frames`` arrays H x W x 3 uint8 BGR; ``masks``: (num_frames, H, W) uint8, the disc
    under every pixel (``MASK_VALUES``; 0 = background), after the same camera shift as the frame (nearest
    neighbour, the disc's exact edge without anti-aliasing); ``moving``: colour -> whether that disc moves.
    """

    frames: list[np.ndarray]
    masks: np.ndarray
    moving: dict[str, bool]

    def moving_mask(self) -> np.ndarray:
        """(num_frames, H, W) bool: pixels covered by a disc that moves."""
        values = [MASK_VALUES[colour] for colour, moves in self.moving.items() if moves]
        return np.isin(self.masks, values)

    def background_mask(self) -> np.ndarray:
        """(num_frames, H, W) bool: pixels covered by no disc."""
        return self.masks == 0


def render_clip(rng: np.random.Generator, action: ActionClass, scene: Scene, num_frames: int) -> Clip:
    """``num_frames`` frames of one clip of ``action`` in ``scene``, with the discs' masks."""
    height, width = scene.background.shape[:2]
    discs = place_discs(rng, action, (width, height), scene.radius)
    tracks = {colour: disc.positions(num_frames) for colour, disc in discs.items()}
    jitter = camera_jitter(rng, num_frames, height)
    gain = rng.uniform(0.9, 1.1)
    scale = 1 << _SUBPIXEL_BITS
    frames, masks = [], np.zeros((num_frames, height, width), np.uint8)
    for t in range(num_frames):
        canvas = scene.background.copy()
        labels = np.zeros((height, width), np.uint8)
        for colour, track in tracks.items():
            centre = tuple(int(round(v * scale)) for v in track[t])
            radius = int(round(scene.radius * scale))
            cv2.circle(canvas, centre, radius, DISC_BGR[colour], thickness=-1, lineType=cv2.LINE_AA,
                       shift=_SUBPIXEL_BITS)
            cv2.circle(labels, centre, radius, MASK_VALUES[colour], thickness=-1, lineType=cv2.LINE_8,
                       shift=_SUBPIXEL_BITS)
        shift = np.float32([[1, 0, jitter[t, 0]], [0, 1, jitter[t, 1]]])
        moved = cv2.warpAffine(canvas, shift, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT_101)
        masks[t] = cv2.warpAffine(labels, shift, (width, height), flags=cv2.INTER_NEAREST,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        noisy = moved.astype(np.float32) * gain + rng.normal(0.0, 3.0, size=moved.shape)
        frames.append(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))
    moving = {colour: disc.motion != "still" for colour, disc in discs.items()}
    return Clip(frames=frames, masks=masks, moving=moving)
