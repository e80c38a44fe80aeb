"""Stage records (mfuse.recipe.provenance): valid only with the same settings, inputs and outputs; fingerprints
of files (cached), LMDB stores (their index) and folders."""
import os

import lmdb
import pytest

from mfuse.recipe.provenance import Fingerprints, Provenance
from mfuse.stores.format import INDEX_KEY


def test_a_record_holds_until_a_setting_an_input_or_an_output_changes(tmp_path):
    source, result = tmp_path / "in.txt", tmp_path / "out.txt"
    source.write_text("a")
    result.write_text("b")
    provenance = Provenance(tmp_path / "provenance")
    assert provenance.why_invalid("split1/x", {"k": 1}, [source], [result]) == "not run yet"
    provenance.write("split1/x", {"k": (1, 2)}, [source], [result], seconds=1.5)
    assert (tmp_path / "provenance" / "split1" / "x.json").is_file()
    assert provenance.why_invalid("split1/x", {"k": (1, 2)}, [source], [result]) is None
    assert provenance.why_invalid("split1/x", {"k": (1, 3)}, [source], [result]) == "settings changed: k"
    assert provenance.why_invalid("split1/x", {"k": (1, 2)}, [source, result], [result]) == "other inputs"
    source.write_text("changed")
    assert provenance.why_invalid("split1/x", {"k": (1, 2)}, [source], [result]).startswith("input ")
    source.write_text("a")
    assert provenance.why_invalid("split1/x", {"k": (1, 2)}, [source], [result]) is None
    result.unlink()
    assert "changed or missing" in provenance.why_invalid("split1/x", {"k": (1, 2)}, [source], [result])
    with pytest.raises(ValueError, match="without its output"):
        provenance.write("y", {}, [], [result])
    assert provenance.load("y") is None


def test_file_hashes_are_cached_by_size_mtime_and_inode(tmp_path, monkeypatch):
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * 100)
    prints = Fingerprints(tmp_path / "hashes.json")
    first = prints.of(path)
    prints.save()
    calls = []
    import mfuse.recipe.provenance as module
    monkeypatch.setattr(module, "sha256_file", lambda p: calls.append(p) or "fake")
    again = Fingerprints(tmp_path / "hashes.json")
    assert again.of(path) == first and not calls
    os.utime(path, ns=(1, 1))
    assert again.of(path) == "sha256:fake" and calls == [path]
    assert again.of(tmp_path / "absent") is None


def test_lmdb_stores_are_named_by_their_index_and_folders_by_their_files(tmp_path):
    db = tmp_path / "db"
    env = lmdb.open(str(db), map_size=1 << 20)
    with env.begin(write=True) as txn:
        txn.put(INDEX_KEY, b'{"videos": 1}')
        txn.put(b"v/00001", b"jpeg")
    env.close()
    prints = Fingerprints()
    first = prints.of(db)
    assert first.startswith("lmdb:") and prints.of(db) == first
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_text("1")
    before = prints.of(folder)
    (folder / "sub" / "a.txt").write_text("2")
    assert prints.of(folder) != before and prints.of(folder).startswith("dir:")
