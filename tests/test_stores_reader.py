"""The store reader: LMDB and frame-folder stores with one interface, errors that name the problem, use in
worker processes."""
import multiprocessing
import os
import pickle
import re
import subprocess
import sys

import lmdb

import numpy as np
import pytest

from dataprep_helpers import extract_three_videos, store_index, video_sources
from mfuse.prep.lmdb_store import build_lmdb, write_folder_index
from mfuse.stores.format import frame_key, make_datum
from mfuse.stores.reader import FolderFrameStore, LmdbFrameStore, open_frame_store, open_frame_stores


@pytest.fixture
def extracted(tmp_path):
    return extract_three_videos(tmp_path)


def test_folder_store_has_the_same_interface_and_images(extracted, tmp_path):
    frames_root, metas = extracted
    index = store_index(metas, "flow")
    build_lmdb(tmp_path / "out" / "lmdb" / "split1_train_flow", index, video_sources(frames_root, metas),
               progress=False)
    write_folder_index(tmp_path / "out" / "lists" / "split1_train_flow.json", index, frames_root)
    lmdb_side = open_frame_store(tmp_path / "out", 1, "train", "flow", storage="lmdb")
    folder_side = open_frame_store(tmp_path / "out", 1, "train", "flow", storage="folder")
    assert isinstance(folder_side, FolderFrameStore)
    assert lmdb_side.index.to_json() == folder_side.index.to_json()
    for video in index.videos:
        for t in range(1, video.num_frames + 1):
            assert lmdb_side.get_bytes(video.video_id, t) == folder_side.get_bytes(video.video_id, t)
    np.testing.assert_array_equal(lmdb_side.get_image("B/v_c", 3), folder_side.get_image("B/v_c", 3))


def test_lookups_outside_the_store_name_the_problem(extracted, tmp_path):
    frames_root, metas = extracted
    db = tmp_path / "db"
    build_lmdb(db, store_index(metas, "rgb"), video_sources(frames_root, metas), progress=False)
    store = LmdbFrameStore(db)
    with pytest.raises(IndexError, match=r"rgb image 6 of video 'A/v_a' is out of range 1..5"):
        store.get_image("A/v_a", 6)
    with pytest.raises(IndexError):
        store.get_image("A/v_a", 0)
    with pytest.raises(KeyError, match="'Z/none' is not in the rgb store"):
        store.get_image("Z/none", 1)
    with pytest.raises(FileNotFoundError, match="no LMDB database"):
        LmdbFrameStore(tmp_path / "nothing")
    with pytest.raises(ValueError, match="storage must be"):
        open_frame_store(tmp_path, 1, "train", "rgb", storage="hdf5")


def _bytes_in_child(args):
    store, video_id, t = args
    return store.get_bytes(video_id, t)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_store_works_in_worker_processes_and_twice_in_one_process(extracted, tmp_path, method):
    frames_root, metas = extracted
    db = tmp_path / "db"
    build_lmdb(db, store_index(metas, "rgb"), video_sources(frames_root, metas), progress=False)
    store = LmdbFrameStore(db)
    expected = store.get_bytes("B/v_c", 4)         # the environment is open in the parent
    with multiprocessing.get_context(method).Pool(2) as pool:
        assert pool.map(_bytes_in_child, [(store, "B/v_c", 4)] * 2) == [expected, expected]
    assert LmdbFrameStore(db).get_bytes("B/v_c", 4) == expected
    assert pickle.loads(pickle.dumps(store)).get_bytes("B/v_c", 4) == expected
    store.close()
    assert store.get_bytes("B/v_c", 4) == expected  # reopens


def test_open_frame_stores_opens_one_store_per_modality_in_order(extracted, tmp_path):
    frames_root, metas = extracted
    for modality in ("mag", "rgb"):
        build_lmdb(tmp_path / "out" / "lmdb" / f"split1_train_{modality}", store_index(metas, modality),
                   video_sources(frames_root, metas), progress=False)
    stores = open_frame_stores(tmp_path / "out", 1, "train", ["mag", "rgb"])
    assert list(stores) == ["mag", "rgb"] and [s.modality for s in stores.values()] == ["mag", "rgb"]
    assert stores["rgb"].num_frames("B/v_c") == 4 and stores["mag"].num_frames("B/v_c") == 3


def test_a_truncated_database_is_refused_with_its_name(extracted, tmp_path):
    """Issue 20 item 3: a data.mdb shorter than its environment (a truncated copy) killed the reader with SIGBUS
    and no output. Run in a subprocess, so that the old SIGBUS shows as a failure, not as a dead test run."""
    frames_root, metas = extracted
    db = tmp_path / "lmdb" / "split1_train_flow"
    build_lmdb(db, store_index(metas, "flow"), video_sources(frames_root, metas), progress=False)
    size = (db / "data.mdb").stat().st_size
    os.truncate(db / "data.mdb", size // 2)
    code = ("from mfuse.stores.reader import LmdbFrameStore\n"
            f"store = LmdbFrameStore({str(db)!r})\n"
            "print(len(store.get_image('A/v_a', 1)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, (result.returncode, result.stderr)
    last = result.stderr.strip().splitlines()[-1]
    assert f"the LMDB database {db} is damaged: data.mdb has {size // 2} bytes but its pages need" in last
    assert "FrameStoreError" in last


def overwrite(db, key: bytes, value: bytes) -> None:
    with lmdb.open(str(db)) as env, env.begin(write=True) as txn:
        txn.put(key, value)


def test_a_bad_record_names_the_database_the_key_the_video_and_the_frame(extracted, tmp_path):
    """Issue 20 item 11: a garbage value said "Error parsing message with type 'caffe.Datum'", a bad JPEG
    "cannot decode a flow JPEG of 503 bytes", with neither database nor key."""
    frames_root, metas = extracted
    db = tmp_path / "lmdb" / "split1_train_flow"
    build_lmdb(db, store_index(metas, "flow"), video_sources(frames_root, metas), progress=False)
    overwrite(db, frame_key("A/v_a", 2), b"garbage, not a Datum")
    overwrite(db, frame_key("A/v_a", 3), make_datum(b"\xff\xd8 not a JPEG", 0, (1, 24, 64)))
    store = LmdbFrameStore(db)
    where = re.escape(f"LMDB database {db}, key 'A/v_a/0000")
    with pytest.raises(ValueError, match=f"^{where}2' \\(video A/v_a, flow image 2\\): a value of 20 bytes that is "
                                         "not a serialized caffe.Datum"):
        store.get_image("A/v_a", 2)
    with pytest.raises(ValueError, match=f"^{where}3' \\(video A/v_a, flow image 3\\): cannot decode a flow JPEG"):
        store.get_image("A/v_a", 3)


def test_a_bad_image_file_is_named_by_the_folder_store(extracted, tmp_path):
    frames_root, metas = extracted
    write_folder_index(tmp_path / "lists" / "split1_train_mag.json", store_index(metas, "mag"), frames_root)
    store = open_frame_store(tmp_path, 1, "train", "mag", storage="folder")
    store.image_path("B/v_c", 2).write_bytes(b"broken")
    with pytest.raises(ValueError, match=r"image file .*mag_00002.jpg \(video B/v_c, mag image 2\): cannot decode"):
        store.get_image("B/v_c", 2)
