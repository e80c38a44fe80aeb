from pathlib import Path

import pytest

from mfuse.datasets import SplitError, hmdb51


def write_class(root: Path, name: str, lines_per_split: dict[int, str]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for k in (1, 2, 3):
        (root / f"{name}_test_split{k}.txt").write_text(lines_per_split.get(k, ""))


def test_flags_select_train_and_test_and_labels_follow_sorted_classes(tmp_path):
    write_class(tmp_path, "wave", {1: "w_a.avi 1 \nw_b.avi 2  \nw_c.avi 0\n"})
    write_class(tmp_path, "brush_hair", {1: "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1\n\n",
                                         2: "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 2\n"})
    assert hmdb51.load_classes(tmp_path) == ["brush_hair", "wave"]
    train = hmdb51.load_split(tmp_path, 1, "train")
    assert [(r.video_id, r.label) for r in train] == [
        ("brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0", 0), ("wave/w_a", 1)]
    assert [r.video_id for r in hmdb51.load_split(tmp_path, 1, "test")] == ["wave/w_b"]
    assert [r.video_id for r in hmdb51.load_split(tmp_path, 2, "test")] == [
        "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0"]
    assert hmdb51.load_split(tmp_path, 3, "train") == []


def test_bad_lines_and_duplicates_are_reported_with_file_and_line(tmp_path):
    write_class(tmp_path, "wave", {1: "w_a.avi 1\nw_b.avi 3\nw_c.avi\nw_a.avi 2\n"})
    write_class(tmp_path, "run", {1: "w_a.avi 1\n"})
    with pytest.raises(SplitError) as info:
        hmdb51.load_split(tmp_path, 1, "train")
    found = [(p.file.name, p.line) for p in info.value.problems]
    assert found == [("wave_test_split1.txt", 1), ("wave_test_split1.txt", 2),
                     ("wave_test_split1.txt", 3), ("wave_test_split1.txt", 4)]
    messages = [p.message for p in info.value.problems]
    assert "duplicate entry 'w_a.avi' (first at" in messages[0]   # first seen in run_test_split1.txt
    assert "expected '<video>.avi <0|1|2>'" in messages[1]


def test_a_class_missing_one_split_file_is_reported(tmp_path):
    write_class(tmp_path, "wave", {})
    (tmp_path / "run_test_split1.txt").write_text("r.avi 1\n")
    with pytest.raises(SplitError, match="run_test_split2.txt:0: file missing"):
        hmdb51.load_classes(tmp_path)


def test_missing_video_files_are_reported(tmp_path):
    splits = tmp_path / "splits"
    write_class(splits, "wave", {1: "w a.avi 1\nw_b.avi 1\n"})
    videos = tmp_path / "videos"
    (videos / "wave").mkdir(parents=True)
    (videos / "wave" / "w a.avi").write_bytes(b"x")
    with pytest.raises(SplitError) as info:
        hmdb51.load_split(splits, 1, "train", videos_root=videos)
    [problem] = info.value.problems
    assert problem.line == 2 and str(videos / "wave" / "w_b.avi") in problem.message


def test_no_split_files_is_an_error(tmp_path):
    with pytest.raises(SplitError, match="no '<class>_test_split<k>.txt' files"):
        hmdb51.load_classes(tmp_path)


def test_a_video_flagged_train_in_one_file_and_test_in_another_is_named_a_leak(tmp_path):
    write_class(tmp_path, "wave", {1: "w_a.avi 1\n"})
    write_class(tmp_path, "run", {1: "w_a.avi 2\n"})
    with pytest.raises(SplitError) as info:
        hmdb51.load_split(tmp_path, 1, "test")
    [problem] = info.value.problems
    assert str(problem) == (f"{tmp_path / 'wave_test_split1.txt'}:1: duplicate entry 'w_a.avi' (first at "
                            f"{tmp_path / 'run_test_split1.txt'}:1); listed for both train and test, which leaks "
                            f"test data")
