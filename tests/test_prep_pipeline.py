import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataprep_helpers import make_hmdb51, make_ucf101, moving_frames, read_db, write_video
from mfuse.prep.frames import ExtractSettings
from mfuse.prep.pipeline import parse_shard, prepare_dataset, read_failures, select_shard
from mfuse.stores.reader import LmdbFrameStore, open_frame_store

SETTINGS = ExtractSettings(short_side=None, flow_algorithm="dis")
REPO = Path(__file__).resolve().parents[1]




def all_databases(out):
    return {p.name: read_db(p) for p in sorted((out / "lmdb").iterdir())}


@pytest.fixture
def ucf(tmp_path):
    """UCF101 layout: 2 classes, one empty/corrupt file, one 1-frame video, one 5-frame video."""
    return make_ucf101(tmp_path / "src", {
        "Apply Eye": [("v_Apply Eye_g01_c01", 12), ("v_Apply Eye_g02_c01", 5), ("v_Apply Eye_g03_c01", 11)],
        "Dänce": [("v_Dänce_g01_c01", 11), ("v_Dänce_g02_c01", 0), ("v_Dänce_g03_c01", 1)],
    })


def test_parse_and_select_shard():
    assert parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "a/b", "1"):
        with pytest.raises(ValueError):
            parse_shard(bad)
    items = list(range(7))
    shards = [select_shard(items, (i, 3)) for i in range(3)]
    assert sorted(sum(shards, [])) == items and shards[1] == [1, 4]
    assert select_shard(items, None) == items


def test_ucf101_end_to_end_with_bad_videos(ucf, tmp_path):
    videos, splits = ucf
    out = tmp_path / "out"
    summary = prepare_dataset("ucf101", videos, splits, out, SETTINGS, workers=2, progress=False)
    failed = {f.video_id: f.reason for f in summary.stages["extract"].failures}
    assert set(failed) == {"Dänce/v_Dänce_g02_c01", "Dänce/v_Dänce_g03_c01"}
    assert "cannot open" in failed["Dänce/v_Dänce_g02_c01"]
    assert "fewer than 2 frames (1)" in failed["Dänce/v_Dänce_g03_c01"]
    assert {(f.stage, f.video_id) for f in read_failures(out / "failures.tsv")} >= {
        ("extract", "Dänce/v_Dänce_g02_c01"), ("extract", "Dänce/v_Dänce_g03_c01")}
    assert summary.videos == 6 and summary.frames == 12 + 5 + 11 + 11
    assert summary.flow_images == summary.frames - 4
    assert summary.short_for_stack == ["Apply Eye/v_Apply Eye_g02_c01"]
    assert sorted(p.name for p in (out / "lmdb").iterdir()) == sorted(
        f"split{k}_{s}_{m}" for k in (1, 2, 3) for s in ("train", "test") for m in ("rgb", "flow", "mag"))
    # split 1 tests video 0 of each class; the corrupt video 1 of Dänce is left out of split 1 train.
    test_rgb = LmdbFrameStore(out / "lmdb" / "split1_test_rgb")
    assert [(v.video_id, v.label, v.num_frames) for v in test_rgb.index.videos] == [
        ("Apply Eye/v_Apply Eye_g01_c01", 0, 12), ("Dänce/v_Dänce_g01_c01", 1, 11)]
    train_flow = LmdbFrameStore(out / "lmdb" / "split1_train_flow")
    assert [(v.video_id, v.num_frames) for v in train_flow.index.videos] == [
        ("Apply Eye/v_Apply Eye_g02_c01", 4), ("Apply Eye/v_Apply Eye_g03_c01", 10)]
    assert train_flow.index.classes == ["Apply Eye", "Dänce"]
    assert train_flow.get_image("Apply Eye/v_Apply Eye_g03_c01", 10).shape == (24, 64)
    # A second run finds everything done.
    again = prepare_dataset("ucf101", videos, splits, out, SETTINGS, workers=1, progress=False)
    assert again.stages["extract"].processed == 0 and again.stages["extract"].skipped == 4
    assert again.stages["stores"].processed == 0 and again.stages["stores"].skipped == 18


def test_hmdb51_folder_storage(tmp_path):
    videos, splits = make_hmdb51(tmp_path / "src", {
        "brush_hair": [("b 1", 4), ("b_2", 3), ("b_3", 4)], "wave": [("w_1", 3), ("w_2", 3), ("w_3", 3)]})
    out = tmp_path / "out"
    summary = prepare_dataset("hmdb51", videos, splits, out, SETTINGS, splits=(3,), storage="folder",
                              workers=1, progress=False)
    assert not summary.failures and not (out / "lmdb").exists()
    store = open_frame_store(out, 3, "train", "mag", storage="folder")
    # split 3: video 0 unused (flag 0), video 1 train, video 2 test
    assert [v.video_id for v in store.index.videos] == ["brush_hair/b_2", "wave/w_2"]
    assert store.get_image("brush_hair/b_2", 2).shape == (24, 32)
    assert [v.video_id for v in open_frame_store(out, 3, "test", "rgb", "folder").index.videos] == [
        "brush_hair/b_3", "wave/w_3"]
    assert not (out / "frames" / "brush_hair" / "b 1").exists()     # unused in split 3: not extracted


def test_shards_together_equal_one_run(ucf, tmp_path):
    videos, splits = ucf
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    prepare_dataset("ucf101", videos, splits, whole, SETTINGS, splits=(1,), workers=1, progress=False)
    for i in range(2):
        prepare_dataset("ucf101", videos, splits, sharded, SETTINGS, splits=(1,), workers=1, shard=(i, 2),
                        stages=("extract",), progress=False)
    for i in range(2):
        prepare_dataset("ucf101", videos, splits, sharded, SETTINGS, splits=(1,), workers=1, shard=(i, 2),
                        stages=("stores",), progress=False)
    assert (sharded / "failures-shard1of2.tsv").exists() and (sharded / "summary-shard0of2.json").exists()
    assert all_databases(whole) == all_databases(sharded)


RUN = """
import sys
from pathlib import Path
from mfuse.prep.frames import ExtractSettings
from mfuse.prep.pipeline import prepare_dataset
videos, splits, out = map(Path, sys.argv[1:4])
prepare_dataset("ucf101", videos, splits, out, ExtractSettings(short_side=None, flow_algorithm="tvl1"),
                workers=2, progress=False)
"""


def _run_and_kill(args, out, ready) -> bool:
    """Start a build, SIGKILL it as soon as ``ready(out)``; True if it was killed before finishing."""
    process = subprocess.Popen([sys.executable, "-c", RUN, *map(str, args), str(out)], env=os.environ.copy())
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if ready(out):
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.005)
    process.wait()
    return False


def test_a_build_killed_with_sigkill_resumes_to_the_same_databases(tmp_path):
    videos, splits = make_ucf101(tmp_path / "src", {
        "A": [(f"v_A_g{i:02d}_c01", 10 + i) for i in range(5)], "B": [(f"v_B_g{i:02d}_c01", 12) for i in range(5)]})
    reference = tmp_path / "reference"
    prepare_dataset("ucf101", videos, splits, reference, ExtractSettings(short_side=None, flow_algorithm="tvl1"),
                    workers=2, progress=False)
    out = tmp_path / "out"
    killed_extract = _run_and_kill((videos, splits), out, lambda o: len(list(o.glob("frames/*/*/meta.json"))) >= 3)
    killed_lmdb = _run_and_kill((videos, splits), out, lambda o: len(list(o.glob("lmdb/*"))) >= 4)
    assert killed_extract and killed_lmdb       # one kill during extraction, one among the 18 databases
    subprocess.run([sys.executable, "-c", RUN, str(videos), str(splits), str(out)], check=True)
    assert not list(out.glob("frames/*/.*.partial")) and not list(out.glob("lmdb/*.partial"))
    assert all_databases(out) == all_databases(reference)


def test_cli_reports_and_strict_exit_status(ucf, tmp_path):
    videos, splits = ucf
    command = [sys.executable, str(REPO / "tools" / "prepare.py"), "ucf101", "--videos", str(videos),
               "--splits", str(splits), "--out", str(tmp_path / "out"), "--short-side", "24", "--flow", "dis",
               "--workers", "1", "--split-ids", "1", "--no-progress"]
    lenient = subprocess.run(command, capture_output=True, text=True)
    assert lenient.returncode == 0, lenient.stderr
    assert "6 videos" in lenient.stdout and "2 failures" in lenient.stdout
    assert "fewer than 2 frames" in lenient.stdout
    strict = subprocess.run(command + ["--strict"], capture_output=True, text=True)
    assert strict.returncode == 1
    (splits / "testlist01.txt").write_text("Nope/v_x.avi\n")
    broken = subprocess.run(command, capture_output=True, text=True)
    assert broken.returncode == 2 and "testlist01.txt:1: class 'Nope' is not in classInd.txt" in broken.stderr


def test_a_missing_video_is_a_failure_row_and_a_truncated_one_a_warning(ucf, tmp_path):
    """Issue 20 item 15: a listed video missing on disk stopped the whole run (exit 2); a truncated video that
    decoded partly passed silently."""
    videos, splits = ucf
    (videos / "Dänce" / "v_Dänce_g01_c01.avi").unlink()
    truncated = write_video(videos / "Apply Eye" / "v_Apply Eye_g03_c01.avi", moving_frames(40, 240, 320))
    data = truncated.read_bytes()
    truncated.write_bytes(data[:int(len(data) * 0.9)])
    out = tmp_path / "out"
    command = [sys.executable, str(REPO / "tools" / "prepare.py"), "ucf101", "--videos", str(videos),
               "--splits", str(splits), "--out", str(out), "--short-side", "24", "--flow", "dis",
               "--workers", "1", "--split-ids", "1", "--no-progress"]
    lenient = subprocess.run(command, capture_output=True, text=True)
    assert lenient.returncode == 0, lenient.stderr
    rows = {f.video_id: f for f in read_failures(out / "failures.tsv")}
    missing = rows["Dänce/v_Dänce_g01_c01"]
    assert (missing.stage, missing.level) == ("extract", "error")
    assert missing.reason == f"video file missing: {videos / 'Dänce' / 'v_Dänce_g01_c01.avi'}"
    partly = rows["Apply Eye/v_Apply Eye_g03_c01"]
    decoded = LmdbFrameStore(out / "lmdb" / "split1_train_rgb").num_frames("Apply Eye/v_Apply Eye_g03_c01")
    assert 2 <= decoded < 39 and partly.level == "warning"
    assert partly.reason.startswith(f"decoded {decoded} of the 40 frames its header states")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failures"] == 3 and [w["video_id"] for w in summary["warnings"]] == [partly.video_id]
    assert f"warning [extract] Apply Eye/v_Apply Eye_g03_c01: decoded {decoded} of the 40" in lenient.stdout
    strict = subprocess.run(command + ["--strict"], capture_output=True, text=True)
    assert strict.returncode == 1 and "video file missing" in strict.stdout
