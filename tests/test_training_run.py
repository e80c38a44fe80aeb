"""caffe train through mfuse.training: final snapshots, skipping, and exact resume from a .solverstate."""
import json
import textwrap

import numpy as np
import pytest
from caffe.proto import caffe_pb2

from mfuse.training import TrainingError, read_solver, solverstate_iteration, train


def write_net(path, data_root):
    param_str = json.dumps({"source": str(data_root), "modalities": ["rgb"], "batch_size": 4, "crop_size": 40,
                            "seed": 3})
    path.write_text(textwrap.dedent(f"""\
        layer {{ name: "data" type: "Python" top: "data_rgb" top: "label"
          python_param {{ module: "mfuse.layers.video_data" layer: "VideoDataLayer" param_str: '{param_str}' }} }}
        layer {{ name: "conv" type: "Convolution" bottom: "data_rgb" top: "conv"
          convolution_param {{ num_output: 4 kernel_size: 5 stride: 3 weight_filler {{ type: "xavier" }} }} }}
        layer {{ name: "drop" type: "Dropout" bottom: "conv" top: "conv" dropout_param {{ dropout_ratio: 0.5 }} }}
        layer {{ name: "fc" type: "InnerProduct" bottom: "conv" top: "fc"
          inner_product_param {{ num_output: 8 weight_filler {{ type: "xavier" }} }} }}
        layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }}
        """))


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
    net.ParseFromString(caffemodel.read_bytes())
    return {layer.name: [np.array(blob.data) for blob in layer.blobs] for layer in net.layer if layer.blobs}


def assert_same_weights(a, b, equal=True):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    same = all(np.array_equal(x, y) for name in wa for x, y in zip(wa[name], wb[name]))
    assert same == equal


@pytest.fixture
def runs(tmp_path, tiny_data_root):
    net = tmp_path / "net.prototxt"
    write_net(net, tiny_data_root)
    return tmp_path, net


def test_resumed_run_reaches_the_uninterrupted_weights(runs):
    tmp_path, net = runs
    whole = train(write_solver(tmp_path / "whole.prototxt", net, tmp_path / "whole/snap", 6),
                  tmp_path / "whole.log", cwd=tmp_path, progress=False)
    # Interrupted after 3 iterations, then resumed.
    first = write_solver(tmp_path / "first.prototxt", net, tmp_path / "part/snap", 3)
    train(first, tmp_path / "first.log", cwd=tmp_path, progress=False)
    state = tmp_path / "part/snap_iter_3.solverstate"
    assert solverstate_iteration(state) == 3
    resumed = train(write_solver(tmp_path / "rest.prototxt", net, tmp_path / "part/snap", 6),
                    tmp_path / "rest.log", cwd=tmp_path, snapshot=state, progress=False)
    assert resumed == tmp_path / "part/snap_iter_6.caffemodel"
    assert_same_weights(whole, resumed)
    # The check can fail: the weights after 3 iterations differ from the final ones.
    assert_same_weights(whole, tmp_path / "part/snap_iter_3.caffemodel", equal=False)


def test_finished_run_is_skipped_and_failures_show_the_log(runs):
    tmp_path, net = runs
    solver = write_solver(tmp_path / "s.prototxt", net, tmp_path / "s/snap", 2)
    final = train(solver, tmp_path / "s.log", cwd=tmp_path, progress=False)
    stamp = final.stat().st_mtime_ns
    assert train(solver, tmp_path / "s2.log", cwd=tmp_path, progress=False) == final
    assert final.stat().st_mtime_ns == stamp and not (tmp_path / "s2.log").exists()
    assert read_solver(solver).iter_size == 2

    broken = tmp_path / "broken.prototxt"
    broken.write_text(net.read_text().replace('bottom: "fc" bottom: "label"', 'bottom: "nothing" bottom: "label"'))
    assert broken.read_text() != net.read_text()
    with pytest.raises(TrainingError, match="broken.log"):
        train(write_solver(tmp_path / "b.prototxt", broken, tmp_path / "b/snap", 2), tmp_path / "broken.log",
              cwd=tmp_path, progress=False)
