from pathlib import Path

import pytest

from mfuse.datasets import SplitError, ucf101

CLASSES = "1 ApplyEyeMakeup\r\n2 Band Marching\r\n3 YoYo\r\n"


def write_splits(root: Path, train: str, test: str, classes: str = CLASSES) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "classInd.txt").write_text(classes, newline="")
    (root / "trainlist01.txt").write_text(train, newline="")
    (root / "testlist01.txt").write_text(test, newline="")
    return root


def test_classes_are_in_index_order_and_crlf_is_accepted(tmp_path):
    root = write_splits(tmp_path, "", "", classes="2 Band Marching\r\n1 ApplyEyeMakeup\r\n\r\n3 YoYo  \r\n")
    assert ucf101.load_classes(root) == ["ApplyEyeMakeup", "Band Marching", "YoYo"]


def test_train_and_test_lists_give_0_based_labels_and_video_ids(tmp_path):
    root = write_splits(
        tmp_path,
        "YoYo/v_YoYo_g08_c01.avi 3\r\nApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1 \r\n",
        "Band Marching/v_Band Marching_g01_c01.avi\r\n")
    train = ucf101.load_split(root, 1, "train")
    assert [(r.video_id, r.label) for r in train] == [
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01", 0), ("YoYo/v_YoYo_g08_c01", 2)]
    test = ucf101.load_split(root, 1, "test")
    assert [(r.video_id, r.label) for r in test] == [("Band Marching/v_Band Marching_g01_c01", 1)]
    assert test[0].path == Path("Band Marching/v_Band Marching_g01_c01.avi")


def test_every_bad_line_is_reported_with_file_and_line(tmp_path):
    root = write_splits(
        tmp_path,
        "YoYo/v_YoYo_g08_c01.avi 3\n"
        "Juggling/v_Juggling_g08_c01.avi 2\n"      # class not in the index
        "YoYo/v_YoYo_g08_c01.avi 3\n"              # duplicate
        "YoYo/v_YoYo_g09_c01.avi 1\n"              # label contradicts the folder
        "no_folder.avi 1\n",                       # no class folder
        "")
    with pytest.raises(SplitError) as info:
        ucf101.load_split(root, 1, "train")
    lines = [(p.file.name, p.line) for p in info.value.problems]
    assert lines == [("trainlist01.txt", 2), ("trainlist01.txt", 3), ("trainlist01.txt", 4),
                     ("trainlist01.txt", 5)]
    text = str(info.value)
    assert "trainlist01.txt:2: class 'Juggling' is not in classInd.txt" in text
    assert "duplicate entry 'YoYo/v_YoYo_g08_c01' (first at" in text


def test_missing_videos_are_reported_when_a_videos_root_is_given(tmp_path):
    root = write_splits(tmp_path / "splits", "", "YoYo/v_YoYo_g01_c01.avi\nYoYo/v_YoYo_g02_c01.avi\n")
    videos = tmp_path / "videos"
    (videos / "YoYo").mkdir(parents=True)
    (videos / "YoYo" / "v_YoYo_g01_c01.avi").write_bytes(b"x")
    with pytest.raises(SplitError) as info:
        ucf101.load_split(root, 1, "test", videos_root=videos)
    [problem] = info.value.problems
    assert problem.line == 2 and "video listed but missing" in problem.message
    (videos / "YoYo" / "v_YoYo_g02_c01.avi").write_bytes(b"x")
    records = ucf101.load_split(root, 1, "test", videos_root=videos)
    assert records[1].path == videos / "YoYo" / "v_YoYo_g02_c01.avi"


@pytest.mark.parametrize("classes, message", [
    ("1 A\n1 B\n", "duplicate class index 1"),
    ("1 A\n2 A\n", "duplicate class name 'A'"),
    ("1 A\n3 B\n", "without gaps"),
    ("A 1\n", "expected '<index> <class>'"),
])
def test_bad_class_index_files_are_rejected(tmp_path, classes, message):
    root = write_splits(tmp_path, "", "", classes=classes)
    with pytest.raises(SplitError, match=message):
        ucf101.load_classes(root)


def test_bad_split_arguments_are_rejected(tmp_path):
    root = write_splits(tmp_path, "", "")
    with pytest.raises(ValueError, match="split must be"):
        ucf101.load_split(root, 4, "train")
    with pytest.raises(ValueError, match="subset must be"):
        ucf101.load_split(root, 1, "val")
    with pytest.raises(FileNotFoundError, match="trainlist02.txt"):
        ucf101.load_split(root, 2, "train")


def test_a_video_in_both_the_train_and_the_test_list_is_refused_with_both_places(tmp_path):
    root = write_splits(tmp_path, "YoYo/v_YoYo_g08_c01.avi 3\nYoYo/v_YoYo_g01_c01.avi 3\n",
                        "YoYo/v_YoYo_g02_c01.avi\nYoYo/v_YoYo_g01_c01.avi\n")
    for subset, here, there in (("train", "trainlist01.txt:2", "testlist01.txt:2"),
                                ("test", "testlist01.txt:2", "trainlist01.txt:2")):
        with pytest.raises(SplitError) as info:
            ucf101.load_split(root, 1, subset)
        [problem] = info.value.problems
        assert str(problem) == (f"{root / here}: video 'YoYo/v_YoYo_g01_c01' is also in {root / there} "
                                f"(a video in both the train and the test list leaks test data)")


@pytest.mark.parametrize("train, message", [
    ("YoYo/x.avi one\n", "bad label 'one' of 'YoYo/x.avi': expected a 1-based class index"),
    ("YoYo/x.avi\n", "missing label: expected '<Class>/<video>.avi <class index>', got 'YoYo/x.avi'"),
])
def test_a_train_line_without_an_integer_label_says_so(tmp_path, train, message):
    root = write_splits(tmp_path, train, "")
    with pytest.raises(SplitError) as info:
        ucf101.load_split(root, 1, "train", videos_root=tmp_path)
    assert [str(p) for p in info.value.problems] == [f"{root / 'trainlist01.txt'}:1: {message}"]
