"""Training through mfuse.training.train: final snapshots, exact resume, run records (skip only an identical
run, refuse a changed one, --force), the GPU and NCCL checks, and tools/train.py."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import caffe
import numpy as np
import pytest
from caffe.proto import caffe_pb2

from mfuse.training import record
from mfuse.training import run as run_module
from mfuse.training import (GpuSelectionError, TrainingError, read_record, read_solver, record_path,
                            solverstate_iteration, train)
from mfuse.training.solver import BatchPlan

ROOT = Path(__file__).resolve().parents[1]


def write_net(path, data_root, num_output=8):
    param_str = json.dumps({"source": str(data_root), "modalities": ["rgb"], "batch_size": 4, "crop_size": 40,
                            "seed": 3})
    path.write_text(textwrap.dedent(f"""\
        layer {{ name: "data" type: "Python" top: "data_rgb" top: "label"
          python_param {{ module: "mfuse.layers.video_data" layer: "VideoDataLayer" param_str: '{param_str}' }} }}
        layer {{ name: "conv" type: "Convolution" bottom: "data_rgb" top: "conv"
          convolution_param {{ num_output: 4 kernel_size: 5 stride: 3 weight_filler {{ type: "xavier" }} }} }}
        layer {{ name: "drop" type: "Dropout" bottom: "conv" top: "conv" dropout_param {{ dropout_ratio: 0.5 }} }}
        layer {{ name: "fc" type: "InnerProduct" bottom: "conv" top: "fc"
          inner_product_param {{ num_output: {num_output} weight_filler {{ type: "xavier" }} }} }}
        layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }}
        """))
    return path


def write_solver(path, net, prefix, max_iter):
    path.write_text(textwrap.dedent(f"""\
        net: "{net}"
        base_lr: 0.001
        lr_policy: "fixed"
        momentum: 0.9
        max_iter: {max_iter}
        snapshot: 3
        snapshot_prefix: "{prefix}"
        display: 1
        iter_size: 2
        random_seed: 5
        solver_mode: CPU
        """))
    return path


def weights(caffemodel):
    net = caffe_pb2.NetParameter()
    net.ParseFromString(Path(caffemodel).read_bytes())
    return {layer.name: [np.array(blob.data) for blob in layer.blobs] for layer in net.layer if layer.blobs}


def assert_same_weights(a, b, equal=True):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    same = all(np.array_equal(x, y) for name in wa for x, y in zip(wa[name], wb[name]))
    assert same == equal


@pytest.fixture
def runs(tmp_path, tiny_data_root):
    net = write_net(tmp_path / "net.prototxt", tiny_data_root)
    return tmp_path, net


def quiet(**kwargs):
    notices = []
    return dict(cwd=kwargs.pop("cwd"), progress=False, announce=notices.append, **kwargs), notices


def test_resumed_run_reaches_the_uninterrupted_weights(runs):
    tmp_path, net = runs
    kwargs, _ = quiet(cwd=tmp_path)
    whole = train(write_solver(tmp_path / "whole.prototxt", net, tmp_path / "whole/snap", 6), tmp_path / "whole.log",
                  **kwargs)
    # Interrupted after 3 iterations, then resumed.
    first = write_solver(tmp_path / "first.prototxt", net, tmp_path / "part/snap", 3)
    train(first, tmp_path / "first.log", **kwargs)
    state = tmp_path / "part/snap_iter_3.solverstate"
    assert solverstate_iteration(state) == 3
    resumed = train(write_solver(tmp_path / "rest.prototxt", net, tmp_path / "part/snap", 6),
                    tmp_path / "rest.log", snapshot=state, **kwargs)
    assert resumed == tmp_path / "part/snap_iter_6.caffemodel"
    assert_same_weights(whole, resumed)
    # The check can fail: the weights after 3 iterations differ from the final ones.
    assert_same_weights(whole, tmp_path / "part/snap_iter_3.caffemodel", equal=False)
    assert read_record(resumed)["snapshot"] == str(state)


def test_an_identical_finished_run_is_skipped_and_said(runs):
    tmp_path, net = runs
    solver = write_solver(tmp_path / "s.prototxt", net, tmp_path / "s/snap", 2)
    kwargs, notices = quiet(cwd=tmp_path)
    final = train(solver, tmp_path / "s.log", **kwargs)
    record = read_record(final)
    assert record["state"] == "complete" and record["log"] == str(tmp_path / "s.log")
    assert record["fingerprint"]["ranks"] == 1 and notices == []
    stamp = final.stat().st_mtime_ns
    # Comments do not change the run: still skipped, without touching the snapshot or writing a log.
    solver.write_text("# retouched\n" + solver.read_text())
    assert train(solver, tmp_path / "s2.log", **kwargs) == final
    assert final.stat().st_mtime_ns == stamp and not (tmp_path / "s2.log").exists()
    assert len(notices) == 1 and notices[0].startswith(f"train: skipped, {final} is up to date")
    assert f"its log: {tmp_path / 's.log'}" in notices[0] and "--force" in notices[0]
    assert read_solver(solver).iter_size == 2


def test_a_changed_run_is_refused_and_force_retrains(runs, tiny_data_root):
    tmp_path, net = runs
    solver = write_solver(tmp_path / "s.prototxt", net, tmp_path / "s/snap", 2)
    kwargs, notices = quiet(cwd=tmp_path)
    final = train(solver, tmp_path / "s.log", **kwargs)
    first = weights(final)
    write_net(net, tiny_data_root, num_output=6)
    with pytest.raises(TrainingError, match=r"snap_iter_2.caffemodel exists from a run with another train net "
                                            r"\(record .*snap_iter_2.run.json\); pass --force to retrain"):
        train(solver, tmp_path / "s.log", **kwargs)
    with pytest.raises(TrainingError, match="another initial weights"):
        write_net(net, tiny_data_root)
        train(solver, tmp_path / "s.log", weights=final, **kwargs)
    write_net(net, tiny_data_root, num_output=6)
    assert train(solver, tmp_path / "s3.log", force=True, **kwargs) == final
    assert notices[-1] == f"train: --force: retraining {final}"
    assert weights(final)["fc"][0].shape != first["fc"][0].shape
    assert (tmp_path / "s3.log").exists()
    assert train(solver, tmp_path / "s4.log", **kwargs) == final and notices[-1].startswith("train: skipped")


def test_a_snapshot_without_record_is_used_and_said(runs):
    tmp_path, net = runs
    solver = write_solver(tmp_path / "s.prototxt", net, tmp_path / "s/snap", 2)
    kwargs, notices = quiet(cwd=tmp_path)
    final = train(solver, tmp_path / "s.log", **kwargs)
    record_path(final).unlink()
    assert train(solver, tmp_path / "s.log", **kwargs) == final
    assert notices == [f"train: using {final} as it is: it has no run record (trained outside mfuse.training or "
                       f"before records); pass --force to retrain"]


def test_a_resumed_run_keeps_the_weights_it_started_from(runs):
    tmp_path, net = runs
    kwargs, notices = quiet(cwd=tmp_path)
    init = train(write_solver(tmp_path / "init.prototxt", net, tmp_path / "init/snap", 1), tmp_path / "i.log",
                 **kwargs)
    six = write_solver(tmp_path / "six.prototxt", net, tmp_path / "run/snap", 6)
    final = tmp_path / "run/snap_iter_6.caffemodel"
    # A 6-iteration run from ``init`` interrupted after its snapshot at iteration 3: the record it wrote when
    # it started, and the snapshot (made here by a 3-iteration solver with the same prefix).
    record.write_record(final, record.fingerprint(six, BatchPlan(1, 4, 2), init, tmp_path), record.RUNNING, {})
    train(write_solver(tmp_path / "three.prototxt", net, tmp_path / "run/snap", 3), tmp_path / "a.log",
          weights=init, **kwargs)
    train(six, tmp_path / "b.log", snapshot=tmp_path / "run/snap_iter_3.solverstate", **kwargs)
    assert read_record(final)["fingerprint"]["weights"] == record.file_sha256(init)
    assert train(six, tmp_path / "c.log", weights=init, **kwargs) == final
    assert notices[-1].startswith("train: skipped")


def test_bad_requests_are_one_clear_error(runs, monkeypatch):
    tmp_path, net = runs
    solver = write_solver(tmp_path / "s.prototxt", net, tmp_path / "s/snap", 2)
    kwargs, _ = quiet(cwd=tmp_path)
    state = tmp_path / "x.solverstate"
    state.write_bytes(b"")
    with pytest.raises(ValueError, match="give initial weights or a snapshot to resume from, not both"):
        train(solver, weights=state, snapshot=state, **kwargs)
    with pytest.raises(FileNotFoundError, match="weights .*missing.caffemodel does not exist"):
        train(solver, weights=tmp_path / "missing.caffemodel", **kwargs)
    with pytest.raises(ValueError, match="give gpus or gpu, not both"):
        train(solver, gpus=0, gpu=0, **kwargs)
    no_final = tmp_path / "no_final.prototxt"
    no_final.write_text(solver.read_text() + "snapshot_after_train: false\n")
    with pytest.raises(ValueError, match="no_final.prototxt: the solver writes no final snapshot"):
        train(no_final, **kwargs)
    monkeypatch.setattr(run_module, "cuda_device_count", lambda: 2)
    with pytest.raises(GpuSelectionError, match="gpus 0,5: GPU 5 does not exist; this machine has 2 GPUs"):
        train(solver, gpus="0,5", **kwargs)
    with pytest.raises(GpuSelectionError, match="gpus 2: GPU 2 does not exist"):
        train(solver, gpu=2, **kwargs)
    with pytest.raises(ValueError, match=r"batch 4 \(data layer 'data'\) x iter_size 2 = 8 cannot be split over 3"):
        monkeypatch.setattr(run_module, "cuda_device_count", lambda: 3)
        monkeypatch.setattr(run_module, "_require_nccl", lambda gpus: None)
        train(solver, gpus="all", batch="split", **kwargs)
    assert not (tmp_path / "s").exists()


@pytest.mark.skipif(caffe.has_nccl(), reason="this pycaffe has NCCL")
def test_several_gpus_without_nccl_are_one_clear_error(runs, monkeypatch):
    tmp_path, net = runs
    monkeypatch.setattr(run_module, "cuda_device_count", lambda: 2)
    kwargs, _ = quiet(cwd=tmp_path)
    with pytest.raises(TrainingError, match="gpus 0,1: this Caffe was built without NCCL, so it cannot train on "
                                            "several GPUs"):
        train(write_solver(tmp_path / "s.prototxt", net, tmp_path / "s/snap", 2), gpus=[0, 1], **kwargs)


def tool(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT / "tools/train.py"), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True)


def test_tool_trains_skips_and_refuses(runs):
    tmp_path, net = runs
    solver = write_solver(tmp_path / "s.prototxt", net, tmp_path / "s/snap", 2)
    done = tool(solver, "--cwd", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"final weights: {tmp_path / 's/snap_iter_2.caffemodel'}\n"
    assert (tmp_path / "s/train.log").exists()   # the default log: beside the snapshots
    again = tool(solver, "--cwd", tmp_path)
    assert again.returncode == 0 and "train: skipped" in again.stderr
    bad = tool(solver, "--cwd", tmp_path, "--weights", tmp_path / "s/snap_iter_2.caffemodel")
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1].startswith("train.py: error: ") and "--force" in bad.stderr


@pytest.mark.parametrize("gpus, code, message", [
    ("0,x", 2, "train.py: error: --gpus '0,x': not a comma-separated list of GPU ids"),
    ("1,1", 2, "train.py: error: --gpus 1,1: GPU 1 is named twice"),
])
def test_tool_refuses_malformed_gpus(gpus, code, message):
    result = tool(ROOT / "prototxt/tiny/spatial_solver.prototxt", "--gpus", gpus)
    assert result.returncode == code
    assert result.stderr.strip().splitlines()[-1] == message or message in result.stderr.strip().splitlines()[-1]


def test_caffe_binary_is_the_venvs_launcher_else_the_one_on_path(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    monkeypatch.setenv("PATH", str(tmp_path / "bundle" / "bin"))
    with pytest.raises(FileNotFoundError, match="no caffe is on PATH: run tools/setup.sh"):
        run_module.caffe_binary()
    bundled = tmp_path / "bundle" / "bin" / "caffe"
    bundled.parent.mkdir(parents=True)
    bundled.write_text("#!/bin/sh\n")
    bundled.chmod(0o755)
    assert run_module.caffe_binary() == bundled
    launcher = tmp_path / "venv" / "bin" / "caffe"
    launcher.parent.mkdir(parents=True)
    launcher.write_text("#!/bin/sh\n")
    assert run_module.caffe_binary() == launcher
