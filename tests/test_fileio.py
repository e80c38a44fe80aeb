import os

import numpy as np
import pytest

from mfuse.fileio import atomic_path, write_atomic


def test_write_atomic_replaces_whole_files_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "new" / "dir" / "f.txt"
    write_atomic(path, "first")
    write_atomic(path, "second, longer")
    assert path.read_text() == "second, longer"
    write_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert os.listdir(path.parent) == ["f.txt"]


def test_atomic_path_serves_writers_that_want_a_path(tmp_path):
    path = tmp_path / "new" / "arrays.npz"
    with atomic_path(path, suffix=".npz") as tmp:
        assert tmp.parent == path.parent and tmp.name.startswith(".arrays.npz.") and tmp.suffix == ".npz"
        assert not path.exists()
        np.savez(tmp, x=np.arange(3))
    with np.load(path) as data:
        np.testing.assert_array_equal(data["x"], np.arange(3))
    assert os.listdir(path.parent) == ["arrays.npz"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="writer failed"):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer failed")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]
    with pytest.raises(FileNotFoundError, match=f"nothing was written for {path}"):
        with atomic_path(path):
            pass
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]
