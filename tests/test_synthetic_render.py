"""Geometry of the synthetic clips: discs inside the frame, apart, jitter bounded, size errors."""

import numpy as np
import pytest

from mfuse.synthetic import CLASSES
from mfuse.synthetic.render import MASK_VALUES, DiscMotion, camera_jitter, make_scene, place_discs, render_clip


def test_disc_trajectories():
    swing = DiscMotion("swing", (30.0, 20.0), amplitude=5.0, period=8.0, phase=0.0, clockwise=True)
    positions = swing.positions(9)
    np.testing.assert_allclose(positions[:, 1], 20.0)
    np.testing.assert_allclose(positions[[0, 2, 4, 6, 8], 0], [30, 35, 30, 25, 30], atol=1e-9)
    bounce = DiscMotion("bounce", (30.0, 20.0), 5.0, 8.0, 0.0, True).positions(9)
    np.testing.assert_allclose(bounce[:, 0], 30.0)
    orbit = DiscMotion("orbit", (0.0, 0.0), 4.0, 10.0, 0.3, False).positions(10)
    np.testing.assert_allclose(np.linalg.norm(orbit, axis=1), 4.0)
    np.testing.assert_allclose(DiscMotion("still", (3.0, 4.0), 5.0, 8.0, 0.0, True).positions(3), [[3, 4]] * 3)
    with pytest.raises(ValueError, match="unknown motion"):
        DiscMotion("jump", (0.0, 0.0), 1.0, 8.0, 0.0, True).positions(2)


@pytest.mark.parametrize("size", [(64, 48), (80, 60), (48, 48)])
def test_discs_stay_inside_and_apart(size):
    width, height = size
    rng = np.random.default_rng(0)
    for _ in range(20):
        for action in CLASSES:
            discs = place_discs(rng, action, size, radius=0.11 * height)
            assert set(discs) == set(action.motions())
            for disc in discs.values():
                track = disc.positions(40)
                reach = 0.11 * height + 0.04 * height
                assert track[:, 0].min() >= reach and track[:, 0].max() <= width - reach
                assert track[:, 1].min() >= reach and track[:, 1].max() <= height - reach
            if len(discs) == 2:
                a, b = (d.positions(40) for d in discs.values())
                assert np.linalg.norm(a[:, None] - b[None], axis=-1).min() > 2 * 0.11 * height


def test_too_small_frame_is_refused():
    with pytest.raises(ValueError, match="too small|larger size"):
        place_discs(np.random.default_rng(0), CLASSES[4], (20, 12), radius=3.0)


def test_jitter_is_bounded_and_smooth():
    jitter = camera_jitter(np.random.default_rng(1), 200, 48)
    assert np.abs(jitter).max() <= 0.04 * 48 + 1e-9
    assert np.abs(np.diff(jitter, axis=0)).max() < 0.1 * 48
    assert jitter.std() > 0.1


def test_render_clip_shape_and_motion():
    rng = np.random.default_rng(2)
    scene = make_scene(rng, (64, 48))
    assert scene.background.shape == (48, 64, 3) and scene.background.dtype == np.uint8
    clip = render_clip(rng, CLASSES[6], scene, 12)  # RedSwing
    frames = clip.frames
    assert len(frames) == 12 and all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in frames)
    red = [(f[..., 2].astype(int) - f[..., :2].max(axis=2)) > 80 for f in frames]
    red_x = [np.nonzero(mask)[1].mean() for mask in red]
    assert np.ptp(red_x) > 4.0  # the red disc swings


def test_masks_mark_the_discs_under_the_camera_shift():
    rng = np.random.default_rng(4)
    scene = make_scene(rng, (96, 72))
    clip = render_clip(rng, CLASSES[4], scene, 10)  # RedBounceBlueSwing: both discs move
    assert clip.masks.shape == (10, 72, 96) and clip.masks.dtype == np.uint8
    assert set(np.unique(clip.masks)) == {0, MASK_VALUES["red"], MASK_VALUES["blue"]}
    assert clip.moving == {"red": True, "blue": True}
    area = np.pi * scene.radius ** 2
    for frame, mask in zip(clip.frames, clip.masks):
        frame = frame.astype(int)
        red = (frame[..., 2] - frame[..., :2].max(axis=2)) > 80
        blue = (frame[..., 0] - frame[..., 1:].max(axis=2)) > 80
        for colour, seen in (("red", red), ("blue", blue)):
            marked = mask == MASK_VALUES[colour]
            assert abs(marked.sum() - area) < 0.25 * area
            assert (marked & seen).sum() > 0.85 * seen.sum()  # the coloured pixels are inside the mask
    assert np.array_equal(clip.moving_mask(), clip.masks > 0)
    assert np.array_equal(clip.background_mask(), clip.masks == 0)


def test_a_still_disc_is_not_in_the_moving_mask():
    rng = np.random.default_rng(5)
    clip = render_clip(rng, CLASSES[0], make_scene(rng, (64, 48)), 6)  # BlueBounce: red disc still
    assert clip.moving == {"red": False, "blue": True}
    assert np.array_equal(clip.moving_mask(), clip.masks == MASK_VALUES["blue"])
