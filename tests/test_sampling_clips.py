"""Sample assembly: frame images of a sample, shared crop and mirror, flow x inversion, epochs and ranks."""
from dataclasses import dataclass, field

import numpy as np
import pytest

from mfuse.sampling.clips import ClipSpec, common_videos, epoch_order, frame_images, make_sample
from mfuse.sampling.crops import choose_crop
from mfuse.sampling.positions import frame_range


@dataclass(frozen=True)
class Entry:
    video_id: str
    label: int
    num_frames: int


@dataclass
class Index:
    modality: str
    videos: list
    classes: list = field(default_factory=lambda: ["a", "b"])

    def video(self, video_id):
        return next(v for v in self.videos if v.video_id == video_id)


class CodedStore:
    """A frame store whose pixels encode (modality, frame, row, column) so crops can be checked."""

    def __init__(self, modality, counts, labels, height=6, width=8):
        self.index = Index(modality, [Entry(v, labels[v], n) for v, n in counts.items()])
        self.height, self.width = height, width
        self.requests = []

    def num_frames(self, video_id):
        return self.index.video(video_id).num_frames

    def get_image(self, video_id, t):
        assert 1 <= t <= self.num_frames(video_id), (video_id, t)
        self.requests.append((video_id, t))
        rows, cols = np.mgrid[:self.height, :self.width]
        base = (10 * t + rows * 3 + cols) % 200
        if self.index.modality == "rgb":
            return np.stack([base, base + 1, base + 2], axis=2).astype(np.uint8)
        if self.index.modality == "flow":  # x | y side by side; y = x + 50
            return np.concatenate([base, base + 50], axis=1).astype(np.uint8)
        return base.astype(np.uint8)


def stores_for(counts_rgb, labels=None):
    labels = labels or {v: i % 2 for i, v in enumerate(counts_rgb)}
    return {"rgb": CodedStore("rgb", counts_rgb, labels),
            "flow": CodedStore("flow", {v: n - 1 for v, n in counts_rgb.items()}, labels),
            "mag": CodedStore("mag", {v: n - 1 for v, n in counts_rgb.items()}, labels)}


SPEC = ClipSpec(("rgb", "flow", "mag"), stack_length=3, crop_size=4, means={"rgb": None, "flow": None, "mag": None})


def test_short_video_stack_repeats_the_last_flow_image():
    stores = stores_for({"v": 4})
    images = frame_images(stores, "v", 1, 5)
    assert images["flow"].shape == (6, 8, 10)
    assert [t for _, t in stores["flow"].requests] == [1, 2, 3, 3, 3]


def test_frame_images_take_rgb_where_asked_and_refuse_sizes_that_differ():
    stores = stores_for({"v": 12})
    images = frame_images(stores, "v", 2, 3, rgb_t=4)
    assert stores["rgb"].requests == [("v", 4)] and stores["mag"].requests == [("v", 2)]
    assert [t for _, t in stores["flow"].requests] == [2, 3, 4]
    assert images["rgb"].shape == (6, 8, 3) and images["mag"].shape == (6, 8)
    small = dict(stores, mag=CodedStore("mag", {"v": 11}, {"v": 0}, height=5))
    with pytest.raises(ValueError, match="video v frame 2: modalities differ in size"):
        frame_images(small, "v", 2, 3)


def test_sample_shares_crop_and_mirror_and_inverts_x_flow():
    stores = stores_for({"v": 8})
    rng = np.random.RandomState(0)
    mirrored = plain = 0
    for _ in range(40):
        state = rng.get_state()
        sample = make_sample(stores, "v", {"rgb": 8, "flow": 7, "mag": 7}, SPEC, rng, mirror=True)
        # Replay the random choices to know t and the box.
        replay = np.random.RandomState()
        replay.set_state(state)
        t = replay.randint(1, frame_range({"rgb": 8, "flow": 7, "mag": 7}, 3) + 1)
        box = choose_crop(6, 8, 4, replay, True)
        rows, cols = np.mgrid[box.top:box.top + 4, box.left:box.left + 4]
        if box.mirror:
            cols = cols[:, ::-1]
        expect_rgb0 = (10 * t + rows * 3 + cols) % 200
        np.testing.assert_array_equal(sample["rgb"][0], expect_rgb0)
        np.testing.assert_array_equal(sample["mag"][0], expect_rgb0)
        for k in range(3):
            x = (10 * (t + k) + rows * 3 + cols) % 200
            expect_x = 255 - x if box.mirror else x
            np.testing.assert_array_equal(sample["flow"][2 * k], expect_x)
            np.testing.assert_array_equal(sample["flow"][2 * k + 1], x + 50)
        mirrored += box.mirror
        plain += not box.mirror
    assert mirrored and plain


def test_deterministic_sample_is_the_centre_of_the_middle_frame():
    stores = stores_for({"v": 12})
    sample = make_sample(stores, "v", {"rgb": 12, "flow": 11, "mag": 11}, SPEC, None, mirror=True)
    t = frame_range({"rgb": 12, "flow": 11, "mag": 11}, 3) // 2 + 1
    rows, cols = np.mgrid[1:5, 2:6]
    np.testing.assert_array_equal(sample["rgb"][0], (10 * t + rows * 3 + cols) % 200)


def test_means_are_subtracted_per_modality():
    stores = stores_for({"v": 8})
    spec = ClipSpec(("rgb", "flow"), 3, 4, {"rgb": [1.0, 2.0, 3.0], "flow": 128.0})
    sample = make_sample({m: stores[m] for m in ("rgb", "flow")}, "v", {"rgb": 8, "flow": 7}, spec, None, False)
    raw = make_sample({m: stores[m] for m in ("rgb", "flow")}, "v", {"rgb": 8, "flow": 7},
                      ClipSpec(("rgb", "flow"), 3, 4, {"rgb": None, "flow": None}), None, False)
    np.testing.assert_allclose(raw["rgb"] - sample["rgb"], np.broadcast_to(np.array([1, 2, 3.0])[:, None, None],
                                                                           (3, 4, 4)))
    np.testing.assert_allclose(raw["flow"] - sample["flow"], 128.0)


def test_stores_must_agree_on_videos_and_labels():
    good = stores_for({"a": 5, "b": 6})
    assert [v[0] for v in common_videos(good)] == ["a", "b"]
    bad = dict(good, mag=CodedStore("mag", {"a": 4}, {"a": 0}))
    with pytest.raises(ValueError, match="different videos"):
        common_videos(bad)
    relabelled = dict(good, mag=CodedStore("mag", {"a": 4, "b": 5}, {"a": 1, "b": 1}))
    with pytest.raises(ValueError, match="video a: label"):
        common_videos(relabelled)


def test_epoch_order_covers_every_video_once_across_ranks():
    for epoch in range(3):
        shares = [epoch_order(11, epoch, seed=5, shuffle=True, rank=r, num_ranks=3) for r in range(3)]
        assert sorted(np.concatenate(shares).tolist()) == list(range(11))
    assert not np.array_equal(epoch_order(11, 0, 5, True), epoch_order(11, 1, 5, True))
    np.testing.assert_array_equal(epoch_order(11, 0, 5, True), epoch_order(11, 0, 5, True))
    np.testing.assert_array_equal(epoch_order(5, 0, 5, False), np.arange(5))
    with pytest.raises(ValueError, match="rank 3"):
        epoch_order(5, 0, 1, True, rank=3, num_ranks=3)
