from pathlib import Path

import pytest

from mfuse.datasets import VideoRecord, get_dataset, union_of_splits
from mfuse.datasets.common import read_list, video_id_of


def test_read_list_strips_bom_crlf_and_blank_lines(tmp_path):
    path = tmp_path / "l.txt"
    path.write_bytes("\ufeffa b \r\n\r\n  c\r\n".encode("utf-8"))
    assert list(read_list(path)) == [(1, "a b"), (3, "c")]


def test_video_id_drops_the_extension_and_uses_slashes():
    assert video_id_of("Class/v_X_g01_c01.avi") == "Class/v_X_g01_c01"
    assert video_id_of("Class\\v.é x.avi") == "Class/v.é x"


def test_union_keeps_one_record_per_video_sorted():
    a = VideoRecord("b/2", 1, Path("b/2.avi"))
    b = VideoRecord("a/1", 0, Path("a/1.avi"))
    assert union_of_splits([[a, b], [a]]) == [b, a]


def test_get_dataset_names_the_known_ones():
    assert get_dataset("ucf101").NAME == "ucf101"
    with pytest.raises(ValueError, match="hmdb51"):
        get_dataset("kinetics")
