"""Rank processes: their command line, CPU ranks under the launcher (rank 0 logs and snapshots, a failing rank
stops the others with its message), and, with two GPUs and NCCL, ranks that end bit-identical."""
import sys
import textwrap
import time

import caffe
import numpy as np
import pytest
from caffe.proto import caffe_pb2

from mfuse.training import TrainingError, cuda_device_count, run_training
from mfuse.training.devices import GpuSelectionError
from mfuse.training.worker import RankConfig, parse_args


def test_command_line_round_trip(tmp_path):
    config = RankConfig(tmp_path / "s.prototxt", 1, 4, 3, tmp_path / "w.caffemodel", None, tmp_path / "ranks", True)
    command = config.command("python3")
    assert command[:3] == ["python3", "-m", "mfuse.training.worker"]
    assert parse_args(command[3:]) == config
    cpu = RankConfig(tmp_path / "s.prototxt", 0, 2, None, snapshot=tmp_path / "x.solverstate")
    assert parse_args(cpu.command()[3:]) == cpu


def write_run(tmp_path, data_root, max_iter=4, extra_layer=""):
    import json
    param_str = json.dumps({"source": str(data_root), "modalities": ["rgb"], "batch_size": 4, "crop_size": 40})
    (tmp_path / "net.prototxt").write_text(extra_layer + textwrap.dedent(f"""\
        layer {{ name: "data" type: "Python" top: "data_rgb" top: "label"
          python_param {{ module: "mfuse.layers.video_data" layer: "VideoDataLayer" param_str: '{param_str}' }} }}
        layer {{ name: "fc" type: "InnerProduct" bottom: "data_rgb" top: "fc"
          inner_product_param {{ num_output: 8 weight_filler {{ type: "xavier" }} }} }}
        layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }}
        """))
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\nmomentum: 0.9\nmax_iter: {max_iter}\n'
                      f'snapshot: 3\nsnapshot_prefix: "runs/snap"\ndisplay: 1\nrandom_seed: 2\niter_size: 2\n')
    return solver


def blobs(caffemodel):
    net = caffe_pb2.NetParameter()
    net.ParseFromString(caffemodel.read_bytes())
    return {layer.name: [np.array(blob.data) for blob in layer.blobs] for layer in net.layer if layer.blobs}


def test_cpu_ranks_log_and_snapshot_on_rank_zero(tmp_path, tiny_data_root):
    solver = write_run(tmp_path, tiny_data_root)
    notices = []
    result = run_training(solver, cwd=tmp_path, progress=False, announce=notices.append, engine="ranks",
                          cpu_ranks=2, batch="split", rank_weights=tmp_path / "ranks", timing=True)
    assert result.final == tmp_path / "runs/snap_iter_4.caffemodel" and result.final.exists()
    assert (result.plan.ranks, result.plan.batch_size, result.plan.iter_size) == (2, 4, 1)
    assert notices == [f"train: solver.prototxt on 2 processes (CPU (no NCCL)), 2 GPUs x 4 per pass x 1 pass = "
                       f"batch 8; log {tmp_path / 'runs/train.log'}"]
    rank0, rank1 = (tmp_path / "runs/train.log").read_text(), (tmp_path / "runs/train.rank1.log").read_text()
    assert "Iteration 3" in rank0 and "Snapshotting to binary proto file" in rank0
    assert "Iteration" not in rank1 and "Snapshotting" not in rank1
    assert [event[0] for event in result.timeline] == [0, 1, 2, 3, 4]
    assert all(event[2] is not None and event[2] >= 0 for event in result.timeline)
    assert "iter_size: 1" in (tmp_path / "runs/train.solver.prototxt").read_text()
    final, saved = blobs(result.final), blobs(tmp_path / "ranks/rank0.caffemodel")
    assert all(np.array_equal(a, b) for name in final for a, b in zip(final[name], saved[name]))
    assert (tmp_path / "ranks/rank1.caffemodel").exists()


def test_resumed_ranks_reach_the_uninterrupted_weights(tmp_path, tiny_data_root):
    # Rank 0's weights (the snapshots) after 3 + 3 iterations equal those after 6 (without NCCL the other ranks
    # train on their own, so only rank 0's trajectory is the run's).
    kwargs = dict(progress=False, announce=lambda _: None, engine="ranks", cpu_ranks=2)
    whole_dir, part_dir = tmp_path / "whole", tmp_path / "part"
    whole_dir.mkdir()
    part_dir.mkdir()
    whole = run_training(write_run(whole_dir, tiny_data_root, max_iter=6), cwd=whole_dir, **kwargs).final
    write_run(part_dir, tiny_data_root, max_iter=3)
    run_training(part_dir / "solver.prototxt", cwd=part_dir, **kwargs)
    state = part_dir / "runs/snap_iter_3.solverstate"
    resumed = run_training(write_run(part_dir, tiny_data_root, max_iter=6), cwd=part_dir, snapshot=state, **kwargs)
    assert resumed.final == part_dir / "runs/snap_iter_6.caffemodel"
    a, b = blobs(whole), blobs(resumed.final)
    assert all(np.array_equal(x, y) for name in a for x, y in zip(a[name], b[name]))
    third = blobs(part_dir / "runs/snap_iter_3.caffemodel")
    assert not all(np.array_equal(x, y) for name in a for x, y in zip(a[name], third[name]))


FAILING_LAYER = textwrap.dedent("""\
    import time
    import caffe

    class FailOnRank1(caffe.Layer):
        def setup(self, bottom, top):
            if caffe.solver_rank() == 1:
                raise ValueError("rank 1 cannot read its share")

        def reshape(self, bottom, top):
            top[0].reshape(1)

        def forward(self, bottom, top):
            time.sleep(0.2)   # rank 0 is still training when rank 1 fails

        def backward(self, top, propagate_down, bottom):
            pass
    """)


def test_a_failing_rank_stops_the_run_with_its_message(tmp_path, tiny_data_root, monkeypatch):
    (tmp_path / "failing_layer.py").write_text(FAILING_LAYER)
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{':'.join(sys.path)}")
    solver = write_run(tmp_path, tiny_data_root, max_iter=10000, extra_layer=(
        'layer { name: "probe" type: "Python" top: "probe" python_param { module: "failing_layer" '
        'layer: "FailOnRank1" } }\n'))
    started = time.monotonic()
    with pytest.raises(TrainingError, match=r"rank 1 failed \(exit 1\): Python layer 'probe' \(failing_layer."
                                            r"FailOnRank1\) failed in setup: ValueError: rank 1 cannot read its share "
                                            r"\[log: .*train.rank1.log\]; the other ranks were stopped"):
        run_training(solver, cwd=tmp_path, progress=False, announce=lambda _: None, engine="ranks", cpu_ranks=2)
    assert time.monotonic() - started < 120   # 10000 iterations of 0.2 s on rank 0: it was stopped
    assert "Traceback" in (tmp_path / "runs/train.rank1.log").read_text()
    assert not (tmp_path / "runs/snap_iter_10000.caffemodel").exists()


def two_gpus_with_nccl() -> bool:
    try:
        return cuda_device_count() >= 2 and caffe.has_nccl()
    except GpuSelectionError:
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not two_gpus_with_nccl(), reason="needs two CUDA GPUs and a fork built with NCCL")
def test_two_gpu_ranks_end_bit_identical(tmp_path, tiny_data_root):
    solver = write_run(tmp_path, tiny_data_root, max_iter=20)
    result = run_training(solver, cwd=tmp_path, progress=False, gpus=[0, 1], batch="split",
                          rank_weights=tmp_path / "ranks", announce=lambda _: None)
    rank0, rank1 = blobs(tmp_path / "ranks/rank0.caffemodel"), blobs(tmp_path / "ranks/rank1.caffemodel")
    assert all(np.array_equal(a, b) for name in rank0 for a, b in zip(rank0[name], rank1[name]))
    final = blobs(result.final)
    assert all(np.array_equal(a, b) for name in final for a, b in zip(final[name], rank0[name]))
