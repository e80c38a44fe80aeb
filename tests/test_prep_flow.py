import cv2
import numpy as np
import pytest

from dataprep_helpers import texture
from mfuse.prep.flow import (ALGORITHMS, create_flow_function, dequantize_flow, flow_magnitude, pack_flow,
                             quantize_flow, subtract_camera_motion, unpack_flow)


def test_quantisation_follows_the_dense_flow_formula():
    flow = np.array([[[-20.0, 20.0], [0.0, -30.0], [25.0, 1.0], [-1.0, 10.0]]], np.float32)
    q = quantize_flow(flow, bound=20)
    expected = np.rint(255 * (np.clip(flow, -20, 20) + 20) / 40)
    np.testing.assert_array_equal(q, expected)
    assert q.dtype == np.uint8
    assert q[0, 0].tolist() == [0, 255] and q[0, 1].tolist() == [128, 0] and q[0, 2, 0] == 255


def test_dequantisation_is_within_half_a_step_inside_the_bound():
    values = np.linspace(-7.5, 7.5, 301, dtype=np.float32)
    flow = np.stack([values, -values], axis=-1)[None]
    back = dequantize_flow(quantize_flow(flow, bound=7.5), bound=7.5)
    assert np.abs(back - flow).max() <= 7.5 / 255 + 1e-5


def test_magnitude_uses_the_raw_flow_rounded_and_clipped():
    flow = np.array([[[3.0, 4.0], [30.0, 40.0], [300.0, 0.0], [0.3, 0.3]]], np.float32)
    assert flow_magnitude(flow).tolist() == [[5, 50, 255, 0]]


def test_pack_puts_x_left_and_y_right_and_unpack_inverts_it():
    q = np.random.default_rng(0).integers(0, 256, (5, 7, 2)).astype(np.uint8)
    packed = pack_flow(q)
    assert packed.shape == (5, 14)
    np.testing.assert_array_equal(packed[:, :7], q[..., 0])
    np.testing.assert_array_equal(packed[:, 7:], q[..., 1])
    x, y = unpack_flow(packed)
    np.testing.assert_array_equal(x, q[..., 0])
    np.testing.assert_array_equal(y, q[..., 1])


def test_bad_shapes_and_names_are_rejected():
    with pytest.raises(ValueError, match=r"\(H, W, 2\)"):
        quantize_flow(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="even width"):
        unpack_flow(np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match="unknown flow algorithm 'brox'"):
        create_flow_function("brox")
    with pytest.raises(ValueError, match="positive"):
        quantize_flow(np.zeros((1, 1, 2), np.float32), bound=0)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("shift", [(2, -1), (-3, 2)])
def test_a_known_translation_survives_flow_quantisation_and_jpeg(algorithm, shift):
    dx, dy = shift
    big = texture(64, 72, seed=3)
    prev = big[8:40, 8:56]
    nxt = big[8 - dy:40 - dy, 8 - dx:56 - dx]          # content moves by (+dx, +dy)
    flow = create_flow_function(algorithm)(prev, nxt)
    assert flow.shape == (32, 48, 2) and flow.dtype == np.float32
    ok, jpeg = cv2.imencode(".jpg", pack_flow(quantize_flow(flow)), [cv2.IMWRITE_JPEG_QUALITY, 95])
    x, y = unpack_flow(cv2.imdecode(jpeg, cv2.IMREAD_GRAYSCALE))
    inner = (slice(6, -6), slice(6, -6))
    est_x = np.median(dequantize_flow(x)[inner])
    est_y = np.median(dequantize_flow(y)[inner])
    assert abs(est_x - dx) < 0.3 and abs(est_y - dy) < 0.3, (est_x, est_y)
    magnitude = np.median(flow_magnitude(flow)[inner])
    assert magnitude == round(np.hypot(dx, dy))


def test_flow_needs_two_gray_frames_of_one_size():
    flow = create_flow_function("dis")
    gray = np.zeros((16, 16), np.uint8)
    with pytest.raises(ValueError, match="two uint8 gray frames of one size"):
        flow(gray, np.zeros((16, 17), np.uint8))
    with pytest.raises(ValueError, match="two uint8 gray frames"):
        flow(np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16, 3), np.uint8))


def _camera_and_object(camera, obj, seed=5, size=(72, 96), box=(28, 52, 36, 60)):
    """Two frames: a textured scene translated by ``camera`` (dx, dy) and, on top of it, a textured square
    (rows box[0]:box[1], columns box[2]:box[3] in the first frame) moved by ``camera + obj``. Also returns
    the square's mask in the first frame."""
    height, width = size
    scene, patch = texture(height + 40, width + 40, seed), texture(box[1] - box[0], box[3] - box[2], seed + 1)

    def frame(shift, square_shift):
        out = scene[20 - shift[1]:20 - shift[1] + height, 20 - shift[0]:20 - shift[0] + width].copy()
        r, c = box[0] + square_shift[1], box[2] + square_shift[0]
        out[r:r + patch.shape[0], c:c + patch.shape[1]] = patch
        return out

    moved = (camera[0] + obj[0], camera[1] + obj[1])
    mask = np.zeros(size, bool)
    mask[box[0]:box[1], box[2]:box[3]] = True
    return frame((0, 0), (0, 0)), frame(camera, moved), mask


def _grow(mask, pixels):
    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * pixels + 1,) * 2, np.uint8)).astype(bool)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("method", ["mean", "median"])
def test_camera_motion_compensation_leaves_the_object_motion(algorithm, method):
    camera, obj = (3, -2), (-3, 4)
    prev, nxt, mask = _camera_and_object(camera, obj)
    raw = create_flow_function(algorithm)(prev, nxt)
    inner = np.zeros_like(mask)
    inner[8:-8, 8:-8] = True
    background = inner & ~_grow(mask, 6)
    core = ~_grow(~mask, 4)
    np.testing.assert_allclose(np.median(raw[background], axis=0), camera, atol=0.3)  # the camera moved all
    compensated = subtract_camera_motion(raw, method)
    # the mean is pulled towards the object by its share of the frame, the median is not
    bias = -mask.mean() * np.asarray(obj) if method == "mean" else np.zeros(2)
    np.testing.assert_allclose(np.median(compensated[background], axis=0), bias, atol=0.15)
    np.testing.assert_allclose(np.median(compensated[core], axis=0), obj + bias, atol=0.3)
    magnitude = flow_magnitude(compensated)
    assert abs(np.median(magnitude[core]) - np.hypot(*(obj + bias))) <= 0.75
    assert np.median(magnitude[background]) == 0


def test_mean_and_median_subtraction_per_component():
    flow = np.zeros((10, 10, 2), np.float32)
    flow[...] = (2.0, -1.0)          # the camera
    flow[:4] += (5.0, 3.0)            # an object over 40 % of the frame
    mean = subtract_camera_motion(flow, "mean")
    np.testing.assert_allclose(mean.reshape(-1, 2).mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(mean[5, 5], (-2.0, -1.2), atol=1e-5)   # the mean is pulled by the object
    median = subtract_camera_motion(flow, "median")
    np.testing.assert_allclose(median[5, 5], 0, atol=1e-6)            # the median is not
    np.testing.assert_allclose(median[0, 0], (5.0, 3.0), atol=1e-6)
    np.testing.assert_array_equal(subtract_camera_motion(flow, "none"), flow)
    assert subtract_camera_motion(flow, "none") is not flow
    with pytest.raises(ValueError, match="unknown flow subtraction 'mode'"):
        subtract_camera_motion(flow, "mode")
