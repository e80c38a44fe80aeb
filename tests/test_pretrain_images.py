"""mfuse.pretrain.images: the synthetic image task (categories, determinism, what an image shows)."""
import cv2
import numpy as np
import pytest

from mfuse.pretrain.images import SHAPES, TEXTURES, ImageTaskConfig, plan_images, render_image


def test_categories_enumerate_shape_hue_texture():
    config = ImageTaskConfig(num_shapes=3, num_hues=4, num_textures=2)
    assert config.num_classes == 24
    assert [config.category(label) for label in (0, 1, 2, 23)] == [
        ("disc", 0, "solid"), ("disc", 0, "stripes"), ("disc", 1, "solid"), ("square", 3, "stripes")]
    names = config.class_names()
    assert len(set(names)) == 24 and names[1] == "disc_hue0_stripes"
    with pytest.raises(ValueError, match="label must be in 0..23"):
        config.category(24)


@pytest.mark.parametrize("kwargs, message", [(dict(num_shapes=len(SHAPES) + 1), "num_shapes"),
                                             (dict(num_textures=0), "num_textures"), (dict(num_hues=0), "num_hues"),
                                             (dict(size=(16, 64)), "size"), (dict(val_per_class=0), "per_class"),
                                             (dict(radius=(0.3, 0.2)), "radius")])
def test_bad_configs_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImageTaskConfig(**kwargs)


def test_images_are_deterministic_and_differ_between_indices():
    config = ImageTaskConfig(size=(48, 40))
    first = render_image(config, 5, 0)
    assert first.shape == (40, 48, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, render_image(config, 5, 0))
    assert np.abs(first.astype(int) - render_image(config, 5, 1)).mean() > 5
    other_seed = ImageTaskConfig(size=(48, 40), seed=1)
    assert np.abs(first.astype(int) - render_image(other_seed, 5, 0)).mean() > 5


def test_train_and_val_images_never_coincide():
    config = ImageTaskConfig(num_shapes=2, num_hues=2, num_textures=1, train_per_class=3, val_per_class=2)
    train, val = plan_images(config, "train"), plan_images(config, "val")
    assert len(train) == 12 and len(val) == 8 and not set(train) & set(val)
    assert sorted({label for label, _ in train}) == list(range(4))
    with pytest.raises(ValueError, match="subset"):
        plan_images(config, "test")


def _object_hue(image):
    """Median OpenCV hue of the most saturated pixels (the object is saturated; backgrounds vary)."""
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV).reshape(-1, 3).astype(float)
    top = hsv[hsv[:, 1] >= np.percentile(hsv[:, 1], 97)]
    return np.median(top[:, 0])


def test_the_hue_category_is_the_object_colour():
    """Large solid objects on a plain task: the most saturated pixels have the category's hue (+- 1/4 step)."""
    config = ImageTaskConfig(num_shapes=1, num_hues=4, num_textures=1, size=(64, 64), radius=(0.3, 0.4))
    hits = 0
    for hue in range(4):
        for index in range(10):
            measured = _object_hue(render_image(config, hue, index))
            distance = min(abs(measured - 45 * hue), 180 - abs(measured - 45 * hue))
            hits += distance <= 45 * 0.25 + 4
    assert hits >= 30  # of 40 (chance: 10); a saturated background or clutter line can win in a few images


def test_textures_make_stripes_or_checks_on_the_object():
    config = ImageTaskConfig(num_shapes=1, num_hues=1, num_textures=len(TEXTURES), size=(64, 64), radius=(0.35, 0.4))
    spread = {}
    for texture in range(len(TEXTURES)):
        centres = [render_image(config, texture, i)[16:48, 16:48] for i in range(6)]
        spread[TEXTURES[texture]] = np.median([c.astype(float).std(axis=(0, 1)).mean() for c in centres])
    assert spread["stripes"] > 1.5 * spread["solid"] and spread["checks"] > 1.5 * spread["solid"]
