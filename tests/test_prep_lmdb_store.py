import json
import multiprocessing
import pickle

import cv2
import numpy as np
import pytest

from dataprep_helpers import moving_frames, read_db, write_video
from mfuse.prep import lmdb_store
from mfuse.prep.frames import ExtractSettings, extract_video
from mfuse.prep.parallel import worker_pool
from mfuse.prep.lmdb_store import (INDEX_KEY, FolderFrameStore, LmdbFrameStore, StoreIndex, VideoEntry,
                                   VideoSource, build_lmdb, caffe_pb2, frame_key, open_frame_store,
                                   write_folder_index)

SETTINGS = ExtractSettings(short_side=None, flow_algorithm="dis")


@pytest.fixture
def extracted(tmp_path):
    """Three extracted videos (5, 7 and 4 frames, one with a non-ASCII name) under tmp/out/frames."""
    frames_root = tmp_path / "out" / "frames"
    metas = {}
    for i, (video_id, count) in enumerate([("A/v_a", 5), ("B/v b é", 7), ("B/v_c", 4)]):
        path = write_video(tmp_path / "videos" / f"{video_id}.avi", moving_frames(count, seed=i))
        metas[video_id] = extract_video(path, frames_root / video_id, SETTINGS).meta
    return frames_root, metas


def make_index(metas, modality, labels=None):
    key = "num_frames" if modality == "rgb" else "num_flow"
    labels = labels or {"A/v_a": 0, "B/v b é": 1, "B/v_c": 1}
    videos = [VideoEntry(v, labels[v], metas[v][key]) for v in sorted(metas)]
    return StoreIndex("ucf101", 1, "train", modality, ["A", "B"], videos, SETTINGS.as_json())


def sources_of(frames_root, metas):
    return {v: VideoSource(frames_root / v, m["height"], m["width"]) for v, m in metas.items()}




@pytest.mark.parametrize("modality, kind, shape", [("rgb", "img", (3, 24, 32)), ("flow", "flow", (1, 24, 64)),
                                                   ("mag", "mag", (1, 24, 32))])
def test_round_trip_gives_the_jpeg_bytes_and_pixels(extracted, tmp_path, modality, kind, shape):
    frames_root, metas = extracted
    index = make_index(metas, modality)
    db = tmp_path / "out" / "lmdb" / f"split1_train_{modality}"
    stats = build_lmdb(db, index, sources_of(frames_root, metas), progress=False)
    expected_images = sum(v.num_frames for v in index.videos)
    assert stats["images"] == expected_images and not stats["skipped"] and stats["bytes"] > 0
    items = read_db(db)
    assert len(items) == expected_images + 1
    datum = caffe_pb2().Datum.FromString(items[frame_key("B/v b é", 2)])
    jpeg_file = frames_root / "B/v b é" / f"{kind}_00002.jpg"
    assert datum.encoded and datum.label == 1 and (datum.channels, datum.height, datum.width) == shape
    assert datum.data == jpeg_file.read_bytes()
    flag = cv2.IMREAD_COLOR if modality == "rgb" else cv2.IMREAD_GRAYSCALE
    decoded = cv2.imdecode(np.frombuffer(datum.data, np.uint8), flag)
    np.testing.assert_array_equal(decoded, cv2.imread(str(jpeg_file), flag))
    assert json.loads(items[INDEX_KEY]) == index.to_json()
    store = LmdbFrameStore(db)
    assert store.index.to_json() == index.to_json()
    image = store.get_image("B/v b é", 2)
    np.testing.assert_array_equal(image, decoded)
    assert image.shape == ((24, 32, 3) if modality == "rgb" else shape[1:])
    assert store.num_frames("A/v_a") == (5 if modality == "rgb" else 4)


def test_keys_name_the_video_and_the_1_based_frame(extracted, tmp_path):
    frames_root, metas = extracted
    db = tmp_path / "db"
    build_lmdb(db, make_index(metas, "mag"), sources_of(frames_root, metas), progress=False)
    keys = sorted(k for k in read_db(db) if k != INDEX_KEY)
    assert keys[:4] == [b"A/v_a/00001", b"A/v_a/00002", b"A/v_a/00003", b"A/v_a/00004"]
    assert frame_key("B/v b é", 6).decode() in {k.decode() for k in keys}
    assert frame_key("B/v b é", 7) not in keys           # 7 frames give 6 flow images


def test_folder_store_has_the_same_interface_and_images(extracted, tmp_path):
    frames_root, metas = extracted
    index = make_index(metas, "flow")
    build_lmdb(tmp_path / "out" / "lmdb" / "split1_train_flow", index, sources_of(frames_root, metas),
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
    build_lmdb(db, make_index(metas, "rgb"), sources_of(frames_root, metas), progress=False)
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
    build_lmdb(db, make_index(metas, "rgb"), sources_of(frames_root, metas), progress=False)
    store = LmdbFrameStore(db)
    expected = store.get_bytes("B/v_c", 4)         # the environment is open in the parent
    with multiprocessing.get_context(method).Pool(2) as pool:
        assert pool.map(_bytes_in_child, [(store, "B/v_c", 4)] * 2) == [expected, expected]
    assert LmdbFrameStore(db).get_bytes("B/v_c", 4) == expected
    assert pickle.loads(pickle.dumps(store)).get_bytes("B/v_c", 4) == expected
    store.close()
    assert store.get_bytes("B/v_c", 4) == expected  # reopens


def test_parallel_build_equals_serial_build(extracted, tmp_path):
    frames_root, metas = extracted
    index = make_index(metas, "rgb")
    build_lmdb(tmp_path / "a", index, sources_of(frames_root, metas), progress=False)
    with worker_pool(2) as pool:
        build_lmdb(tmp_path / "b", index, sources_of(frames_root, metas), pool, progress=False)
    assert read_db(tmp_path / "a") == read_db(tmp_path / "b")


def test_a_finished_database_is_kept_and_a_changed_index_rebuilds_it(extracted, tmp_path):
    frames_root, metas = extracted
    db = tmp_path / "db"
    index = make_index(metas, "rgb")
    build_lmdb(db, index, sources_of(frames_root, metas), progress=False)
    assert build_lmdb(db, index, sources_of(frames_root, metas), progress=False)["skipped"]
    relabelled = make_index(metas, "rgb", labels={"A/v_a": 1, "B/v b é": 0, "B/v_c": 0})
    assert not build_lmdb(db, relabelled, sources_of(frames_root, metas), progress=False)["skipped"]
    datum = caffe_pb2().Datum.FromString(read_db(db)[frame_key("A/v_a", 1)])
    assert datum.label == 1


def test_an_interrupted_build_resumes_from_the_committed_videos(extracted, tmp_path, monkeypatch):
    frames_root, metas = extracted
    index = make_index(metas, "rgb")
    build_lmdb(tmp_path / "reference", index, sources_of(frames_root, metas), progress=False)

    monkeypatch.setattr(lmdb_store, "BATCH_BYTES", 1)      # one transaction per video
    calls = []
    real_read = lmdb_store._read_video_items

    def crash_on_second_video(job):
        calls.append(job[0].video_id)
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated kill")
        return real_read(job)

    monkeypatch.setattr(lmdb_store, "_read_video_items", crash_on_second_video)
    db = tmp_path / "db"
    with pytest.raises(KeyboardInterrupt):
        build_lmdb(db, index, sources_of(frames_root, metas), progress=False)
    assert not db.exists() and (tmp_path / "db.partial").exists()
    calls.clear()
    monkeypatch.setattr(lmdb_store, "_read_video_items", real_read)
    build_lmdb(db, index, sources_of(frames_root, metas), progress=False)
    assert read_db(db) == read_db(tmp_path / "reference")
    assert not (tmp_path / "db.partial").exists() and not (db / lmdb_store.INTENT_NAME).exists()


def test_the_map_size_grows_when_the_estimate_is_too_small(extracted, tmp_path, monkeypatch):
    frames_root, metas = extracted
    monkeypatch.setattr(lmdb_store, "_estimate_map_size", lambda index, sources: 32 << 10)
    index = make_index(metas, "rgb")
    build_lmdb(tmp_path / "db", index, sources_of(frames_root, metas), progress=False)
    assert len(read_db(tmp_path / "db")) == sum(v.num_frames for v in index.videos) + 1
