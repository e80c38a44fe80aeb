"""Decode videos into resized RGB frames and write each video's frame folder (frames + flow).

A video's folder ``<frames_root>/<video_id>/`` holds (docs/conventions.md):

- ``img_00001.jpg .. img_<N>.jpg``: BGR JPEGs, smallest side ``short_side`` (256) or a fixed size;
- ``flow_00001.jpg .. flow_<N-1>.jpg``: x|y side by side (see :mod:`mfuse.prep.flow`), flow_t is
  the flow from frame t to frame t+1, so the last frame has no flow image of its own;
- ``flow_x_<t>.jpg`` / ``flow_y_<t>.jpg`` as well when ``separate_xy`` (TSN/mmaction names);
- ``mag_00001.jpg .. mag_<N-1>.jpg``: flow magnitude;
- ``meta.json``: counts (also ``header_frames``, the count the container states: a video that decodes to fewer
  is kept and flagged, :func:`partial_decode`), size and the settings used.

:func:`extract_video` writes everything into a staging folder and moves it into place in one
``os.replace``, so a folder with ``meta.json`` is always complete. A killed extraction leaves at most
a hidden sibling ``.<name>.partial`` folder, which the next run deletes and redoes.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mfuse.conventions import STACK_LENGTH
from mfuse.prep.flow import (ALGORITHMS, DEFAULT_BOUND, SUBTRACTIONS, create_flow_function, flow_magnitude, pack_flow,
                             quantize_flow, subtract_camera_motion)
from mfuse.stores.format import image_name

META_NAME = "meta.json"
#: Frames a video may decode short of its header's count before it is flagged (:func:`partial_decode`).
PARTIAL_TOLERANCE = 1


class VideoError(Exception):
    """A video that cannot be used: unreadable, corrupt, empty or with fewer than 2 frames."""


@dataclass(frozen=True)
class ExtractSettings:
    """How frames and flow are made.

    ``short_side``: resize so the smaller side has this many pixels (None keeps the size);
    ``fixed_size``: ``(width, height)`` instead, e.g. ``(340, 256)`` as TSN (overrides short_side);
    ``jpeg_quality``: 0..100 for every JPEG written; ``flow_algorithm``: one of ``ALGORITHMS`` or
    None for frames only; ``bound``: flow clipping bound in pixels; ``flow_subtract``: camera-motion
    compensation before quantisation, one of ``SUBTRACTIONS`` (``mean``: Simonyan and Zisserman's mean flow
    subtraction, as the paper; ``none``: TSN's raw flow; see :mod:`mfuse.prep.flow`); ``separate_xy``: also
    write ``flow_x_``/``flow_y_`` files.
    """

    short_side: int | None = 256
    fixed_size: tuple[int, int] | None = None
    jpeg_quality: int = 95
    flow_algorithm: str | None = "tvl1"
    bound: float = DEFAULT_BOUND
    flow_subtract: str = "mean"
    separate_xy: bool = False

    def __post_init__(self):
        if self.short_side is not None and self.short_side < 2:
            raise ValueError(f"short_side must be >= 2, got {self.short_side}")
        if self.fixed_size is not None and (len(self.fixed_size) != 2 or min(self.fixed_size) < 2):
            raise ValueError(f"fixed_size must be (width, height) >= 2, got {self.fixed_size}")
        if not 0 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 0..100, got {self.jpeg_quality}")
        if self.flow_algorithm is not None and self.flow_algorithm not in ALGORITHMS:
            raise ValueError(f"unknown flow algorithm {self.flow_algorithm!r}; known: {ALGORITHMS}")
        if self.bound <= 0:
            raise ValueError(f"bound must be positive, got {self.bound}")
        if self.flow_subtract not in SUBTRACTIONS:
            raise ValueError(f"unknown flow_subtract {self.flow_subtract!r}; known: {SUBTRACTIONS}")

    def as_json(self) -> dict:
        """The settings as stored in ``meta.json`` (lists instead of tuples)."""
        data = asdict(self)
        data["fixed_size"] = list(self.fixed_size) if self.fixed_size is not None else None
        return data


@dataclass
class VideoResult:
    """What :func:`extract_video` did: the meta dict and seconds spent per step."""

    meta: dict
    seconds: dict[str, float] = field(default_factory=dict)


def output_size(width: int, height: int, short_side: int | None, fixed_size: tuple[int, int] | None
                ) -> tuple[int, int]:
    """``(width, height)`` of the resized frame."""
    if fixed_size is not None:
        return int(fixed_size[0]), int(fixed_size[1])
    if short_side is None:
        return width, height
    if width <= height:
        return short_side, max(1, round(height * short_side / width))
    return max(1, round(width * short_side / height)), short_side


def iter_frames(video_path: Path, short_side: int | None = 256, fixed_size: tuple[int, int] | None = None
                ) -> Iterator[np.ndarray]:
    """Decode ``video_path`` with PyAV and yield its frames as ``(H, W, 3)`` uint8 BGR arrays.

    Frames are resized by FFmpeg's swscale (bicubic, as the ``ffmpeg`` command line) to
    :func:`output_size`. Raises :class:`VideoError` for files that cannot be opened or decoded.
    """
    import av  # PyAV only where videos are decoded: prepared data trains and tests without it

    try:
        container = av.open(os.fspath(video_path))
    except (av.FFmpegError, OSError) as error:
        raise VideoError(f"cannot open: {error}") from error
    with container:
        if not container.streams.video:
            raise VideoError("no video stream")
        stream = container.streams.video[0]
        try:
            for frame in container.decode(stream):
                width, height = output_size(frame.width, frame.height, short_side, fixed_size)
                yield frame.to_ndarray(width=width, height=height, format="bgr24", interpolation="BICUBIC")
        except av.FFmpegError as error:
            raise VideoError(f"decoding failed: {error}") from error


def header_frame_count(video_path: Path) -> int | None:
    """The frame count the container's header states for its first video stream (None when it states none)."""
    import av  # PyAV only where videos are decoded: prepared data trains and tests without it

    try:
        with av.open(os.fspath(video_path)) as container:
            frames = container.streams.video[0].frames if container.streams.video else 0
    except (av.FFmpegError, OSError):
        return None
    return int(frames) or None


def count_frames(video_path: Path) -> int:
    """Number of frames the decoder produces for ``video_path`` (decodes the whole video)."""
    import av  # PyAV only where videos are decoded: prepared data trains and tests without it

    with av.open(os.fspath(video_path)) as container:
        return sum(1 for _ in container.decode(video=0))


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of a ``(H, W)`` or ``(H, W, 3)`` BGR uint8 image."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for an image of shape {image.shape}")
    return data.tobytes()


def read_meta(video_dir: Path) -> dict | None:
    """The ``meta.json`` of a frame folder, or None if the folder is not complete."""
    try:
        return json.loads((Path(video_dir) / META_NAME).read_text())
    except (OSError, ValueError):
        return None


def is_video_complete(video_dir: Path, settings: ExtractSettings) -> bool:
    """True if ``video_dir`` holds a finished extraction made with ``settings`` and all its files."""
    meta = read_meta(video_dir)
    if meta is None or meta.get("settings") != settings.as_json():
        return False
    names = set(os.listdir(video_dir))
    return all(name in names for name in expected_files(meta, settings))


def expected_files(meta: dict, settings: ExtractSettings) -> list[str]:
    """Every image file name a complete folder with this ``meta`` must contain."""
    names = [image_name("img", t) for t in range(1, meta["num_frames"] + 1)]
    kinds = ["flow", "mag"] + (["flow_x", "flow_y"] if settings.separate_xy else [])
    if settings.flow_algorithm is not None:
        names += [image_name(k, t) for k in kinds for t in range(1, meta["num_flow"] + 1)]
    return names


def extract_video(video_path: Path, video_dir: Path, settings: ExtractSettings) -> VideoResult:
    """Decode ``video_path`` and write its complete frame folder at ``video_dir``.

    Frames are streamed: each decoded frame is written and, with the previous one, gives one flow
    image, so memory does not grow with the video length. The outputs go to the hidden sibling
    :func:`partial_dir` first and replace ``video_dir`` only when complete.
    Raises :class:`VideoError` for unusable videos (nothing is left behind).
    """
    video_dir = Path(video_dir)
    staging = partial_dir(video_dir)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    seconds = {"decode": 0.0, "flow": 0.0, "write": 0.0}
    try:
        meta = _write_outputs(video_path, staging, settings, seconds)
        if video_dir.exists():
            shutil.rmtree(video_dir)
        os.replace(staging, video_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return VideoResult(meta, seconds)


def partial_decode(meta: dict) -> str | None:
    """A warning when the video decoded to fewer frames than its header states (a truncated or damaged file, kept
    with the frames that decoded), else None. One frame short is tolerated (``PARTIAL_TOLERANCE``): some encoders
    count a last frame that decoders drop."""
    expected = meta.get("header_frames")
    if expected is None or meta["num_frames"] >= expected - PARTIAL_TOLERANCE:
        return None
    return (f"decoded {meta['num_frames']} of the {expected} frames its header states (truncated or damaged file?); "
            f"kept with {meta['num_frames']} frames")


def partial_dir(video_dir: Path) -> Path:
    """The staging folder of ``video_dir``: a hidden sibling on the same file system."""
    return video_dir.with_name(f".{video_dir.name}.partial")


def _write_outputs(video_path: Path, out_dir: Path, settings: ExtractSettings, seconds: dict) -> dict:
    flow_function = create_flow_function(settings.flow_algorithm) if settings.flow_algorithm else None
    num_frames, shape, previous = 0, None, None
    frames = iter_frames(video_path, settings.short_side, settings.fixed_size)
    while True:
        start = time.perf_counter()
        frame = next(frames, None)
        seconds["decode"] += time.perf_counter() - start
        if frame is None:
            break
        num_frames += 1
        shape = frame.shape
        _timed_write(seconds, out_dir / image_name("img", num_frames), frame, settings.jpeg_quality)
        if flow_function is None:
            continue
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        if previous is not None:
            start = time.perf_counter()
            flow = flow_function(previous, gray)
            seconds["flow"] += time.perf_counter() - start
            _write_flow(out_dir, num_frames - 1, flow, settings, seconds)
        previous = gray
    if num_frames < 2:
        raise VideoError(f"fewer than 2 frames ({num_frames})")
    num_flow = num_frames - 1 if flow_function is not None else 0
    meta = {
        "num_frames": num_frames,
        "header_frames": header_frame_count(video_path),
        "num_flow": num_flow,
        "height": int(shape[0]),
        "width": int(shape[1]),
        "flow": ({"algorithm": settings.flow_algorithm, "bound": float(settings.bound),
                  "subtract": settings.flow_subtract}
                 if flow_function is not None else None),
        "short_for_stack": flow_function is not None and num_flow < STACK_LENGTH,
        "source": str(video_path),
        "settings": settings.as_json(),
    }
    (out_dir / META_NAME).write_text(json.dumps(meta, indent=1, ensure_ascii=False))
    return meta


def _write_flow(out_dir: Path, t: int, flow: np.ndarray, settings: ExtractSettings, seconds: dict) -> None:
    flow = subtract_camera_motion(flow, settings.flow_subtract)
    quantized = quantize_flow(flow, settings.bound)
    images = {"flow": pack_flow(quantized), "mag": flow_magnitude(flow)}
    if settings.separate_xy:
        images["flow_x"], images["flow_y"] = quantized[..., 0], quantized[..., 1]
    for kind, image in images.items():
        _timed_write(seconds, out_dir / image_name(kind, t), image, settings.jpeg_quality)


def _timed_write(seconds: dict, path: Path, image: np.ndarray, quality: int) -> None:
    start = time.perf_counter()
    path.write_bytes(encode_jpeg(image, quality))
    seconds["write"] += time.perf_counter() - start
