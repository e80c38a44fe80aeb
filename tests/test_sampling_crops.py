"""Crop geometry on numbered images, flips of flow stacks, mean subtraction, shared boxes."""

import numpy as np
import pytest

from mfuse.conventions import FLOW_MEAN, RGB_MEAN
from mfuse.sampling.crops import (FLOW_X_CHANNELS, CropBox, choose_crop, crop_boxes, crop_flow_images, crop_image,
                                  crop_modalities, crop_uint8, flow_x_channels, normalize, split_flow_image,
                                  stack_flow)


def numbered(height, width):
    """uint16 image whose pixel (y, x) holds y * 1000 + x, as 1 channel."""
    ys, xs = np.mgrid[:height, :width]
    return (ys * 1000 + xs)[:, :, None]


def decode(crop):
    return crop // 1000, crop % 1000


def test_ten_crop_boxes_follow_caffe_oversample():
    boxes = crop_boxes(256, 340, 224)
    assert boxes[:5] == [CropBox(0, 0, False), CropBox(0, 116, False), CropBox(32, 0, False),
                         CropBox(32, 116, False), CropBox(16, 58, False)]
    assert boxes[5:] == [b._replace(mirror=True) for b in boxes[:5]]
    assert crop_boxes(256, 341, 224, "center") == [CropBox(16, 58, False)]


@pytest.mark.parametrize("height, width, size", [(256, 340, 224), (48, 64, 40), (60, 80, (32, 48)), (10, 10, 10)])
def test_crops_cut_the_right_pixels(height, width, size):
    image = numbered(height, width)
    crops = crop_image(image, size)
    crop_h, crop_w = (size, size) if np.isscalar(size) else size
    assert crops.shape == (10, 1, crop_h, crop_w) and crops.dtype == np.float32
    for crop, box in zip(crops.astype(np.int64)[:, 0], crop_boxes(height, width, size)):
        ys, xs = decode(crop)
        expected_x = box.left + np.arange(crop_w)
        if box.mirror:
            expected_x = expected_x[::-1]
        np.testing.assert_array_equal(ys, np.broadcast_to(box.top + np.arange(crop_h)[:, None], ys.shape))
        np.testing.assert_array_equal(xs, np.broadcast_to(expected_x[None, :], xs.shape))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    centre = crops[4, 0].astype(np.int64)
    assert centre[0, 0] == top * 1000 + left
    np.testing.assert_array_equal(crops[9, 0], crops[4, 0][:, ::-1])


def test_mirror_of_a_flow_stack_inverts_x_only():
    rng = np.random.default_rng(0)
    flows = [rng.integers(0, 256, (30, 80), dtype=np.uint8) for _ in range(10)]  # H x 2W, W = 40
    stack = stack_flow(flows)
    assert stack.shape == (30, 40, 20)
    np.testing.assert_array_equal(stack[:, :, 0], flows[0][:, :40])
    np.testing.assert_array_equal(stack[:, :, 1], flows[0][:, 40:])
    np.testing.assert_array_equal(stack[:, :, 19], flows[9][:, 40:])
    crops = crop_image(stack, 24, x_channels=FLOW_X_CHANNELS)
    plain, mirrored = crops[0], crops[5]  # same box, mirrored
    np.testing.assert_array_equal(mirrored[0::2], 255.0 - plain[0::2][:, :, ::-1])
    np.testing.assert_array_equal(mirrored[1::2], plain[1::2][:, :, ::-1])
    centred = crop_image(stack, 24, x_channels=FLOW_X_CHANNELS, mean=FLOW_MEAN)
    np.testing.assert_array_equal(centred, crops - 128.0)


def test_rgb_mean_is_per_channel_bgr():
    image = np.zeros((8, 8, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 104, 117, 123
    crops = crop_image(image, 6, mean=RGB_MEAN)
    assert crops.shape == (10, 3, 6, 6)
    np.testing.assert_array_equal(crops, 0.0)
    with pytest.raises(ValueError, match="3 values for 1 channels"):
        crop_image(image[..., :1], 6, mean=RGB_MEAN)


def test_modalities_share_boxes_and_mirrors():
    height, width = 20, 30
    rgb = np.repeat((numbered(height, width) % 256).astype(np.uint8), 3, axis=2)
    flow = np.concatenate([np.full((height, width, 1), 200, np.uint8), np.full((height, width, 1), 50, np.uint8)], 2)
    mag = (numbered(height, width)[..., 0] % 256).astype(np.uint8)
    out = crop_modalities({"rgb": rgb, "flow": flow, "mag": mag}, 16,
                          means={"rgb": RGB_MEAN, "flow": FLOW_MEAN, "mag": None},
                          x_channels={"flow": FLOW_X_CHANNELS})
    assert out["rgb"].shape == (10, 3, 16, 16) and out["flow"].shape == (10, 2, 16, 16)
    assert out["mag"].shape == (10, 1, 16, 16)
    np.testing.assert_array_equal(out["mag"][:, 0], out["rgb"][:, 0] + RGB_MEAN[0])
    np.testing.assert_array_equal(out["flow"][:5, 0], 200 - 128.0)
    np.testing.assert_array_equal(out["flow"][5:, 0], 255 - 200 - 128.0)
    np.testing.assert_array_equal(out["flow"][:, 1], 50 - 128.0)
    center = crop_modalities({"mag": mag}, 16, "center", means={"mag": None})["mag"]
    np.testing.assert_array_equal(center[0], out["mag"][4])


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="does not fit"):
        crop_boxes(20, 30, 24)
    with pytest.raises(ValueError, match="unknown crop mode"):
        crop_boxes(20, 30, 8, "five")
    with pytest.raises(ValueError, match="differ in size"):
        crop_modalities({"rgb": np.zeros((20, 30, 3), np.uint8), "mag": np.zeros((20, 31), np.uint8)}, 8,
                        means={"rgb": None, "mag": None})
    with pytest.raises(ValueError, match="no mean given"):
        crop_modalities({"rgb": np.zeros((20, 30, 3), np.uint8)}, 8, means={})
    with pytest.raises(ValueError, match="H x 2W"):
        split_flow_image(np.zeros((10, 11), np.uint8))
    with pytest.raises(ValueError, match="differ in size"):
        stack_flow([np.zeros((10, 20), np.uint8), np.zeros((10, 22), np.uint8)])


def test_crop_larger_than_frame_is_refused():
    with pytest.raises(ValueError, match="does not fit"):
        choose_crop(6, 8, 7, None, False)


def test_training_crop_is_the_centre_box_without_a_generator_and_random_with_one():
    assert choose_crop(6, 8, 4, None, True) == crop_boxes(6, 8, 4, "center")[0]
    rng = np.random.RandomState(0)
    boxes = {choose_crop(6, 8, 4, rng, True) for _ in range(300)}
    assert {(b.top, b.left) for b in boxes} == {(t, l) for t in range(3) for l in range(5)}
    assert {b.mirror for b in boxes} == {True, False}
    assert not any(choose_crop(6, 8, 4, rng, False).mirror for _ in range(50))


def test_flow_x_channels_only_for_flow():
    assert flow_x_channels(["rgb", "flow"]) == {"flow": FLOW_X_CHANNELS}
    assert flow_x_channels({"rgb": None, "mag": None}) == {}


def test_flow_crops_cut_from_the_images_equal_crops_of_the_assembled_stack():
    rng = np.random.default_rng(1)
    flows = [rng.integers(0, 256, (20, 2 * 30), dtype=np.uint8) for _ in range(4)]
    boxes = crop_boxes(20, 30, 12, "ten") + [CropBox(3, 7, True), CropBox(8, 0, False)]
    direct = crop_flow_images(flows, boxes, 12)
    assert direct.dtype == np.uint8 and direct.shape == (12, 8, 12, 12)
    reference = crop_image(stack_flow(flows), 12, mean=0.0, x_channels=FLOW_X_CHANNELS, boxes=boxes)
    np.testing.assert_array_equal(direct.astype(np.float32), reference)
    with pytest.raises(ValueError, match="outside the 20x30 image"):
        crop_flow_images(flows, [CropBox(0, 19, False)], 12)
    with pytest.raises(ValueError, match="differ in size"):
        crop_flow_images(flows + [flows[0][:, :40]], boxes, 12)


def test_uint8_crops_then_normalize_equal_the_float_crops():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    boxes = crop_boxes(20, 30, 10, "ten")
    crops = crop_uint8(image, boxes, 10)
    assert crops.dtype == np.uint8
    expected = np.stack([(image[b.top:b.top + 10, b.left:b.left + 10][:, ::-1 if b.mirror else 1]
                          .astype(np.float32) - np.float32(RGB_MEAN)).transpose(2, 0, 1) for b in boxes])
    np.testing.assert_array_equal(normalize(crops, RGB_MEAN), expected)
    out = np.zeros(expected.shape, np.float32)
    assert normalize(crops, RGB_MEAN, out=out) is out
    with pytest.raises(ValueError, match="2 values for 3 channels"):
        normalize(crops, [1, 2])
