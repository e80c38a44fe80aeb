"""The store writers: LMDB databases of the JPEG bytes, resumable and parallel builds."""
import json
import os
import re

import cv2
import lmdb
import numpy as np
import pytest

from dataprep_helpers import extract_three_videos, read_db, store_index, video_sources
from mfuse.prep import lmdb_store
from mfuse.prep.lmdb_store import build_lmdb
from mfuse.prep.parallel import worker_pool
from mfuse.stores.format import INDEX_KEY, caffe_pb2, frame_key
from mfuse.stores.reader import LmdbFrameStore


@pytest.fixture
def extracted(tmp_path):
    return extract_three_videos(tmp_path)


@pytest.mark.parametrize("modality, kind, shape", [("rgb", "img", (3, 24, 32)), ("flow", "flow", (1, 24, 64)),
                                                   ("mag", "mag", (1, 24, 32))])
def test_round_trip_gives_the_jpeg_bytes_and_pixels(extracted, tmp_path, modality, kind, shape):
    frames_root, metas = extracted
    index = store_index(metas, modality)
    db = tmp_path / "out" / "lmdb" / f"split1_train_{modality}"
    stats = build_lmdb(db, index, video_sources(frames_root, metas), progress=False)
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
    build_lmdb(db, store_index(metas, "mag"), video_sources(frames_root, metas), progress=False)
    keys = sorted(k for k in read_db(db) if k != INDEX_KEY)
    assert keys[:4] == [b"A/v_a/00001", b"A/v_a/00002", b"A/v_a/00003", b"A/v_a/00004"]
    assert frame_key("B/v b é", 6).decode() in {k.decode() for k in keys}
    assert frame_key("B/v b é", 7) not in keys           # 7 frames give 6 flow images


def test_parallel_build_equals_serial_build(extracted, tmp_path):
    frames_root, metas = extracted
    index = store_index(metas, "rgb")
    build_lmdb(tmp_path / "a", index, video_sources(frames_root, metas), progress=False)
    with worker_pool(2) as pool:
        build_lmdb(tmp_path / "b", index, video_sources(frames_root, metas), pool, progress=False)
    assert read_db(tmp_path / "a") == read_db(tmp_path / "b")


def test_a_finished_database_is_kept_and_a_changed_index_rebuilds_it(extracted, tmp_path):
    frames_root, metas = extracted
    db = tmp_path / "db"
    index = store_index(metas, "rgb")
    build_lmdb(db, index, video_sources(frames_root, metas), progress=False)
    assert build_lmdb(db, index, video_sources(frames_root, metas), progress=False)["skipped"]
    relabelled = store_index(metas, "rgb", labels={"A/v_a": 1, "B/v b é": 0, "B/v_c": 0})
    assert not build_lmdb(db, relabelled, video_sources(frames_root, metas), progress=False)["skipped"]
    datum = caffe_pb2().Datum.FromString(read_db(db)[frame_key("A/v_a", 1)])
    assert datum.label == 1


def test_an_interrupted_build_resumes_from_the_committed_videos(extracted, tmp_path, monkeypatch):
    frames_root, metas = extracted
    index = store_index(metas, "rgb")
    build_lmdb(tmp_path / "reference", index, video_sources(frames_root, metas), progress=False)

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
        build_lmdb(db, index, video_sources(frames_root, metas), progress=False)
    assert not db.exists() and (tmp_path / "db.partial").exists()
    calls.clear()
    monkeypatch.setattr(lmdb_store, "_read_video_items", real_read)
    build_lmdb(db, index, video_sources(frames_root, metas), progress=False)
    assert read_db(db) == read_db(tmp_path / "reference")
    assert not (tmp_path / "db.partial").exists() and not (db / lmdb_store.INTENT_NAME).exists()


def test_the_map_size_grows_when_the_estimate_is_too_small(extracted, tmp_path, monkeypatch):
    frames_root, metas = extracted
    monkeypatch.setattr(lmdb_store, "_estimate_map_size", lambda index, sources: 32 << 10)
    index = store_index(metas, "rgb")
    build_lmdb(tmp_path / "db", index, video_sources(frames_root, metas), progress=False)
    assert len(read_db(tmp_path / "db")) == sum(v.num_frames for v in index.videos) + 1


class FullDiskEnv:
    """An LMDB environment whose write transactions fail at commit as on a full disk."""

    def __init__(self, env):
        self.env = env

    def __getattr__(self, name):
        return getattr(self.env, name)

    def begin(self, write=False, **kwargs):
        txn = self.env.begin(write=write, **kwargs)
        if not write:
            return txn

        class Failing:
            def __enter__(self):
                return txn

            def __exit__(self, *exc):
                txn.abort()
                raise lmdb.Error("mdb_txn_commit: Input/output error")
        return Failing()


def test_a_failed_commit_names_the_database_and_the_keys(extracted, tmp_path, monkeypatch):
    """Issue 20 item 11: a full disk said only 'mdb_txn_commit: Input/output error'."""
    frames_root, metas = extracted
    real_open = lmdb.open
    monkeypatch.setattr(lmdb_store.lmdb, "open", lambda *a, **k: FullDiskEnv(real_open(*a, **k)))
    db = tmp_path / "lmdb" / "split1_train_rgb"
    with pytest.raises(OSError, match=re.escape(f"writing the LMDB database {db} failed at the transaction of keys "
                                                "'A/v_a/00001' .. '__index__'") + r".*Input/output error \(disk full\?"):
        build_lmdb(db, store_index(metas, "rgb"), video_sources(frames_root, metas), progress=False)
    assert not db.exists()


def test_a_truncated_finished_database_is_rebuilt(extracted, tmp_path):
    frames_root, metas = extracted
    db = tmp_path / "db"
    index = store_index(metas, "rgb")
    build_lmdb(db, index, video_sources(frames_root, metas), progress=False)
    reference = read_db(db)
    os.truncate(db / "data.mdb", (db / "data.mdb").stat().st_size // 2)
    assert not build_lmdb(db, index, video_sources(frames_root, metas), progress=False)["skipped"]
    assert read_db(db) == reference
