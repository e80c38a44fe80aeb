"""Held-out training videos (mfuse.recipe.data): whole groups per class, seeded, never all; the lists of a run."""
from pathlib import Path

import pytest

from mfuse.datasets import VideoRecord
from mfuse.recipe.data import dataset_lists, hold_out, store_paths, video_group
from recipe_helpers import small_synthetic_set


def records(classes=3, groups=10, clips=2):
    return [VideoRecord(f"C{c}/v_C{c}_g{g:02d}_c{k:02d}", c, Path("x")) for c in range(classes)
            for g in range(1, groups + 1) for k in range(1, clips + 1)]


def test_groups():
    assert video_group("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01") == "ApplyEyeMakeup/g08"
    hmdb = "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0"
    assert video_group(hmdb) == hmdb


def test_hold_out_takes_whole_groups_of_every_class():
    videos = records()
    kept, held = hold_out(videos, 0.2, split=1)
    assert len(held) == 3 * 2 * 2 and len(kept) + len(held) == len(videos)
    assert not {video_group(v.video_id) for v in kept} & {video_group(v.video_id) for v in held}
    assert {v.label for v in held} == {0, 1, 2}
    assert hold_out(videos, 0.2, split=1) == (kept, held)
    assert hold_out(videos, 0.2, split=2)[1] != held
    assert hold_out(videos, 0.0, split=1) == (videos, [])


def test_hold_out_keeps_a_group_to_train_on():
    kept, held = hold_out(records(classes=1, groups=2), 0.9, split=1)
    assert len(kept) == len(held) == 2
    kept, held = hold_out(records(classes=1, groups=1), 0.5, split=1)
    assert len(kept) == 2 and not held
    with pytest.raises(ValueError, match="fraction"):
        hold_out(records(), 1.0, split=1)


def test_dataset_lists_of_a_small_set(tmp_path):
    videos, lists = small_synthetic_set(tmp_path, num_classes=3)
    found = dataset_lists("ucf101", lists, videos, (1, 2), 0.34)
    assert len(found.classes) == 3 and len(found.videos) == 12
    assert {k: len(v) for k, v in found.train.items()} == {1: 6, 2: 6}
    assert {k: len(v) for k, v in found.heldout.items()} == {1: 3, 2: 3}
    assert "split 1: 9 train (3 held out for the fusion weights), 3 test" in found.describe()
    stores = store_paths(tmp_path / "data", found, ("rgb",), "lmdb")
    assert tmp_path / "data" / "lmdb" / "split2_test_rgb" in stores
    assert tmp_path / "data" / "heldout" / "lmdb" / "split1_train_rgb" in stores and len(stores) == 6
