"""mfuse.nets.solvers: the paper's schedules as commented solver prototxt."""
import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from mfuse.nets import solvers


def _parse(text):
    return text_format.Merge(text, caffe_pb2.SolverParameter())


def test_fusion_schedule_is_the_papers():
    solver = solvers.make_solver("prototxt/x_train_val.prototxt", solvers.FUSION, 64, "runs/x/snap")
    assert solver.base_lr == pytest.approx(1e-3) and solver.lr_policy == "multistep"
    assert list(solver.stepvalue) == [20000, 40000] and solver.gamma == pytest.approx(0.1)
    assert solver.iter_size * 64 == 128
    assert solver.momentum == pytest.approx(0.9) and solver.weight_decay == pytest.approx(5e-4)
    assert solver.snapshot_prefix == "runs/x/snap" and solver.solver_mode == caffe_pb2.SolverParameter.CPU


@pytest.mark.parametrize("schedule, lrs, steps, stop", [
    (solvers.SPATIAL, 1e-2, [14000], 20000), (solvers.TEMPORAL, 1e-2, [50000, 70000], 80000)])
def test_stream_schedules_follow_simonyan_and_zisserman(schedule, lrs, steps, stop):
    solver = solvers.make_solver("n.prototxt", schedule, 32, "runs/s/snap")
    assert solver.base_lr == pytest.approx(lrs) and list(solver.stepvalue) == steps and solver.max_iter == stop
    assert solver.iter_size * 32 == 256


def test_batch_must_divide_the_schedules_batch():
    with pytest.raises(ValueError, match="divide"):
        solvers.make_solver("n.prototxt", solvers.FUSION, 48, "runs/s/snap")


def test_text_round_trips_and_cites_the_paper():
    solver = solvers.make_solver("prototxt/mfuse_conv5_train_val.prototxt", solvers.FUSION, 64, "runs/m/snap")
    text = solvers.solver_text(solver, solvers.FUSION, 64, header=("hello",))
    assert _parse(text) == solver
    lines = text.splitlines()
    assert lines[0] == "# hello" and any("Sec. 5.2" in line for line in lines if line.startswith("#"))
    assert next(line for line in lines if not line.startswith("#")).startswith("net: ")
    assert "iter_size: 2  # 64 per pass x 2 passes = batch 128" in lines
    assert sum("# x gamma" in line for line in lines) == 1


def test_tiny_schedules_are_short():
    for schedule in (solvers.TINY_SPATIAL, solvers.TINY_TEMPORAL, solvers.TINY_FUSION):
        assert schedule.max_iter <= 1000 and all(step < schedule.max_iter for step in schedule.steps)
