"""Solvers: the final snapshot, the nets a solver reads, TRAIN data layers, and how a batch spreads over GPUs."""
import json
import textwrap
from pathlib import Path

import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from mfuse.training.solver import (BATCH_PER_GPU, BATCH_SPLIT, BatchPlan, in_phase, layer_batch, load_solver,
                                   plan_batch, read_solver, solver_nets, train_data_layers, write_rank_solver)

ROOT = Path(__file__).resolve().parents[1]
TINY_FUSION = ROOT / "prototxt/tiny/mfuse_conv5_solver.prototxt"
VGG_FUSION = ROOT / "prototxt/vgg19/mfuse_conv5_solver.prototxt"


def layer(text: str) -> caffe_pb2.LayerParameter:
    return text_format.Merge(text, caffe_pb2.LayerParameter())


def test_read_solver_and_final_snapshot(tmp_path):
    info = read_solver(VGG_FUSION)
    assert (info.max_iter, info.iter_size, info.snapshot, info.snapshot_after_train) == (60000, 4, 20000, True)
    assert info.final_caffemodel(tmp_path) == tmp_path / "runs/vgg19/mfuse_conv5/snap_iter_60000.caffemodel"
    assert info.writes_final
    for extra, writes in (("snapshot_after_train: false\n", False), ("snapshot_after_train: false\nsnapshot: 5\n", True),
                          ("snapshot_after_train: false\nsnapshot: 3\n", False)):
        solver = tmp_path / "s.prototxt"
        solver.write_text(f'max_iter: 10\nsnapshot_prefix: "x"\n{extra}')
        assert read_solver(solver).writes_final == writes
    bad = tmp_path / "bad.prototxt"
    bad.write_text("max_iter: 10\n")
    with pytest.raises(ValueError, match="bad.prototxt: a solver needs max_iter and snapshot_prefix"):
        read_solver(bad)
    bad.write_text("max_iter: ten\n")
    with pytest.raises(ValueError, match="bad.prototxt: not a valid SolverParameter prototxt"):
        load_solver(bad)
    with pytest.raises(ValueError, match="missing.prototxt: cannot read it"):
        load_solver(tmp_path / "missing.prototxt")


def test_phase_rules():
    assert in_phase(layer('name: "a" include { phase: TRAIN }'))
    assert not in_phase(layer('name: "a" include { phase: TEST }'))
    assert in_phase(layer('name: "a"'))
    assert not in_phase(layer('name: "a" exclude { phase: TRAIN }'))
    assert in_phase(layer('name: "a" include { phase: TEST }'), caffe_pb2.TEST)
    assert not in_phase(layer('name: "a" include { phase: TRAIN stage: "x" }'))


def test_layer_batch_of_each_data_layer():
    video = layer('name: "d" type: "Python" python_param { module: "mfuse.layers.video_data" '
                  'layer: "VideoDataLayer" param_str: \'{"source": "x", "modalities": ["rgb"], "batch_size": 12}\' }')
    assert layer_batch(video) == 12
    assert layer_batch(layer('name: "d" type: "Data" data_param { batch_size: 7 }')) == 7
    assert layer_batch(layer('name: "d" type: "DummyData" dummy_data_param { shape { dim: 5 dim: 3 } }')) == 5
    assert layer_batch(layer('name: "c" type: "Convolution"')) is None
    other_python = layer('name: "d" type: "Python" python_param { module: "elsewhere" layer: "L" }')
    assert layer_batch(other_python) is None


def test_solver_nets_and_train_data_layer():
    solver = load_solver(TINY_FUSION)
    nets = solver_nets(solver, ROOT)
    assert list(nets) == ["train"]
    (data,) = train_data_layers(nets["train"])
    assert json.loads(data.python_param.param_str)["subset"] == "train"
    with pytest.raises(ValueError, match="solver net: .*missing.prototxt: cannot read it"):
        solver_nets(text_format.Merge('net: "missing.prototxt"', caffe_pb2.SolverParameter()), ROOT)


def test_plans():
    assert plan_batch(VGG_FUSION, 1, BATCH_SPLIT, ROOT) == BatchPlan(1, 32, 4)
    assert plan_batch(VGG_FUSION, 4, BATCH_PER_GPU, ROOT) == BatchPlan(4, 32, 4)
    assert plan_batch(VGG_FUSION, 4, BATCH_PER_GPU, ROOT).total == 512
    # The paper's 128 on 2, 4 and 8 GPUs: iter_size shrinks first, then the batch per pass.
    assert plan_batch(VGG_FUSION, 2, BATCH_SPLIT, ROOT) == BatchPlan(2, 32, 2)
    assert plan_batch(VGG_FUSION, 4, BATCH_SPLIT, ROOT) == BatchPlan(4, 32, 1)
    assert plan_batch(VGG_FUSION, 8, BATCH_SPLIT, ROOT) == BatchPlan(8, 16, 1)
    assert plan_batch(TINY_FUSION, 2, BATCH_SPLIT, ROOT) == BatchPlan(2, 16, 1)
    assert plan_batch(VGG_FUSION, 3, BATCH_PER_GPU, ROOT) == BatchPlan(3, 32, 4)
    assert plan_batch(VGG_FUSION, 2, BATCH_SPLIT, ROOT).describe() == "2 GPUs x 32 per pass x 2 passes = batch 128"
    assert BatchPlan(1, 32, 1).describe() == "32 per pass x 1 pass = batch 32"
    with pytest.raises(ValueError, match=r"batch 32 \(data layer 'data'\) x iter_size 4 = 128 cannot be split over "
                                         r"3 GPUs: 128 is not a multiple of 3"):
        plan_batch(VGG_FUSION, 3, BATCH_SPLIT, ROOT)
    with pytest.raises(ValueError, match="batch mode must be one of"):
        plan_batch(VGG_FUSION, 2, "half", ROOT)


def write_pair(tmp_path, data_layer: str, iter_size: int = 1, extra: str = "") -> Path:
    (tmp_path / "net.prototxt").write_text(data_layer + textwrap.dedent("""
        layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 2 } }
        """))
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'net: "net.prototxt"\nmax_iter: 4\nsnapshot_prefix: "s/snap"\niter_size: {iter_size}\n{extra}')
    return solver


def test_data_layer_choices_and_ranks_are_checked(tmp_path):
    two = write_pair(tmp_path, 'layer { name: "a" type: "Data" top: "data" data_param { batch_size: 4 } }\n'
                               'layer { name: "b" type: "Data" top: "x" data_param { batch_size: 4 } }\n')
    with pytest.raises(ValueError, match=r"exactly one data layer .* found 2 \['a', 'b'\]"):
        plan_batch(two, 2, BATCH_PER_GPU, tmp_path)
    pinned = write_pair(tmp_path, 'layer { name: "v" type: "Python" top: "data" python_param { module: '
                                  '"mfuse.layers.video_data" layer: "VideoDataLayer" param_str: \'{"source": "x", '
                                  '"modalities": ["rgb"], "num_ranks": 4}\' } }\n')
    with pytest.raises(ValueError, match="data layer 'v' sets num_ranks 4 but the run has 2 rank"):
        plan_batch(pinned, 2, BATCH_PER_GPU, tmp_path)
    assert plan_batch(pinned, 4, BATCH_PER_GPU, tmp_path) == BatchPlan(4, 32, 1)


def test_rank_solver_divides_iter_size(tmp_path):
    solver = write_pair(tmp_path, 'layer { name: "d" type: "Data" top: "data" data_param { batch_size: 8 } }\n',
                        iter_size=4, extra="random_seed: 3\n")
    out = write_rank_solver(solver, plan_batch(solver, 2, BATCH_SPLIT, tmp_path), tmp_path / "r/rank.prototxt",
                            tmp_path)
    written = load_solver(out)
    assert (written.iter_size, written.net, written.random_seed, written.max_iter) == (2, "net.prototxt", 3, 4)
    assert out.read_text().startswith("# ")
    assert written.HasField("layer_wise_reduce") and not written.layer_wise_reduce  # one all-reduce per iteration


def test_rank_solver_keeps_a_layer_wise_reduce_the_solver_sets(tmp_path):
    solver = write_pair(tmp_path, 'layer { name: "d" type: "Data" top: "data" data_param { batch_size: 8 } }\n',
                        extra="layer_wise_reduce: true\n")
    out = write_rank_solver(solver, plan_batch(solver, 2, BATCH_PER_GPU, tmp_path), tmp_path / "rank.prototxt",
                            tmp_path)
    assert load_solver(out).layer_wise_reduce


def test_rank_solver_divides_the_batch_of_the_train_layer_only(tmp_path):
    video = ('layer {{ name: "v" type: "Python" top: "data" include {{ phase: {phase} }} python_param {{ module: '
             '"mfuse.layers.video_data" layer: "VideoDataLayer" param_str: \'{{"source": "x", "modalities": ["rgb"], '
             '"batch_size": 6}}\' }} }}\n')
    solver = write_pair(tmp_path, video.format(phase="TRAIN") + video.format(phase="TEST"))
    plan = plan_batch(solver, 3, BATCH_SPLIT, tmp_path)
    assert plan == BatchPlan(3, 2, 1)
    written = load_solver(write_rank_solver(solver, plan, tmp_path / "rank.prototxt", tmp_path))
    assert not written.HasField("net") and written.HasField("net_param")
    train_layer, test_layer = written.net_param.layer[:2]
    assert json.loads(train_layer.python_param.param_str)["batch_size"] == 2
    assert json.loads(test_layer.python_param.param_str)["batch_size"] == 6
    assert plan_batch(tmp_path / "rank.prototxt", 3, BATCH_PER_GPU, tmp_path) == plan
