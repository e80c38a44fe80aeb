"""Small test videos and dataset layouts for the data-preparation tests (no fixtures, plain helpers)."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np

from mfuse.prep.frames import ExtractSettings, extract_video
from mfuse.prep.lmdb_store import VideoSource
from mfuse.stores.format import StoreIndex, VideoEntry


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random grayscale texture, ``(H, W)`` uint8, with structure at every pixel."""
    noise = np.random.default_rng(seed).integers(0, 256, (height, width)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 1.5)
    smooth = (smooth - smooth.min()) / (np.ptp(smooth) + 1e-6) * 255
    return smooth.astype(np.uint8)


def moving_frames(count: int, height: int = 24, width: int = 32, step: tuple[int, int] = (1, 0),
                  seed: int = 0) -> list[np.ndarray]:
    """``count`` BGR frames of a texture translating by ``step = (dx, dy)`` pixels per frame."""
    pad = 4 * max(abs(step[0]), abs(step[1])) * count + 8
    big = texture(height + 2 * pad, width + 2 * pad, seed)
    frames = []
    for i in range(count):
        x0, y0 = pad - i * step[0], pad - i * step[1]
        gray = big[y0:y0 + height, x0:x0 + width]
        frames.append(cv2.merge([gray, np.roll(gray, 3, axis=1), 255 - gray]))
    return frames


def write_video(path: Path, frames: list[np.ndarray], codec: str = "mpeg4", rate: int = 25) -> Path:
    """Encode BGR ``frames`` with PyAV into ``path`` (container from the suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"qscale": "2"} if codec == "mpeg4" else {}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_ucf101(root: Path, videos: dict[str, list[tuple[str, int]]]) -> tuple[Path, Path]:
    """A UCF101 layout: ``videos = {class: [(name, num_frames)]}``; groups alternate train/test.

    Returns ``(videos_root, splits_dir)``. Video i of a class is in test of split k when
    ``i % 3 == k - 1``, in train otherwise. Lists use CRLF like the official files.
    """
    videos_root, splits_dir = Path(root) / "UCF-101", Path(root) / "ucfTrainTestlist"
    splits_dir.mkdir(parents=True, exist_ok=True)
    classes = sorted(videos)
    (splits_dir / "classInd.txt").write_text("".join(f"{i + 1} {c}\r\n" for i, c in enumerate(classes)),
                                             newline="")
    train = {k: [] for k in (1, 2, 3)}
    test = {k: [] for k in (1, 2, 3)}
    for label, cls in enumerate(classes):
        for i, (name, count) in enumerate(videos[cls]):
            relative = f"{cls}/{name}.avi"
            if count > 0:
                write_video(videos_root / relative, moving_frames(count, seed=label * 100 + i))
            else:
                (videos_root / relative).parent.mkdir(parents=True, exist_ok=True)
                (videos_root / relative).write_bytes(b"this is not a video")
            for k in (1, 2, 3):
                (test[k] if i % 3 == k - 1 else train[k]).append((relative, label + 1))
    for k in (1, 2, 3):
        (splits_dir / f"trainlist0{k}.txt").write_text("".join(f"{p} {l}\r\n" for p, l in train[k]), newline="")
        (splits_dir / f"testlist0{k}.txt").write_text("".join(f"{p}\r\n" for p, _ in test[k]), newline="")
    return videos_root, splits_dir


def make_hmdb51(root: Path, videos: dict[str, list[tuple[str, int]]]) -> tuple[Path, Path]:
    """An HMDB51 layout: video i of a class has flag 2 (test) in split k when ``i % 3 == k - 1``;
    in split 3 video ``i % 3 == 0`` is unused (flag 0); otherwise flag 1 (train).
    Returns ``(videos_root, splits_dir)``."""
    videos_root, splits_dir = Path(root) / "hmdb51", Path(root) / "testTrainMulti_7030_splits"
    splits_dir.mkdir(parents=True, exist_ok=True)
    for label, cls in enumerate(sorted(videos)):
        lines = {k: [] for k in (1, 2, 3)}
        for i, (name, count) in enumerate(videos[cls]):
            write_video(videos_root / cls / f"{name}.avi", moving_frames(count, seed=label * 100 + i))
            for k in (1, 2, 3):
                flag = 2 if i % 3 == k - 1 else 0 if (k == 3 and i % 3 == 0) else 1
                lines[k].append(f"{name}.avi {flag} \n")
        for k in (1, 2, 3):
            (splits_dir / f"{cls}_test_split{k}.txt").write_text("".join(lines[k]))
    return videos_root, splits_dir


def read_db(path) -> dict:
    """Every key -> value of an LMDB database (for comparing databases in tests)."""
    import lmdb

    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:
        items = dict(txn.cursor())
    env.close()
    return items


EXTRACT_SETTINGS = ExtractSettings(short_side=None, flow_algorithm="dis")
LABELS = {"A/v_a": 0, "B/v b é": 1, "B/v_c": 1}


def extract_three_videos(tmp_path: Path) -> tuple[Path, dict[str, dict]]:
    """Three extracted videos (5, 7 and 4 frames, one with a non-ASCII name) under ``tmp/out/frames``:
    ``(frames_root, {video_id: meta})``."""
    frames_root = tmp_path / "out" / "frames"
    metas = {}
    for i, (video_id, count) in enumerate([("A/v_a", 5), ("B/v b é", 7), ("B/v_c", 4)]):
        path = write_video(tmp_path / "videos" / f"{video_id}.avi", moving_frames(count, seed=i))
        metas[video_id] = extract_video(path, frames_root / video_id, EXTRACT_SETTINGS).meta
    return frames_root, metas


def store_index(metas: dict[str, dict], modality: str, labels: dict[str, int] | None = None) -> StoreIndex:
    """The split-1 train index of the extracted videos for one modality."""
    key = "num_frames" if modality == "rgb" else "num_flow"
    labels = labels or LABELS
    videos = [VideoEntry(v, labels[v], metas[v][key]) for v in sorted(metas)]
    return StoreIndex("ucf101", 1, "train", modality, ["A", "B"], videos, EXTRACT_SETTINGS.as_json())


def video_sources(frames_root: Path, metas: dict[str, dict]) -> dict[str, VideoSource]:
    return {v: VideoSource(frames_root / v, m["height"], m["width"]) for v, m in metas.items()}
