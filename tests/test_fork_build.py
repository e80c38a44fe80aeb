"""The Caffe fork built by tools/setup.sh: pycaffe, the caffe binary, training, Python layers."""
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import caffe
import numpy as np
from caffe import layers as L
from caffe import params as P

CAFFE_BIN = Path(sys.prefix) / "bin" / "caffe"


def run_caffe(args, cwd, env_pythonpath=None):
    env = None
    if env_pythonpath:
        import os
        env = dict(os.environ, PYTHONPATH=str(env_pythonpath))
    return subprocess.run([str(CAFFE_BIN), *args], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=300)


def test_import_caffe_comes_from_the_fork():
    assert "mfuse" in caffe.__file__ or ".cache" in caffe.__file__, caffe.__file__
    types = caffe.layer_type_list()
    assert "Python" in types and "Convolution" in types


def test_caffe_binary_version(tmp_path):
    result = run_caffe(["--version"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "caffe version 1.0.0" in result.stdout + result.stderr


def tiny_classifier(batch=8, classes=3):
    n = caffe.NetSpec()
    n.data, n.label = L.DummyData(
        shape=[dict(dim=[batch, 2, 6, 6]), dict(dim=[batch])],
        data_filler=[dict(type="gaussian", std=1.0), dict(type="constant", value=1)], ntop=2)
    n.conv = L.Convolution(n.data, num_output=4, kernel_size=3, weight_filler=dict(type="xavier"))
    n.relu = L.ReLU(n.conv, in_place=True)
    n.fc = L.InnerProduct(n.relu, num_output=classes, weight_filler=dict(type="xavier"))
    n.loss = L.SoftmaxWithLoss(n.fc, n.label)
    return n.to_proto()


def test_netspec_net_forward_backward_matches_finite_differences(tmp_path):
    proto = tmp_path / "net.prototxt"
    proto.write_text(str(tiny_classifier()))
    net = caffe.Net(str(proto), caffe.TRAIN)
    net.forward()
    net.backward()
    bias = net.params["fc"][1]
    analytic = bias.diff.copy()
    assert np.all(np.isfinite(analytic)) and np.abs(analytic).sum() > 0
    # DummyData refills gaussian data each forward: freeze the batch by re-running layers after 'data'.
    step, numeric = 1e-2, np.zeros_like(analytic)
    for k in range(bias.data.size):
        losses = []
        for sign in (1, -1):
            bias.data.flat[k] += sign * step
            losses.append(float(net.forward(start="conv")["loss"]))
            bias.data.flat[k] -= sign * step
        numeric.flat[k] = (losses[0] - losses[1]) / (2 * step)
    np.testing.assert_allclose(analytic, numeric, rtol=2e-2, atol=1e-4)


def write_solver(tmp_path, net_path, max_iter=20):
    solver = tmp_path / "solver.prototxt"
    solver.write_text(textwrap.dedent(f"""\
        net: "{net_path}"
        base_lr: 0.1
        lr_policy: "fixed"
        momentum: 0.9
        display: 1
        max_iter: {max_iter}
        snapshot_prefix: "{tmp_path}/snap"
        solver_mode: CPU
        random_seed: 1
        """))
    return solver


def losses_from_log(log):
    return [float(v) for v in re.findall(r"Iteration \d+ .*loss = ([0-9.eE+-]+)", log)]


def test_caffe_train_on_dummy_data_lowers_the_loss(tmp_path):
    net = tmp_path / "train.prototxt"
    net.write_text(str(tiny_classifier()))
    result = run_caffe(["train", "-solver", str(write_solver(tmp_path, net))], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    losses = losses_from_log(result.stderr)
    assert len(losses) >= 20, result.stderr[-2000:]
    assert losses[-1] < 0.5 * losses[0], losses
    assert (tmp_path / "snap_iter_20.caffemodel").exists()


def dropout_masks(tmp_path, rank, count, iterations=3):
    """The dropout masks (kept units) of ``iterations`` solver steps as rank ``rank`` of ``count`` solvers."""
    n = caffe.NetSpec()
    n.data, n.label = L.DummyData(shape=[dict(dim=[4, 64]), dict(dim=[4])],
                                  data_filler=[dict(type="constant", value=1), dict(type="constant", value=0)], ntop=2)
    n.drop = L.Dropout(n.data, dropout_ratio=0.5)
    n.fc = L.InnerProduct(n.drop, num_output=2, weight_filler=dict(type="constant", value=0.1))
    n.loss = L.SoftmaxWithLoss(n.fc, n.label)
    folder = tmp_path / f"rank{rank}of{count}"
    folder.mkdir(exist_ok=True)
    (folder / "net.prototxt").write_text(str(n.to_proto()))
    caffe.set_solver_count(count)
    caffe.set_solver_rank(rank)
    try:
        solver = caffe.SGDSolver(str(write_solver(folder, folder / "net.prototxt", max_iter=iterations)))
        masks = []
        for _ in range(iterations):
            solver.step(1)
            masks.append(solver.net.blobs["drop"].data != 0)
        return np.array(masks)
    finally:
        caffe.set_solver_count(1)
        caffe.set_solver_rank(0)


def test_each_rank_draws_its_own_dropout_masks_and_reruns_repeat_them(tmp_path):
    # Patch 0008 reseeds Caffe's RNG every iteration (exact resume); with random_seed + iter * count + rank each
    # rank of a multi-GPU run keeps its own stream, as upstream's per-rank seed in Solver::Init meant.
    caffe.set_mode_cpu()
    single = dropout_masks(tmp_path, 0, 1)
    np.testing.assert_array_equal(single, dropout_masks(tmp_path, 0, 1))
    rank0, rank1 = dropout_masks(tmp_path, 0, 2), dropout_masks(tmp_path, 1, 2)
    assert 0.3 < rank0.mean() < 0.7 and 0.3 < rank1.mean() < 0.7
    for step in range(len(rank0)):
        assert not np.array_equal(rank0[step], rank1[step]), step
    assert not any(np.array_equal(a, b) for a in rank0 for b in rank1)


PY_LAYER = '''
import caffe


class TimesThree(caffe.Layer):
    """top = 3 * bottom, with its gradient; checks the Python layer path end to end."""

    def setup(self, bottom, top):
        if len(bottom) != 1:
            raise ValueError("TimesThree takes one bottom")

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = 3 * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = 3 * top[0].diff
'''


def python_layer_net(batch=4):
    n = caffe.NetSpec()
    n.data, n.label = L.DummyData(
        shape=[dict(dim=[batch, 5]), dict(dim=[batch])],
        data_filler=[dict(type="gaussian"), dict(type="constant", value=0)], ntop=2)
    n.fc = L.InnerProduct(n.data, num_output=2, weight_filler=dict(type="xavier"))
    n.tripled = L.Python(n.fc, module="mfuse_test_layer", layer="TimesThree")
    n.loss = L.SoftmaxWithLoss(n.tripled, n.label)
    return n.to_proto()


def test_python_layer_runs_in_pycaffe_and_in_the_binary(tmp_path, monkeypatch):
    (tmp_path / "mfuse_test_layer.py").write_text(PY_LAYER)
    monkeypatch.syspath_prepend(str(tmp_path))
    net_path = tmp_path / "py.prototxt"
    net_path.write_text(str(python_layer_net()))

    net = caffe.Net(str(net_path), caffe.TRAIN)
    net.forward()
    np.testing.assert_allclose(net.blobs["tripled"].data, 3 * net.blobs["fc"].data, rtol=1e-6)
    net.backward()
    np.testing.assert_allclose(net.blobs["fc"].diff, 3 * net.blobs["tripled"].diff, rtol=1e-6)

    result = run_caffe(["train", "-solver", str(write_solver(tmp_path, net_path, max_iter=5))], tmp_path,
                       env_pythonpath=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Creating layer tripled" in result.stderr
    assert len(losses_from_log(result.stderr)) >= 5
