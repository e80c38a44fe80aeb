"""The action classes of the synthetic dataset.

Every video shows a textured, low-saturation background and up to two discs of the same size: a red one
and a blue one, chosen isoluminant (equal grey level under OpenCV's BGR->grey weights), so that a
grey-level optical flow field cannot tell which of them moved. Each disc either is absent, stays still, or
performs one motion:

- ``swing``:  left-right oscillation,
- ``bounce``: up-down oscillation,
- ``orbit``:  a circle (clockwise or anticlockwise at random).

A class is the pair (red motion, blue motion). The eight classes form three kinds of confusable pairs:

- appearance-confused (same objects, different motion): ``RedSwing`` / ``RedBounce``,
  ``BlueSwing`` / ``BlueBounce``: a single frame shows the same two discs;
- motion-confused (same motion, different objects): ``RedOrbit`` / ``BlueOrbit``: the flow shows one
  orbiting disc of the same shape in both;
- binding (which object moves how): ``RedSwing`` / ``BlueSwing``, ``RedBounce`` / ``BlueBounce`` and
  ``RedSwingBlueBounce`` / ``RedBounceBlueSwing``: both the frame (one red and one blue disc) and the flow
  (the same motions, at random places) agree between the two classes; only the spatial conjunction of
  colour and motion separates them. Late averaging of an appearance and a motion net cannot resolve these
  pairs; spatially aligned fusion (multiplicative fusion of conv maps, flow amplification) can.

Classes are listed in alphabetical order, so that the UCF101 (``classInd.txt``) and the HMDB51 (sorted
class folder names) layouts give every class the same 0-based label.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

MOTIONS = ("still", "swing", "bounce", "orbit")


@dataclass(frozen=True)
class ActionClass:
    """One synthetic action: the motion of each disc (``None`` = the disc is absent)."""

    name: str
    red: str | None
    blue: str | None
    description: str

    @property
    def hmdb_name(self) -> str:
        """HMDB51-style class folder name: ``RedSwingBlueBounce`` -> ``red_swing_blue_bounce``."""
        return re.sub(r"(?<!^)(?=[A-Z])", "_", self.name).lower()

    def motions(self) -> dict[str, str]:
        """``{disc colour: motion}`` of the discs present in the video."""
        return {colour: motion for colour, motion in (("red", self.red), ("blue", self.blue)) if motion}


CLASSES: tuple[ActionClass, ...] = (
    ActionClass("BlueBounce", "still", "bounce", "blue disc bounces up-down, red disc still"),
    ActionClass("BlueOrbit", None, "orbit", "blue disc circles, no red disc"),
    ActionClass("BlueSwing", "still", "swing", "blue disc swings left-right, red disc still"),
    ActionClass("RedBounce", "bounce", "still", "red disc bounces up-down, blue disc still"),
    ActionClass("RedBounceBlueSwing", "bounce", "swing", "red disc bounces, blue disc swings"),
    ActionClass("RedOrbit", "orbit", None, "red disc circles, no blue disc"),
    ActionClass("RedSwing", "swing", "still", "red disc swings left-right, blue disc still"),
    ActionClass("RedSwingBlueBounce", "swing", "bounce", "red disc swings, blue disc bounces"),
)

# Pairs of class names, by what confuses them (see the module docstring).
APPEARANCE_CONFUSED = (("RedSwing", "RedBounce"), ("BlueSwing", "BlueBounce"))
MOTION_CONFUSED = (("RedOrbit", "BlueOrbit"),)
BINDING_CONFUSED = (("RedSwing", "BlueSwing"), ("RedBounce", "BlueBounce"),
                    ("RedSwingBlueBounce", "RedBounceBlueSwing"))


#: What a perfect model of each kind can tell apart, by design: a partition of the classes (UCF101 names).
#: Inside a group it can only guess. ``spatial``: one frame shows which discs are there; ``temporal``: the
#: flow shows the set of motions, not which disc makes them; ``spatial_amp``: the frame with its moving
#: discs emphasised shows which colour(s) move; ``S+T`` / ``Samp+T``: the intersections of two partitions
#: (late averaging cannot bind); ``fusion``: spatially aligned conv maps can bind colour to motion.
SEPARABLE: dict[str, tuple[tuple[str, ...], ...]] = {
    "spatial": (("BlueBounce", "BlueSwing", "RedBounce", "RedBounceBlueSwing", "RedSwing", "RedSwingBlueBounce"),
                ("BlueOrbit",), ("RedOrbit",)),
    "temporal": (("BlueBounce", "RedBounce"), ("BlueSwing", "RedSwing"), ("RedBounceBlueSwing", "RedSwingBlueBounce"),
                 ("BlueOrbit", "RedOrbit")),
    "spatial_amp": (("RedBounce", "RedSwing"), ("BlueBounce", "BlueSwing"), ("RedBounceBlueSwing", "RedSwingBlueBounce"),
                    ("BlueOrbit",), ("RedOrbit",)),
    "S+T": (("BlueBounce", "RedBounce"), ("BlueSwing", "RedSwing"), ("RedBounceBlueSwing", "RedSwingBlueBounce"),
            ("BlueOrbit",), ("RedOrbit",)),
    "Samp+T": (("BlueBounce",), ("RedBounce",), ("BlueSwing",), ("RedSwing",),
               ("RedBounceBlueSwing", "RedSwingBlueBounce"), ("BlueOrbit",), ("RedOrbit",)),
    "fusion": tuple((c.name,) for c in CLASSES),
}


def ceiling(kind: str) -> float:
    """Top-1 accuracy of a perfect model of ``kind`` (a key of ``SEPARABLE``) on balanced classes: it is right
    on 1/|g| of the videos of every group g, so the accuracy is (number of groups) / (number of classes)."""
    return len(_partition(kind)) / len(CLASSES)


def loss_floor(kind: str) -> float:
    """The lowest mean cross-entropy a model of ``kind`` can reach on balanced classes: sum over its groups
    of |g|/N * ln |g| (uniform over the classes it cannot separate); chance is ln N."""
    return float(sum(len(g) / len(CLASSES) * math.log(len(g)) for g in _partition(kind)))


def _partition(kind: str) -> tuple[tuple[str, ...], ...]:
    if kind not in SEPARABLE:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {sorted(SEPARABLE)}")
    return SEPARABLE[kind]


def class_names(layout: str = "ucf101") -> list[str]:
    """Class names in label order, spelled for ``layout`` (``ucf101``: CamelCase, ``hmdb51``: snake_case)."""
    if layout == "ucf101":
        return [c.name for c in CLASSES]
    if layout == "hmdb51":
        return [c.hmdb_name for c in CLASSES]
    raise ValueError(f"unknown layout {layout!r}; expected 'ucf101' or 'hmdb51'")
