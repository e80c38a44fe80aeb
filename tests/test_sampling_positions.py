"""Frame positions: the authors' test-time gap rule, stacks that fit, short videos, training ranges."""

import numpy as np
import pytest

from mfuse.sampling.positions import flow_stack_indices, frame_range, rgb_index, sample_positions, train_position


def test_authors_gap_rule():
    positions = sample_positions(300)
    gap = (300 - 10) // 25
    np.testing.assert_array_equal(positions, 1 + gap * np.arange(25))
    assert positions[-1] + 9 <= 300 - 1


@pytest.mark.parametrize("num_frames", range(2, 400, 7))
def test_every_stack_fits_or_is_clamped(num_frames):
    positions = sample_positions(num_frames)
    assert positions.shape == (25,) and positions.dtype == np.int64
    assert np.all(np.diff(positions) >= 0) and positions.min() >= 1
    num_flow = num_frames - 1
    if num_frames > 10:
        assert positions.max() + 9 <= num_flow
    for t in positions:
        stack = flow_stack_indices(int(t), num_flow)
        assert len(stack) == 10 and stack.min() >= 1 and stack.max() <= num_flow


def test_short_video_spreads_positions_over_the_valid_range():
    positions = sample_positions(20)  # 10 valid starts for 25 samples
    assert positions[0] == 1 and positions[-1] == 10
    assert set(positions.tolist()) == set(range(1, 11))
    np.testing.assert_array_equal(sample_positions(8), np.ones(25))


def test_flow_stack_clamps_to_the_last_flow_image():
    np.testing.assert_array_equal(flow_stack_indices(3, 20), np.arange(3, 13))
    np.testing.assert_array_equal(flow_stack_indices(1, 4), [1, 2, 3, 4, 4, 4, 4, 4, 4, 4])
    with pytest.raises(ValueError, match="outside"):
        flow_stack_indices(5, 4)
    with pytest.raises(ValueError, match="num_flow"):
        flow_stack_indices(1, 0)


def test_rgb_index():
    assert rgb_index(5, 100) == 5
    assert rgb_index(5, 100, centre=True) == 10
    assert rgb_index(95, 98, centre=True) == 98
    with pytest.raises(ValueError):
        rgb_index(0, 10)


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least 2 frames"):
        sample_positions(1)
    with pytest.raises(ValueError):
        sample_positions(100, num_samples=0)


def test_frame_range_keeps_the_stack_inside_the_flow_images():
    assert frame_range({"rgb": 20, "flow": 19, "mag": 19}, 10) == 10
    assert frame_range({"rgb": 20}, 10) == 20
    assert frame_range({"rgb": 20, "mag": 19}, 10) == 19
    assert frame_range({"rgb": 5, "flow": 4}, 10) == 1  # short video: padded stack from t = 1


def test_train_position_is_uniform_or_the_middle():
    rng = np.random.RandomState(3)
    drawn = {train_position(7, rng) for _ in range(200)}
    assert drawn == set(range(1, 8))
    assert train_position(7, None) == 4 and train_position(1, None) == 1
