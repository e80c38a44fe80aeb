"""The store reader: LMDB and frame-folder stores with one interface, errors that name the problem, use in
worker processes."""
import multiprocessing
import pickle

import numpy as np
import pytest

from dataprep_helpers import extract_three_videos, store_index, video_sources
from mfuse.prep.lmdb_store import build_lmdb, write_folder_index
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
