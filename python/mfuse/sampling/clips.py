"""Two-stream samples from frame stores, shared by training (the data layer) and testing (paper §5.2).

A sample at frame ``t`` of a video holds the RGB frame, the flow stack ``t .. t+L-1`` (L = ``stack_length``,
10 in the paper) and the magnitude map of frame ``t``; ONE crop position and ONE mirror are shared by every
modality; a mirror inverts quantised x flow (``255 - q``). Frame positions: :mod:`mfuse.sampling.positions`;
crops: :mod:`mfuse.sampling.crops`.

Training (:func:`make_sample`): a uniform ``t``, a random crop and a fair-coin mirror per sample; in
deterministic mode (``rng`` None, for validation) the middle ``t``, the centre crop, no mirror. Epochs
(:func:`epoch_order`): every video once, in a seeded order, shared out among ranks.

The data path cuts crops straight from the decoded images (:func:`read_images` -> :func:`cut_crops`, uint8)
and subtracts the mean last (:func:`mfuse.sampling.crops.normalize`); :func:`frame_images` +
``crop_modalities`` give the same numbers for code that wants whole images.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mfuse.sampling.crops import CropBox, choose_crop, crop_flow_images, crop_uint8, normalize, stack_flow
from mfuse.sampling.positions import flow_stack_indices, frame_range, train_position


@dataclass(frozen=True)
class ClipSpec:
    """What one training sample holds.

    Args:
        modalities: names among ``rgb``, ``flow``, ``mag``.
        stack_length: flow images per stack (L); the flow input has 2L channels x1, y1, ..., xL, yL.
        crop_size: side of the square crop.
        means: ``{modality: mean or None}`` subtracted after cropping (rgb: per-channel BGR, flow: 128).
    """
    modalities: Sequence[str]
    stack_length: int
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


def read_images(stores: Mapping[str, object], video_id: str, t: int, stack_length: int,
                rgb_t: int | None = None) -> dict[str, object]:
    """Decoded uint8 images of the sample at ``t``, one entry per store: rgb ``H x W x 3`` (frame ``rgb_t``,
    default ``t``), flow the list of the stack's ``L`` flow images ``H x 2W`` (``t .. t+L-1``, clamped to the
    video's flow images), mag ``H x W``.

    Raises ValueError naming the video and frame when the modalities differ in size.
    """
    images, sizes = {}, {}
    for name, store in stores.items():
        if name == "flow":
            numbers = flow_stack_indices(t, store.num_frames(video_id), stack_length)
            images[name] = [store.get_image(video_id, int(k)) for k in numbers]
            sizes[name] = (images[name][0].shape[0], images[name][0].shape[1] // 2)
        else:
            images[name] = store.get_image(video_id, t if rgb_t is None or name != "rgb" else rgb_t)
            sizes[name] = images[name].shape[:2]
    if len(set(sizes.values())) != 1:
        raise ValueError(f"video {video_id} frame {t}: modalities differ in size {sizes}")
    return images


def frame_images(stores: Mapping[str, object], video_id: str, t: int, stack_length: int,
                 rgb_t: int | None = None) -> dict[str, np.ndarray]:
    """:func:`read_images` with the flow stack assembled: flow ``H x W x 2L`` (channels x1, y1, ..., xL, yL)."""
    images = read_images(stores, video_id, t, stack_length, rgb_t)
    if "flow" in images:
        images["flow"] = stack_flow(images["flow"])
    return images


def cut_crops(images: Mapping[str, object], boxes: Sequence[CropBox], crop_size: int | tuple[int, int],
              out: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The crops ``boxes`` of a sample's images (from :func:`read_images`) as uint8 ``N x C x h x w`` per
    modality, into ``out[modality]`` when given; one set of boxes and mirrors for every modality."""
    out = out or {}
    return {name: (crop_flow_images(image, boxes, crop_size, out=out.get(name)) if name == "flow" else
                   crop_uint8(image, boxes, crop_size, out=out.get(name)))
            for name, image in images.items()}


def sample_box(images: Mapping[str, object], crop_size: int, rng: np.random.RandomState | None,
               mirror: bool) -> CropBox:
    """The training crop of a sample's images (:func:`mfuse.sampling.crops.choose_crop` on their size)."""
    name, first = next(iter(images.items()))
    height, width = (first[0].shape[0], first[0].shape[1] // 2) if name == "flow" else first.shape[:2]
    return choose_crop(height, width, crop_size, rng, mirror)


def make_sample_uint8(stores: Mapping[str, object], video_id: str, counts: Mapping[str, int], spec: ClipSpec,
                      rng: np.random.RandomState | None, mirror: bool,
                      out: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """One training sample before the mean: ``{modality: uint8 1 x C x crop x crop}`` (into ``out`` if given;
    ``rng`` None: the deterministic centre sample). :func:`make_sample` = this + ``normalize``."""
    t = train_position(frame_range(counts, spec.stack_length), rng)
    images = read_images({m: stores[m] for m in spec.modalities}, video_id, t, spec.stack_length)
    return cut_crops(images, [sample_box(images, spec.crop_size, rng, mirror)], spec.crop_size, out)


def make_sample(stores: Mapping[str, object], video_id: str, counts: Mapping[str, int], spec: ClipSpec,
                rng: np.random.RandomState | None, mirror: bool) -> dict[str, np.ndarray]:
    """One training sample: ``{modality: float32 C x crop x crop}`` (``rng`` None: deterministic centre sample)."""
    crops = make_sample_uint8(stores, video_id, counts, spec, rng, mirror)
    return {name: normalize(crop, spec.means[name])[0] for name, crop in crops.items()}


def epoch_order(num_videos: int, epoch: int, seed: int, shuffle: bool, rank: int = 0, num_ranks: int = 1
                ) -> np.ndarray:
    """Video positions of one epoch for one rank: a seeded permutation (same for every rank, so the
    ranks' shares are disjoint and cover every video once), strided by rank."""
    if not 0 <= rank < num_ranks:
        raise ValueError(f"rank {rank} outside 0..{num_ranks - 1}")
    order = np.random.RandomState(seed + epoch).permutation(num_videos) if shuffle else np.arange(num_videos)
    return order[rank::num_ranks]
