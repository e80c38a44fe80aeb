"""UCF101/HMDB51 list files of the synthetic dataset: exact format, CRLF, 1-based labels, group splits."""

from pathlib import Path

import pytest

from mfuse.synthetic import SyntheticConfig, class_names, generate
from mfuse.synthetic.generator import MASKS_DIR
from mfuse.synthetic.layout import split_block_size, groups_tested


def _group_of(name: str) -> int:
    return int(name.rsplit("_g", 1)[1][:2])


@pytest.fixture(scope="module")
def ucf_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ucf")
    generate(root, SyntheticConfig(num_groups=5, clips_per_group=2, num_frames=4), progress=False)
    return root


def test_tested_groups_reproduce_ucf101_rule():
    assert [list(groups_tested(25, k)) for k in (1, 2, 3)] == [list(range(1, 8)), list(range(8, 15)),
                                                              list(range(15, 22))]


@pytest.mark.parametrize("num_groups", [4, 5, 6, 7, 8, 10, 13, 25, 40])
def test_tested_groups_are_disjoint_and_leave_training_groups(num_groups):
    tested = [set(groups_tested(num_groups, k)) for k in (1, 2, 3)]
    assert all(len(t) == split_block_size(num_groups) >= 1 for t in tested)
    assert not (tested[0] & tested[1] or tested[1] & tested[2] or tested[0] & tested[2])
    assert set().union(*tested) < set(range(1, num_groups + 1))


def test_too_few_groups_is_refused():
    with pytest.raises(ValueError, match="num_groups"):
        groups_tested(3, 1)
    with pytest.raises(ValueError, match="num_groups"):
        SyntheticConfig(num_groups=3)


def test_class_ind_is_one_based_crlf(ucf_root):
    raw = (ucf_root / "ucfTrainTestlist" / "classInd.txt").read_bytes()
    assert raw.endswith(b"\r\n") and raw.count(b"\n") == raw.count(b"\r\n") == 8
    lines = raw.decode().split("\r\n")[:-1]
    assert lines == [f"{i} {name}" for i, name in enumerate(class_names(), start=1)]


def test_train_and_test_lists_match_ucf101_format(ucf_root):
    list_dir = ucf_root / "ucfTrainTestlist"
    classes = class_names()
    all_videos = {str(p.relative_to(ucf_root)) for p in ucf_root.glob("*/*.avi")}
    assert len(all_videos) == 8 * 5 * 2
    for split in (1, 2, 3):
        train_raw = (list_dir / f"trainlist0{split}.txt").read_bytes()
        test_raw = (list_dir / f"testlist0{split}.txt").read_bytes()
        for raw in (train_raw, test_raw):
            assert raw.count(b"\n") == raw.count(b"\r\n") and raw.endswith(b"\r\n")
        train = [line.split(" ") for line in train_raw.decode().split("\r\n")[:-1]]
        test = test_raw.decode().split("\r\n")[:-1]
        for path, label in train:
            class_name, file_name = path.split("/")
            assert file_name == f"v_{class_name}_g{_group_of(file_name):02d}_c{file_name[-6:-4]}.avi"
            assert int(label) == classes.index(class_name) + 1
        assert all(" " not in path for path in test)
        train_paths = {path for path, _ in train}
        assert train_paths.isdisjoint(test) and train_paths | set(test) == all_videos
        test_groups_seen = {_group_of(Path(p).name) for p in test}
        train_groups_seen = {_group_of(Path(p).name) for p in train_paths}
        assert test_groups_seen == set(groups_tested(5, split))
        assert test_groups_seen.isdisjoint(train_groups_seen)


def test_hmdb51_layout(tmp_path):
    generate(tmp_path, SyntheticConfig(num_groups=4, clips_per_group=1, num_frames=3, layout="hmdb51"),
             progress=False)
    split_dir = tmp_path / "testTrainMulti_7030_splits"
    others = {split_dir.name, MASKS_DIR}
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir() and p.name not in others) == class_names("hmdb51")
    assert class_names("hmdb51") == sorted(class_names("hmdb51"))
    assert len(list(split_dir.iterdir())) == 8 * 3
    for name in class_names("hmdb51"):
        for split in (1, 2, 3):
            raw = (split_dir / f"{name}_test_split{split}.txt").read_bytes()
            assert b"\r" not in raw
            lines = raw.decode().split("\n")[:-1]
            assert all(line.endswith(" ") for line in lines)
            flags = {}
            for line in lines:
                video, flag = line.split()
                assert (tmp_path / name / video).is_file()
                flags[_group_of(video)] = int(flag)
            assert flags == {g: 2 if g in groups_tested(4, split) else 1 for g in range(1, 5)}
