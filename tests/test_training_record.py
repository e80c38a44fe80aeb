"""Run records: the fingerprint of solver, nets, weights and batch, what differs, and the record file."""
import json

import pytest

from mfuse.training.record import (COMPLETE, RUNNING, differences, file_sha256, fingerprint, read_record,
                                   record_path, write_record)
from mfuse.training.solver import BatchPlan

NET = """layer { name: "d" type: "DummyData" top: "data" dummy_data_param { shape { dim: 4 dim: 3 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 2 } }
"""
SOLVER = 'net: "net.prototxt"\nmax_iter: 4\nbase_lr: 0.1\nsnapshot_prefix: "s/snap"\nsolver_mode: CPU\ndisplay: 1\n'
PLAN = BatchPlan(1, 4, 1)


@pytest.fixture
def run_dir(tmp_path):
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "solver.prototxt").write_text(SOLVER)
    (tmp_path / "init.caffemodel").write_bytes(b"weights")
    return tmp_path


def key(run_dir, plan=PLAN, weights="init.caffemodel"):
    return fingerprint(run_dir / "solver.prototxt", plan, None if weights is None else run_dir / weights, run_dir)


def test_fingerprint_ignores_layout_comments_and_hardware(run_dir):
    before = key(run_dir)
    assert set(before) == {"solver", "nets", "weights", "ranks", "batch_size", "iter_size"}
    assert before["weights"] == file_sha256(run_dir / "init.caffemodel")
    (run_dir / "net.prototxt").write_text("# a comment\n" + NET.replace(" } }", " }\n}"))
    (run_dir / "solver.prototxt").write_text(SOLVER.replace("CPU", "GPU").replace("display: 1", "display: 50")
                                             + "snapshot: 2\n")
    assert key(run_dir) == before
    (run_dir / "net2.prototxt").write_text(NET)   # the same net under another name
    (run_dir / "solver.prototxt").write_text(SOLVER.replace("net.prototxt", "net2.prototxt"))
    assert key(run_dir) == before


def test_differences_name_what_changed(run_dir):
    before = key(run_dir)
    assert differences(before, before) == []
    (run_dir / "net.prototxt").write_text(NET.replace("num_output: 2", "num_output: 3"))
    (run_dir / "solver.prototxt").write_text(SOLVER.replace("0.1", "0.01"))
    (run_dir / "init.caffemodel").write_bytes(b"other weights")
    after = key(run_dir, BatchPlan(2, 2, 1))
    assert differences(before, after) == ["solver", "train net", "initial weights",
                                          "number of GPUs (1 then, 2 now)", "batch per GPU (4 x 1 then, 2 x 1 now)"]
    assert differences(before, key(run_dir, weights=None))[-1] == "initial weights"
    assert fingerprint(run_dir / "solver.prototxt", PLAN, None, run_dir, weights_sha256="abc")["weights"] == "abc"


def test_record_file_round_trip(run_dir):
    final = run_dir / "s/snap_iter_4.caffemodel"
    assert record_path(final) == run_dir / "s/snap_iter_4.run.json"
    assert read_record(final) is None
    write_record(final, key(run_dir), RUNNING, {"log": "x.log", "started": "t0"})
    first = read_record(final)
    assert (first["state"], first["log"], first["started"], first["finished"]) == (RUNNING, "x.log", "t0", None)
    write_record(final, key(run_dir), COMPLETE, {"log": "x.log", "started": "t0"})
    done = read_record(final)
    assert done["state"] == COMPLETE and done["finished"] and done["fingerprint"] == key(run_dir)
    record_path(final).write_text("{")
    with pytest.raises(ValueError, match="snap_iter_4.run.json: unreadable run record"):
        read_record(final)
    record_path(final).write_text(json.dumps({"version": 99}))
    with pytest.raises(ValueError, match="not a version-1 run record"):
        read_record(final)
