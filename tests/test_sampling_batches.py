"""Training batches and the test's crops as uint8 items (mfuse.sampling.batches), checked against a plain numpy
oracle of the sampling rules (whole stacked images, float64, cropped by slicing)."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from mfuse.conventions import MEANS
from mfuse.processes import ParallelProducer
from mfuse.sampling import ClipSpec, ProtocolCrops, TrainBatches, normalize, sample_positions, to_net_inputs
from mfuse.stores.reader import open_frame_stores

MODALITIES = ("rgb", "flow", "mag")


@pytest.fixture
def stores(tiny_data_root):
    return open_frame_stores(tiny_data_root, 1, "train", MODALITIES)


def oracle_image(store, modality, video_id, t, stack_length):
    """rgb / mag image t, or the flow stack t..t+L-1 (clamped) as H x W x 2L, float64."""
    if modality != "flow":
        image = store.get_image(video_id, t).astype(np.float64)
        return (image if image.ndim == 3 else image[:, :, None]), []
    n = store.num_frames(video_id)
    channels = []
    for k in range(stack_length):
        image = store.get_image(video_id, min(t + k, n)).astype(np.float64)
        half = image.shape[1] // 2
        channels += [image[:, :half], image[:, half:]]
    return np.stack(channels, axis=2), list(range(0, 2 * stack_length, 2))


def oracle_crop(image, x_channels, top, left, mirror, crop, mean):
    patch = image[top:top + crop, left:left + crop].copy()
    if mirror:
        patch = patch[:, ::-1]
        patch[:, :, x_channels] = 255 - patch[:, :, x_channels]
    return patch.transpose(2, 0, 1) - (0 if mean is None else np.asarray(mean, np.float64).reshape(-1, 1, 1))


def test_train_batches_follow_the_sampling_rules(stores):
    spec = ClipSpec(MODALITIES, 10, 40, dict(MEANS))
    batches = TrainBatches(stores, spec, batch_size=5, shuffle=True, mirror=True, seed=3)
    out = {name: np.zeros(shape, dtype) for name, (shape, dtype) in batches.layout().items()}
    batches.fill(7, out)                                  # samples 35..39: two epochs of 32 videos are involved
    videos = sorted(v.video_id for v in stores["rgb"].index.videos)
    mirrors = 0
    for row, index in enumerate(range(35, 40)):
        epoch, position = divmod(index, len(videos))
        video_id = videos[np.random.RandomState(3 + epoch).permutation(len(videos))[position]]
        rng = np.random.RandomState([3, 0, index])
        counts = {m: stores[m].num_frames(video_id) for m in MODALITIES}
        valid = min(max(1, counts["flow"] - 10 + 1), counts["rgb"], counts["mag"])
        t = int(rng.randint(1, valid + 1))
        height, width = stores["rgb"].get_image(video_id, 1).shape[:2]
        top, left = int(rng.randint(0, height - 40 + 1)), int(rng.randint(0, width - 40 + 1))
        mirror = bool(rng.randint(2))
        mirrors += mirror
        for m in MODALITIES:
            image, x = oracle_image(stores[m], m, video_id, t, 10)
            expected = oracle_crop(image, x, top, left, mirror, 40, MEANS[m])
            np.testing.assert_array_equal(normalize(out[m][row:row + 1], MEANS[m])[0], expected.astype(np.float32))
        assert out["label"][row] == stores["rgb"].index.video(video_id).label
    assert 0 < mirrors < 5                                 # both kinds were checked


def test_test_crops_are_the_ten_crops_of_the_sampled_frames(stores):
    index = stores["rgb"].index
    videos = [(v.video_id, v.num_frames) for v in index.videos[:2]]
    crops = ProtocolCrops(stores, videos, frames=25, crop_mode="ten", crop_size=40, stack_length=10,
                      rgb_at_stack_centre=True)
    out = {name: np.zeros(shape, dtype) for name, (shape, dtype) in crops.layout().items()}
    item = 25 + 13                                        # video 1, sampled frame 13
    crops.fill(item, out)
    video_id, n = videos[1]
    t = int(sample_positions(n)[13])
    height, width = stores["rgb"].get_image(video_id, 1).shape[:2]
    boxes = [(0, 0), (0, width - 40), (height - 40, 0), (height - 40, width - 40),
             ((height - 40) // 2, (width - 40) // 2)]
    for m in MODALITIES:
        frame = min(t + 5, n) if m == "rgb" else t
        image, x = oracle_image(stores[m], m, video_id, frame, 10)
        expected = [oracle_crop(image, x, top, left, mirror, 40, MEANS[m]) for mirror in (False, True)
                    for top, left in boxes]
        np.testing.assert_array_equal(normalize(out[m], MEANS[m]), np.array(expected, np.float32))
    assert len(crops) == 50


def test_batches_do_not_depend_on_the_workers_that_made_them(stores):
    spec = ClipSpec(("rgb", "flow"), 10, 40, dict(MEANS))
    batches = TrainBatches({m: stores[m] for m in ("rgb", "flow")}, spec, batch_size=4, shuffle=True, mirror=True,
                           seed=5)
    made = []
    for workers in (0, 2):
        with ParallelProducer(batches, start=3, stop=8, workers=workers) as source:
            made.append([{k: v.copy() for k, v in source.get().items()} for _ in range(5)])
    for inline, parallel in zip(*made):
        for key in inline:
            np.testing.assert_array_equal(inline[key], parallel[key])


def test_net_inputs_split_over_threads_equal_one_conversion():
    rng = np.random.default_rng(0)
    item = {"rgb": rng.integers(0, 256, (7, 3, 5, 5), dtype=np.uint8),
            "flow": rng.integers(0, 256, (7, 20, 5, 5), dtype=np.uint8)}
    means = {"rgb": MEANS["rgb"], "flow": MEANS["flow"]}
    one = {m: np.zeros(a.shape, np.float32) for m, a in item.items()}
    many = {m: np.zeros(a.shape, np.float32) for m, a in item.items()}
    to_net_inputs(item, means, one)
    with ThreadPoolExecutor(3) as pool:
        to_net_inputs(item, means, many, pool, parts=3)
    for m in item:
        np.testing.assert_array_equal(one[m], many[m])
        np.testing.assert_array_equal(one[m], normalize(item[m], means[m]))
    rows = {m: np.zeros((2,) + a.shape[1:], np.float32) for m, a in item.items()}
    to_net_inputs(item, means, rows, rows=slice(3, 5))
    np.testing.assert_array_equal(rows["flow"], one["flow"][3:5])
    with pytest.raises(ValueError, match="do not fit"):
        to_net_inputs(item, means, rows)
