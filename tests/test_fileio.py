import os

from mfuse.fileio import write_atomic


def test_write_atomic_replaces_whole_files_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "new" / "dir" / "f.txt"
    write_atomic(path, "first")
    write_atomic(path, "second, longer")
    assert path.read_text() == "second, longer"
    write_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert os.listdir(path.parent) == ["f.txt"]
