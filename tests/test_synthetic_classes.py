"""The designed confusions of the synthetic classes are real, measured on the decoded videos.

Statistics (per video, then averaged over the videos of a class):
- appearance: fractions of strongly red and strongly blue pixels (position-free colour content);
- motion: log(sum |u| / sum |v|) of Farneback flow minus its per-frame median (camera jitter), over
  moving pixels: > 0 left-right motion, < 0 up-down, ~0 circles or both directions;
- binding: share of the object motion that lies on red pixels, and the motion direction on red pixels.
"""

import cv2
import numpy as np
import pytest

from mfuse.synthetic import (APPEARANCE_CONFUSED, BINDING_CONFUSED, CLASSES, MOTION_CONFUSED, SyntheticConfig,
                             class_names, generate)


def _read(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return np.stack(frames)
        frames.append(frame)


def _colour_masks(frames):
    f = frames.astype(np.int32)
    b, g, r = f[..., 0], f[..., 1], f[..., 2]
    return r - np.maximum(g, b) > 80, b - np.maximum(g, r) > 60


def _object_flow(frames):
    grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
    flow = np.stack([cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 9, 3, 5, 1.1, 0)
                     for a, b in zip(grey[:-1], grey[1:])])
    return flow - np.median(flow, axis=(1, 2), keepdims=True)


def _direction(flow, where):
    u, v = np.abs(flow[..., 0])[where].sum(), np.abs(flow[..., 1])[where].sum()
    return float(np.log(u + 1.0) - np.log(v + 1.0))


def _statistics(frames):
    red, blue = _colour_masks(frames)
    flow = _object_flow(frames)
    speed = np.linalg.norm(flow, axis=-1)
    on_red, on_blue = (speed * red[:-1]).sum(), (speed * blue[:-1]).sum()
    return {"red_fraction": red.mean(), "blue_fraction": blue.mean(),
            "direction": _direction(flow, speed > 0.5),
            "red_motion_share": on_red / (on_red + on_blue + 1e-6),
            "red_direction": _direction(flow, red[:-1] & (speed > 0.5))}


@pytest.fixture(scope="module")
def class_stats(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    dataset = generate(root, SyntheticConfig(num_groups=4, clips_per_group=2, seed=3), progress=False)
    per_class = {}
    for video in dataset.videos:
        per_class.setdefault(video.class_name, []).append(_statistics(_read(root / video.relpath)))
    return {name: {key: float(np.mean([s[key] for s in stats])) for key in stats[0]}
            for name, stats in per_class.items()}


def _close_appearance(a, b):
    return all(abs(a[k] - b[k]) < 0.15 * max(a[k], b[k]) for k in ("red_fraction", "blue_fraction"))


def test_class_table_is_consistent():
    assert class_names() == sorted(class_names())
    assert [c.hmdb_name for c in CLASSES] == sorted(c.hmdb_name for c in CLASSES)
    names = set(class_names())
    for pair in APPEARANCE_CONFUSED + MOTION_CONFUSED + BINDING_CONFUSED:
        assert set(pair) <= names
    assert len({(c.red, c.blue) for c in CLASSES}) == len(CLASSES)


def test_discs_are_isoluminant():
    from mfuse.synthetic.render import DISC_BGR
    grey = {colour: cv2.cvtColor(np.uint8([[bgr]]), cv2.COLOR_BGR2GRAY)[0, 0] for colour, bgr in DISC_BGR.items()}
    assert abs(int(grey["red"]) - int(grey["blue"])) <= 1


@pytest.mark.parametrize("pair", APPEARANCE_CONFUSED)
def test_appearance_confused_pairs_differ_only_in_motion(class_stats, pair):
    a, b = (class_stats[name] for name in pair)
    assert _close_appearance(a, b)
    assert a["direction"] > 0.8 and b["direction"] < -0.8  # swing vs bounce


@pytest.mark.parametrize("pair", MOTION_CONFUSED)
def test_motion_confused_pairs_differ_only_in_appearance(class_stats, pair):
    a, b = (class_stats[name] for name in pair)
    assert abs(a["direction"] - b["direction"]) < 0.25
    assert a["red_fraction"] > 0.01 and a["blue_fraction"] == 0.0
    assert b["blue_fraction"] > 0.01 and b["red_fraction"] == 0.0


@pytest.mark.parametrize("pair", BINDING_CONFUSED)
def test_binding_pairs_differ_only_in_which_disc_moves_how(class_stats, pair):
    a, b = (class_stats[name] for name in pair)
    assert _close_appearance(a, b)
    assert abs(a["direction"] - b["direction"]) < 0.4
    separated_by_share = abs(a["red_motion_share"] - b["red_motion_share"]) > 0.6
    separated_by_direction = a["red_direction"] - b["red_direction"] > 1.5
    assert separated_by_share or separated_by_direction


def test_designed_ceilings_follow_from_the_partitions():
    from mfuse.synthetic import SEPARABLE, ceiling, loss_floor

    names = sorted(c.name for c in CLASSES)
    for kind, groups in SEPARABLE.items():
        assert sorted(name for group in groups for name in group) == names, kind
    assert {kind: ceiling(kind) for kind in SEPARABLE} == {
        "spatial": 0.375, "temporal": 0.5, "spatial_amp": 0.625, "S+T": 0.625, "Samp+T": 0.875, "fusion": 1.0}
    assert loss_floor("fusion") == 0 and abs(loss_floor("temporal") - np.log(2)) < 1e-12
    assert abs(loss_floor("spatial") - 0.75 * np.log(6)) < 1e-12

    def together(kind, pair):
        return any(set(pair) <= set(group) for group in SEPARABLE[kind])

    for pair in BINDING_CONFUSED:  # late fusion cannot bind; aligned fusion can
        assert together("spatial", pair) and together("temporal", pair) and together("S+T", pair)
        assert not together("fusion", pair)
    for pair in APPEARANCE_CONFUSED:
        assert together("spatial", pair) and not together("temporal", pair)
    for pair in MOTION_CONFUSED:
        assert together("temporal", pair) and not together("spatial", pair)
    # S+T is the intersection of the S and T partitions
    for a in names:
        for b in names:
            assert together("S+T", (a, b)) == (together("spatial", (a, b)) and together("temporal", (a, b)))
            assert together("Samp+T", (a, b)) == (together("spatial_amp", (a, b)) and together("temporal", (a, b)))
    with pytest.raises(ValueError, match="unknown model kind"):
        ceiling("audio")
