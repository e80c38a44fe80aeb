"""Caffe training-log parsing on a hand-written, realistic glog excerpt."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from mfuse.reports.train_log import parse_train_log, read_train_log

LOG = """\
I1123 09:12:01.000100 41811 caffe.cpp:218] Using GPUs 0
I1123 09:12:03.120000 41811 solver.cpp:44] Initializing solver from parameters:
base_lr: 0.001
I1123 09:12:09.500000 41811 solver.cpp:289] Solving rgb_flow_mfusion
I1123 09:12:09.500010 41811 solver.cpp:290] Learning Rate Policy: step
I1123 09:12:09.600000 41811 solver.cpp:347] Iteration 0, Testing net (#0)
I1123 09:12:12.000000 41811 solver.cpp:414]     Test net output #0: accuracy = 0.0390625
I1123 09:12:12.000100 41811 solver.cpp:414]     Test net output #1: loss = 4.61724 (* 1 = 4.61724 loss)
I1123 09:12:12.700000 41811 solver.cpp:239] Iteration 0 (0 iter/s, 3.1s/20 iters), loss = 4.62311
I1123 09:12:12.700100 41811 solver.cpp:258]     Train net output #0: loss = 4.62311 (* 1 = 4.62311 loss)
I1123 09:12:12.700200 41811 sgd_solver.cpp:112] Iteration 0, lr = 0.001
I1123 09:12:20.100000 41811 solver.cpp:239] Iteration 20 (2.70270 iter/s, 7.4s/20 iters), loss = 3.98
I1123 09:12:20.100100 41811 solver.cpp:258]     Train net output #0: loss = 3.71 (* 1 = 3.71 loss)
I1123 09:12:20.100200 41811 sgd_solver.cpp:112] Iteration 20, lr = 0.001
W1123 09:12:21.000000 41811 data_layer.cpp:73] Restarting data prefetching from start.
I1123 09:12:27.500000 41811 solver.cpp:347] Iteration 40, Testing net (#0)
I1123 09:12:30.000000 41811 solver.cpp:404] Test loss: 3.2
I1123 09:12:30.000100 41811 solver.cpp:414]     Test net output #0: accuracy = 0.5
I1123 09:12:30.000200 41811 solver.cpp:414]     Test net output #1: loss = 3.2 (* 1 = 3.2 loss)
I1123 09:12:30.600000 41811 solver.cpp:239] Iteration 40 (2.64 iter/s, 7.57s/20 iters), loss = 2.5e-01
I1123 09:12:30.600100 41811 solver.cpp:258]     Train net output #0: loss = 0.21 (* 1 = 0.21 loss)
I1123 09:12:30.600200 41811 solver.cpp:258]     Train net output #1: accuracy = 0.9375
I1123 09:12:30.600300 41811 sgd_solver.cpp:112] Iteration 40, lr = 1e-04
I1123 09:12:40.000000 41811 solver.cpp:464] Snapshotting to binary proto file snap_iter_60.caffemodel
I1123 09:12:41.000000 41811 solver.cpp:327] Iteration 60, loss = 0.19
I1123 09:12:41.100000 41811 solver.cpp:332] Optimization Done.
"""


def test_train_rows():
    log = parse_train_log(LOG.splitlines())
    assert [row["iteration"] for row in log.train] == [0, 20, 40, 60]
    first, second, third, last = log.train
    assert first == {"iteration": 0, "smoothed_loss": 4.62311, "iters_per_s": 0.0, "loss": 4.62311, "lr": 0.001}
    assert second["smoothed_loss"] == 3.98 and second["loss"] == 3.71
    assert second["iters_per_s"] == pytest.approx(2.7027) and second["lr"] == 0.001
    assert third["smoothed_loss"] == pytest.approx(0.25) and third["lr"] == pytest.approx(1e-4)
    assert third["loss"] == 0.21 and third["accuracy"] == 0.9375
    assert last == {"iteration": 60, "smoothed_loss": 0.19}


def test_a_blob_with_several_values_keeps_them_all():
    lines = ["I1 solver.cpp:239] Iteration 5 (1 iter/s, 1s/5 iters), loss = 1",
             "I1 solver.cpp:258]     Train net output #0: loss = 1",
             "I1 solver.cpp:258]     Train net output #1: probs = 0.25",
             "I1 solver.cpp:258]     Train net output #2: probs = 0.75"]
    row = parse_train_log(lines).train[0]
    assert row["probs"] == 0.25 and row["probs#2"] == 0.75


def test_test_rows():
    log = parse_train_log(LOG.splitlines())
    assert log.test == [{"iteration": 0, "net": 0, "accuracy": 0.0390625, "loss": 4.61724},
                        {"iteration": 40, "net": 0, "test_loss": 3.2, "accuracy": 0.5, "loss": 3.2}]
    assert log.series("test", "accuracy") == ([0, 40], [0.0390625, 0.5])


def test_resumed_run_replaces_rows_and_csv(tmp_path):
    resumed = LOG + "I1123 10:00:00.000000 5 solver.cpp:239] Iteration 40 (1 iter/s, 20s/20 iters), loss = 0.3\n"
    path = tmp_path / "train.log"
    path.write_text(resumed)
    log = read_train_log(path)
    assert [row["iteration"] for row in log.train] == [0, 20, 40, 60]
    assert log.train[2]["smoothed_loss"] == 0.3 and "lr" not in log.train[2]
    train_csv, test_csv = log.write_csv(tmp_path / "out")
    with open(train_csv) as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["iteration"] == "0" and rows[0]["lr"] == "0.001" and rows[3]["lr"] == ""
    assert test_csv.read_text().splitlines()[0].startswith("iteration,net,")


def test_empty_log():
    log = parse_train_log(["nothing here\n"])
    assert log.train == [] and log.test == []


def test_cli_writes_tables_and_curves(tmp_path):
    log = tmp_path / "spatial.log"
    log.write_text(LOG)
    tool = Path(__file__).resolve().parents[1] / "tools" / "plot_train_log.py"
    done = subprocess.run([sys.executable, str(tool), str(log), "--out", str(tmp_path / "r")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "4 train rows, 2 test rows" in done.stdout
    for name in ("spatial_train.csv", "spatial_test.csv", "spatial_curves.png"):
        assert (tmp_path / "r" / name).stat().st_size > 0
    (tmp_path / "empty.log").write_text("no solver here\n")
    failed = subprocess.run([sys.executable, str(tool), str(tmp_path / "empty.log")], capture_output=True, text=True)
    assert failed.returncode != 0 and "no 'Iteration" in failed.stderr
