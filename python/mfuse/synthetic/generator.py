"""Generate the synthetic dataset: videos (MJPG ``.avi``), the discs' masks (``masks/<video_id>.npz``), split
lists and a manifest.

Determinism: every random choice comes from ``numpy.random.default_rng`` seeded by
``SeedSequence([seed, ...])`` keyed on what it decides (the scene of a group; the clip of a class, group
and clip number), so a video depends only on ``seed``, its class, group, clip, ``size`` and
``num_frames``, never on the order of generation or on ``num_groups`` / ``clips_per_group``. The same
arguments give byte-identical list files and manifest and identical decoded frames (with one OpenCV
build the ``.avi`` files are byte-identical too).

Completion: the manifest ``<root>/synthetic.json`` is written last; a root holding a manifest with the
same parameters is left as it is.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from mfuse.fileio import atomic_path, write_atomic
from mfuse.synthetic.classes import CLASSES, class_names
from mfuse.synthetic.layout import LAYOUTS, SyntheticVideo, split_block_size, video_relpath, write_lists
from mfuse.synthetic.render import MASK_VALUES, Clip, make_scene, render_clip

MANIFEST = "synthetic.json"
#: Folder of the disc masks under the dataset root: ``masks/<video_id>.npz`` (see :func:`read_masks`).
MASKS_DIR = "masks"
GENERATOR_VERSION = 2
_SCENE_KEY = 1
_CLIP_KEY = 2


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of a synthetic dataset. ``size`` is (width, height) in pixels."""

    num_groups: int = 7
    clips_per_group: int = 3
    size: tuple[int, int] = (96, 72)
    num_frames: int = 20
    seed: int = 0
    layout: str = "ucf101"
    fps: int = 25

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", tuple(int(v) for v in self.size))
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        split_block_size(self.num_groups)  # validates num_groups
        if self.clips_per_group < 1:
            raise ValueError(f"clips_per_group must be >= 1, got {self.clips_per_group}")
        if len(self.size) != 2 or min(self.size) < 32 or self.size[0] < self.size[1]:
            raise ValueError(f"size must be (width, height), both >= 32 and width >= height (the geometry "
                             f"scales with the height), got {self.size}")
        if self.num_frames < 2:
            raise ValueError(f"num_frames must be >= 2, got {self.num_frames}")
        if self.fps < 1:
            raise ValueError(f"fps must be >= 1, got {self.fps}")


@dataclass
class SyntheticDataset:
    """What ``generate`` produced: the root, config, class names (label order) and videos."""

    root: Path
    config: SyntheticConfig
    classes: list[str]
    videos: list[SyntheticVideo] = field(default_factory=list)


def plan_videos(config: SyntheticConfig) -> list[SyntheticVideo]:
    """Every video of the dataset, in class, group, clip order."""
    names = class_names(config.layout)
    return [SyntheticVideo(label, name, group, clip, video_relpath(config.layout, name, group, clip))
            for label, name in enumerate(names)
            for group in range(1, config.num_groups + 1)
            for clip in range(1, config.clips_per_group + 1)]


def scene_rng(seed: int, group: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _SCENE_KEY, group]))


def clip_rng(seed: int, label: int, group: int, clip: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _CLIP_KEY, label, group, clip]))


def render_video(config: SyntheticConfig, video: SyntheticVideo) -> Clip:
    """The frames (H x W x 3 uint8 BGR) and disc masks of one planned video."""
    scene = make_scene(scene_rng(config.seed, video.group), config.size)
    rng = clip_rng(config.seed, video.label, video.group, video.clip)
    return render_clip(rng, CLASSES[video.label], scene, config.num_frames)


def write_video(path: Path, frames: list[np.ndarray], fps: int) -> None:
    """Write ``frames`` as an MJPG ``.avi`` atomically (see :func:`mfuse.fileio.atomic_path`)."""
    height, width = frames[0].shape[:2]
    with atomic_path(path, suffix=".avi") as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot open an MJPG VideoWriter for {path}")
        try:
            for frame in frames:
                writer.write(frame)
        finally:
            writer.release()
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise RuntimeError(f"OpenCV wrote no data for {path}")


def mask_path(root: str | os.PathLike, video_id: str) -> Path:
    """Where the masks of ``video_id`` (relative path without extension) are stored."""
    return Path(root) / MASKS_DIR / f"{video_id}.npz"


def write_masks(path: Path, clip: Clip) -> None:
    """``clip.masks`` and which discs move, compressed, atomically."""
    colours = sorted(clip.moving)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, masks=clip.masks, colours=np.array(colours),
                            moving=np.array([clip.moving[c] for c in colours]))


def read_masks(root: str | os.PathLike, video_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(masks, moving_mask) of a generated video: (T, H, W) uint8 disc values (``render.MASK_VALUES``, 0 =
    background) and (T, H, W) bool pixels of a moving disc. Frame t of the video is index t - 1."""
    path = mask_path(root, video_id)
    if not path.is_file():
        raise FileNotFoundError(f"no masks for video {video_id} at {path} (datasets of generator version >= 2 "
                                "have them)")
    with np.load(path) as data:
        masks = data["masks"]
        values = [MASK_VALUES[str(c)] for c, moves in zip(data["colours"], data["moving"]) if moves]
    return masks, np.isin(masks, values)


def _manifest(config: SyntheticConfig, classes: list[str]) -> dict:
    return {"generator_version": GENERATOR_VERSION, "config": asdict(config), "classes": classes,
            "descriptions": {name: c.description for name, c in zip(classes, CLASSES)}}


def _prepare_root(root: Path, manifest: dict, overwrite: bool) -> bool:
    """True if ``root`` already holds this exact dataset. Raises if it holds anything else."""
    manifest_path = root / MANIFEST
    if manifest_path.is_file():
        if json.loads(manifest_path.read_text()) == json.loads(json.dumps(manifest)):
            return True
        if not overwrite:
            raise FileExistsError(f"{root} holds a synthetic dataset with other parameters "
                                  f"({manifest_path}); pass overwrite=True to replace it")
        shutil.rmtree(root)
    elif root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists and is not empty (and is not a synthetic dataset); "
                              "choose an empty or new directory")
    return False


def generate(root: str | os.PathLike, config: SyntheticConfig = SyntheticConfig(), *, overwrite: bool = False,
             progress: bool = True) -> SyntheticDataset:
    """Write the synthetic dataset described by ``config`` under ``root``.

    ``overwrite`` replaces an existing synthetic dataset with other parameters (only a directory holding a
    ``synthetic.json`` manifest is ever deleted). Returns the plan of what is on disk.
    """
    root = Path(root)
    classes = class_names(config.layout)
    manifest = _manifest(config, classes)
    videos = plan_videos(config)
    dataset = SyntheticDataset(root=root, config=config, classes=classes, videos=videos)
    if _prepare_root(root, manifest, overwrite):
        return dataset
    for video in tqdm(videos, desc="synthetic videos", unit="video", disable=not progress):
        clip = render_video(config, video)
        write_video(root / video.relpath, clip.frames, config.fps)
        write_masks(mask_path(root, video.video_id), clip)
    write_lists(config.layout, root, classes, videos, config.num_groups)
    write_atomic(root / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return dataset
