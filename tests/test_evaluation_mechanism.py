"""mfuse.evaluation.mechanism: the gate's contrast from the generator's masks, and per-pair accuracies."""
import numpy as np
import pytest

from mfuse.prep.frames import ExtractSettings
from mfuse.prep.pipeline import prepare_dataset
from mfuse.synthetic import CLASSES, UCF101_LIST_DIR, SyntheticConfig, class_names, generate
from mfuse.synthetic.generator import read_masks
from mfuse.evaluation.mechanism import gate_contrast, pair_accuracies
from mfuse.stores.reader import open_frame_store

CONFIG = SyntheticConfig(num_groups=4, clips_per_group=1, size=(96, 72), num_frames=8, seed=3)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("mechanism")
    generate(root / "dataset", CONFIG, progress=False)
    for subtract in ("mean", "none"):
        prepare_dataset("ucf101", root / "dataset", root / "dataset" / UCF101_LIST_DIR, root / subtract,
                        ExtractSettings(short_side=None, flow_algorithm="dis", flow_subtract=subtract), splits=(1,),
                        workers=2, progress=False)
    return root


def test_masks_are_written_with_the_videos(prepared):
    store = open_frame_store(prepared / "mean", 1, "test", "rgb")
    for entry in store.index.videos:
        masks, moving = read_masks(prepared / "dataset", entry.video_id)
        assert masks.shape == (CONFIG.num_frames, 72, 96) and moving.shape == masks.shape
        action = CLASSES[entry.label]
        assert moving.any() == any(m != "still" for m in action.motions().values())
        assert (masks > 0).any(axis=(1, 2)).all()  # every frame shows its discs
    with pytest.raises(FileNotFoundError, match="no masks"):
        read_masks(prepared / "dataset", "Nope/v_Nope_g01_c01")


def test_mean_flow_subtraction_makes_the_gate_single_out_moving_discs(prepared):
    mean = gate_contrast(prepared / "dataset", open_frame_store(prepared / "mean", 1, "test", "mag"), 13, 64)
    raw = gate_contrast(prepared / "dataset", open_frame_store(prepared / "none", 1, "test", "mag"), 13, 64)
    assert mean.frames == raw.frames == 8 * (CONFIG.num_frames - 1)
    assert mean.background < raw.background - 0.5  # the camera's jitter is gone from the background
    assert mean.contrast > 2.0 and mean.contrast > raw.contrast + 0.5
    assert mean.grid_contrast > 1.5 and mean.grid_moving > mean.grid_background


def test_gate_parameters_scale_the_gate(prepared):
    store = open_frame_store(prepared / "mean", 1, "test", "mag")
    plain = gate_contrast(prepared / "dataset", store, 13, 64, max_videos=2)
    scaled = gate_contrast(prepared / "dataset", store, 13, 64, offset=2.0, scale=2.0, max_videos=2)
    assert scaled.moving == pytest.approx(2 * plain.moving) and scaled.background == pytest.approx(2 * plain.background)


def test_pair_accuracies_pick_the_pairs_classes():
    names = class_names()
    per_class = {"S+T": np.arange(8) / 10, "m-fusion": np.ones(8)}
    rows = pair_accuracies(per_class, names)
    assert [(a, b) for a, b, _ in rows] == [("RedSwing", "BlueSwing"), ("RedBounce", "BlueBounce"),
                                            ("RedSwingBlueBounce", "RedBounceBlueSwing")]
    assert rows[0][2]["S+T"] == (names.index("RedSwing") / 10, names.index("BlueSwing") / 10)
    assert rows[2][2]["m-fusion"] == (1.0, 1.0)
    assert [a for a, _, _ in pair_accuracies(per_class, names, "motion")] == ["RedOrbit"]
    with pytest.raises(ValueError, match="unknown pair kind"):
        pair_accuracies(per_class, names, "colour")
    with pytest.raises(ValueError, match="not among"):
        pair_accuracies(per_class, names[:4])
