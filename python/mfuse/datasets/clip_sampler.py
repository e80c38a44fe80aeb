"""Training-time sampling of two-stream inputs from frame stores (paper §5.2).

Per sample: one frame ``t`` of a video, the flow stack ``t .. t+L-1`` (L = ``new_length``, 10 in the paper)
and the magnitude map of frame ``t``; ONE crop position and ONE mirror shared by every modality; a mirror
inverts quantised x flow (``255 - q``).

Frame ranges (docs/conventions.md): rgb has ``N`` images, flow and mag ``N - 1``. With flow among the
modalities, ``t`` is drawn from ``1 .. max(1, n_flow - L + 1)``; a video with fewer than ``L`` flow images
has its stack padded by repeating its last flow image (documented choice: such videos are kept, the data
preparation flags them). Without flow, ``t`` runs over the images every requested modality has.

Deterministic mode (``random=False``, used for validation): ``t`` is the middle of the valid range, the crop
is the centre one, nothing is mirrored.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from mfuse.evaluation.crops import FLOW_X_CHANNELS, CropBox, crop_image, stack_flow
from mfuse.evaluation.sampling import flow_stack_indices

MODALITIES = ("rgb", "flow", "mag")


@dataclass(frozen=True)
class ClipSpec:
    """What one training sample holds.

    Args:
        modalities: names among ``rgb``, ``flow``, ``mag``.
        new_length: flow images per stack (L); the flow input has 2L channels x1, y1, ..., xL, yL.
        crop_size: side of the square crop.
        means: ``{modality: mean or None}`` subtracted after cropping (rgb: per-channel BGR, flow: 128).
    """
    modalities: Sequence[str]
    new_length: int
    crop_size: int
    means: Mapping[str, object]


def common_videos(stores: Mapping[str, object]) -> list[tuple[str, int, dict[str, int]]]:
    """The videos present in every store, as ``(video_id, label, {modality: num_frames})``, sorted by id.

    Raises:
        ValueError: when the stores disagree on the set of videos or on a video's label (names it).
    """
    names = list(stores)
    first = stores[names[0]].index
    ids = {v.video_id for v in first.videos}
    for name in names[1:]:
        other = {v.video_id for v in stores[name].index.videos}
        if other != ids:
            diff = sorted(ids.symmetric_difference(other))[:5]
            raise ValueError(f"the {names[0]} and {name} stores hold different videos, e.g. {diff}")
    videos = []
    for entry in sorted(first.videos, key=lambda v: v.video_id):
        counts = {}
        for name in names:
            other = stores[name].index.video(entry.video_id)
            if other.label != entry.label:
                raise ValueError(f"video {entry.video_id}: label {entry.label} in the {names[0]} store but "
                                 f"{other.label} in the {name} store")
            counts[name] = other.num_frames
        videos.append((entry.video_id, entry.label, counts))
    return videos


def frame_range(counts: Mapping[str, int], new_length: int) -> int:
    """The number of valid start frames ``t`` (``t`` in ``1 .. result``) of a video.

    ``counts``: images per modality of the video. Raises ValueError if a modality has no image.
    """
    if min(counts.values()) < 1:
        raise ValueError(f"a modality has no image: {dict(counts)}")
    last = min(counts.values())
    if "flow" in counts:
        last = max(1, counts["flow"] - new_length + 1)
        if "rgb" in counts or "mag" in counts:
            last = min(last, *(counts[m] for m in counts if m != "flow"))
    return last


def load_sample_images(stores: Mapping[str, object], video_id: str, t: int, spec: ClipSpec
                       ) -> dict[str, np.ndarray]:
    """Decoded uint8 images of one sample: rgb ``H x W x 3``, flow ``H x W x 2L``, mag ``H x W``."""
    images = {}
    for name in spec.modalities:
        store = stores[name]
        if name == "flow":
            numbers = flow_stack_indices(t, store.num_frames(video_id), spec.new_length)
            images[name] = stack_flow([store.get_image(video_id, int(k)) for k in numbers])
        else:
            images[name] = store.get_image(video_id, t)
    sizes = {name: image.shape[:2] for name, image in images.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"video {video_id} frame {t}: modalities differ in size {sizes}")
    return images


def choose_crop(height: int, width: int, crop_size: int, rng: np.random.RandomState | None,
                mirror: bool) -> CropBox:
    """A crop box: uniform position and a fair-coin mirror (when ``mirror``), or the centre when
    ``rng`` is None."""
    if crop_size > height or crop_size > width:
        raise ValueError(f"crop {crop_size} does not fit frames of {height}x{width}")
    if rng is None:
        return CropBox((height - crop_size) // 2, (width - crop_size) // 2, False)
    top = int(rng.randint(0, height - crop_size + 1))
    left = int(rng.randint(0, width - crop_size + 1))
    return CropBox(top, left, bool(mirror and rng.randint(2)))


def make_sample(stores: Mapping[str, object], video_id: str, counts: Mapping[str, int], spec: ClipSpec,
                rng: np.random.RandomState | None, mirror: bool) -> dict[str, np.ndarray]:
    """One sample: ``{modality: float32 C x crop x crop}`` (``rng`` None: deterministic centre sample)."""
    valid = frame_range(counts, spec.new_length)
    t = valid // 2 + 1 if rng is None else int(rng.randint(1, valid + 1))
    images = load_sample_images(stores, video_id, t, spec)
    height, width = next(iter(images.values())).shape[:2]
    box = choose_crop(height, width, spec.crop_size, rng, mirror)
    return {name: crop_image(image, spec.crop_size, boxes=[box], mean=spec.means[name],
                             x_channels=FLOW_X_CHANNELS if name == "flow" else None)[0]
            for name, image in images.items()}


def epoch_order(num_videos: int, epoch: int, seed: int, shuffle: bool, rank: int = 0, num_ranks: int = 1
                ) -> np.ndarray:
    """Video positions of one epoch for one rank: a seeded permutation (same for every rank, so the
    ranks' shares are disjoint and cover every video once), strided by rank."""
    if not 0 <= rank < num_ranks:
        raise ValueError(f"rank {rank} outside 0..{num_ranks - 1}")
    order = np.random.RandomState(seed + epoch).permutation(num_videos) if shuffle else np.arange(num_videos)
    return order[rank::num_ranks]
