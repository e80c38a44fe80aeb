"""Generator: decoded videos, determinism, manifest/resume/overwrite rules and the CLI."""

import hashlib
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from mfuse.synthetic import SyntheticConfig, generate, plan_videos, render_video

SMALL = SyntheticConfig(num_groups=4, clips_per_group=1, size=(80, 60), num_frames=7, seed=11)
REPO = Path(__file__).resolve().parents[1]


def _decode(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def _list_digests(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.txt")) + [root / "synthetic.json"]}


def test_decoded_videos_have_the_requested_frames(tmp_path):
    dataset = generate(tmp_path, SMALL, progress=False)
    assert len(dataset.videos) == 8 * 4
    for video in dataset.videos:
        frames = _decode(tmp_path / video.relpath)
        assert len(frames) == 7
        assert all(f.shape == (60, 80, 3) for f in frames)
    # MJPG is lossy but close to the rendered frames
    video = dataset.videos[5]
    decoded = np.stack(_decode(tmp_path / video.relpath)).astype(np.float32)
    rendered = np.stack(render_video(SMALL, video).frames).astype(np.float32)
    assert np.abs(decoded - rendered).mean() < 4.0
    assert not list(tmp_path.rglob(".*"))  # no temporary left (mfuse.fileio.atomic_path)


def test_same_seed_same_dataset_other_seed_other_videos(tmp_path):
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(first, SMALL, progress=False)
    generate(second, SMALL, progress=False)
    generate(other, replace(SMALL, seed=12), progress=False)
    assert _list_digests(first) == _list_digests(second)
    for video in plan_videos(SMALL):
        a, b, c = (np.stack(_decode(root / video.relpath)) for root in (first, second, other))
        np.testing.assert_array_equal(a, b)
        assert np.abs(a.astype(int) - c.astype(int)).mean() > 1.0


def test_a_video_does_not_depend_on_the_number_of_groups_or_clips():
    bigger = replace(SMALL, num_groups=6, clips_per_group=2)
    video = plan_videos(SMALL)[9]
    same = next(v for v in plan_videos(bigger) if v.relpath == video.relpath)
    np.testing.assert_array_equal(np.stack(render_video(SMALL, video).frames), np.stack(render_video(bigger, same).frames))


def test_existing_root_rules(tmp_path):
    generate(tmp_path / "d", SMALL, progress=False)
    manifest = (tmp_path / "d" / "synthetic.json").stat().st_mtime_ns
    generate(tmp_path / "d", SMALL, progress=False)  # same parameters: left as it is
    assert (tmp_path / "d" / "synthetic.json").stat().st_mtime_ns == manifest
    other = replace(SMALL, num_frames=5)
    with pytest.raises(FileExistsError, match="other parameters"):
        generate(tmp_path / "d", other, progress=False)
    generate(tmp_path / "d", other, overwrite=True, progress=False)
    assert len(_decode(tmp_path / "d" / plan_videos(other)[0].relpath)) == 5
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        generate(tmp_path / "e", SMALL, overwrite=True, progress=False)
    assert (tmp_path / "e" / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize("bad, match", [({"layout": "kinetics"}, "layout"), ({"size": (20, 60)}, "size"),
                                        ({"size": (48, 64)}, "width >= height"),
                                        ({"clips_per_group": 0}, "clips_per_group"),
                                        ({"num_frames": 1}, "num_frames")])
def test_bad_config_is_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        replace(SMALL, **bad)


def test_cli(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "tools" / "make_synthetic.py"), str(tmp_path / "s"),
                             "--num-groups", "4", "--clips-per-group", "1", "--size", "64", "48",
                             "--num-frames", "3", "--layout", "hmdb51"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "32 videos of 8 classes" in result.stdout
    assert len(list((tmp_path / "s").glob("*/*.avi"))) == 32
    assert (tmp_path / "s" / "testTrainMulti_7030_splits" / "red_orbit_test_split3.txt").is_file()
