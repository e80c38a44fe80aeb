"""The fork's C++ FlowAmplify layer (through pycaffe) and its Python twin ``mfuse.layers.flow_amplify``."""
import json
import os
import subprocess
import sys
import textwrap

import caffe
import cv2
import numpy as np
import pytest
from caffe import layers as L
from caffe import params as P

from mfuse.layers.flow_amplify_ops import FlowAmplifyParams, flow_amplify_backward, flow_amplify_forward

CV2_FLAGS = {"AREA": cv2.INTER_AREA, "BILINEAR": cv2.INTER_LINEAR, "NEAREST": cv2.INTER_NEAREST}
# float32 results against float64 ones (or cv2's float32 ones), relative to the largest value compared.
FLOAT_RTOL = 1e-6
RESIZE_RTOL = 3e-6  # against cv2.resize; see test_layers_flow_amplify_ops.py


def assert_close(actual, expected, rtol=FLOAT_RTOL, what=""):
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale, err_msg=what)


def write_net(tmp_path, feat_shape, source_shape, params, python=False, in_place=False, name="amp"):
    """A net feat, source -> FlowAmplify (C++ or the Python twin) -> top, with force_backward."""
    net = caffe.NetSpec()
    net.feat = L.Input(shape=dict(dim=list(feat_shape)))
    net.source = L.Input(shape=dict(dim=list(source_shape)))
    if python:
        net.top = L.Python(net.feat, net.source, name=name,
                           python_param=dict(module="mfuse.layers.flow_amplify", layer="FlowAmplify",
                                             param_str=json.dumps(params)))
    else:
        cpp = dict(params)
        for key in ("resize", "normalize"):
            if key in cpp:
                cpp[key] = getattr(P.FlowAmplify, cpp[key])
        net.top = L.FlowAmplify(net.feat, net.source, name=name, flow_amplify_param=cpp)
    proto = net.to_proto()
    proto.force_backward = True
    if in_place:  # NetSpec's in_place would rename both bottoms
        proto.layer[-1].top[0] = "feat"
    path = tmp_path / f"{name}_{'py' if python else 'cpp'}_{len(list(tmp_path.iterdir()))}.prototxt"
    path.write_text(str(proto))
    return path


def run_net(path, feat, source, top_diff):
    """Forward and backward once; returns (top, feat_diff, source_diff) as float32 arrays."""
    net = caffe.Net(str(path), caffe.TEST)
    net.blobs["feat"].data[...] = feat
    net.blobs["source"].data[...] = source
    top_name = net.outputs[0]
    net.forward()
    top = net.blobs[top_name].data.copy()
    net.blobs[top_name].diff[...] = top_diff
    net.backward()
    return top, net.blobs["feat"].diff.copy(), net.blobs["source"].diff.copy()


def random_inputs(seed, feat_shape, source_shape, low=0.0, high=255.0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=feat_shape).astype(np.float32),
            rng.uniform(low, high, size=source_shape).astype(np.float32),
            rng.normal(size=feat_shape).astype(np.float32))


def size_pairs(count, seed):
    fixed = [(224, 224, 13, 13), (224, 224, 14, 14), (256, 340, 13, 13), (7, 7, 14, 14), (3, 5, 13, 4),
             (1, 1, 13, 13), (1, 40, 32, 39), (56, 8, 58, 5), (14, 14, 14, 14)]
    rng = np.random.default_rng(seed)
    return fixed + [tuple(int(v) for v in rng.integers(1, 64, 4)) for _ in range(count)]


def test_layer_is_registered():
    assert "FlowAmplify" in caffe.layer_type_list()


@pytest.mark.parametrize("method", ["AREA", "BILINEAR", "NEAREST"])
def test_cpp_resize_matches_cv2(tmp_path, method):
    """offset 0, scale 1, features of ones: the top is the resized magnitude."""
    for src_h, src_w, dst_h, dst_w in size_pairs(22, seed=7):
        _, magnitude, _ = random_inputs(src_h * 1000 + src_w, (1, 1, dst_h, dst_w), (1, 1, src_h, src_w))
        path = write_net(tmp_path, (1, 1, dst_h, dst_w), magnitude.shape, {"offset": 0.0, "resize": method})
        top, _, _ = run_net(path, np.ones((1, 1, dst_h, dst_w), np.float32), magnitude,
                            np.zeros((1, 1, dst_h, dst_w), np.float32))
        expected = cv2.resize(magnitude[0, 0], (dst_w, dst_h), interpolation=CV2_FLAGS[method])
        assert_close(top[0, 0], expected.reshape(dst_h, dst_w), RESIZE_RTOL,
                     f"{method} {(src_h, src_w)} -> {(dst_h, dst_w)}")


CONFIGS = [
    {},
    {"offset": 0.0, "scale": 0.02, "resize": "BILINEAR", "clip_max": 150.0},
    {"resize": "NEAREST", "normalize": "MEAN"},
    {"offset": 2.0, "scale": -0.01, "allow_negative_scale": True, "resize": "AREA", "normalize": "MEAN",
     "clip_max": 100.0},
]
SHAPES = [((2, 3, 13, 13), (2, 1, 224, 224)), ((2, 4, 14, 14), (2, 2, 20, 30)), ((3, 2, 6, 5), (3, 1, 4, 3))]


@pytest.mark.parametrize("params", CONFIGS)
@pytest.mark.parametrize("feat_shape, source_shape", SHAPES)
def test_cpp_and_twin_match_float64_ops(tmp_path, params, feat_shape, source_shape):
    low = -100.0 if source_shape[1] == 2 else 0.0
    feat, source, top_diff = random_inputs(1, feat_shape, source_shape, low=low)
    ops = FlowAmplifyParams(**params)
    expected_top = flow_amplify_forward(feat, source, ops)
    expected_feat_diff, expected_source_diff = flow_amplify_backward(top_diff, feat, source, ops)
    results = {}
    for python in (False, True):
        path = write_net(tmp_path, feat_shape, source_shape, params, python=python)
        results[python] = run_net(path, feat, source, top_diff)
        top, feat_diff, source_diff = results[python]
        kind = "twin" if python else "C++"
        assert_close(top, expected_top, what=f"{kind} top")
        assert_close(feat_diff, expected_feat_diff, what=f"{kind} feat diff")
        assert_close(source_diff, expected_source_diff, what=f"{kind} source diff")
    for cpp, twin, what in zip(results[False], results[True], ("top", "feat diff", "source diff")):
        assert_close(twin, cpp, what=f"twin vs C++ {what}")


@pytest.mark.parametrize("python", [False, True])
def test_in_place_matches_out_of_place(tmp_path, python):
    params = {"resize": "BILINEAR", "scale": 0.1}
    feat, source, top_diff = random_inputs(2, (2, 3, 7, 7), (2, 2, 9, 11), low=-20.0, high=20.0)
    out_of_place = run_net(write_net(tmp_path, feat.shape, source.shape, params, python=python),
                           feat, source, top_diff)
    in_place = run_net(write_net(tmp_path, feat.shape, source.shape, params, python=python, in_place=True),
                       feat, source, top_diff)
    for a, b in zip(in_place, out_of_place):
        assert_close(a, b)


@pytest.mark.parametrize("python", [False, True])
def test_offset_one_scale_zero_is_identity(tmp_path, python):
    feat, source, top_diff = random_inputs(3, (2, 3, 13, 13), (2, 1, 224, 224))
    top, feat_diff, _ = run_net(write_net(tmp_path, feat.shape, source.shape, {"scale": 0.0}, python=python),
                                feat, source, top_diff)
    np.testing.assert_array_equal(top, feat)
    np.testing.assert_array_equal(feat_diff, top_diff)


BAD_INPUTS = [
    ((2, 3, 4, 5), (3, 1, 7, 9), {}, "features and gate source must have the same N"),
    ((2, 3, 4, 5), (2, 3, 7, 9), {}, "the gate source must have G = 1 (magnitude) or G = 2 (x/y flow) channels"),
    ((2, 3, 4, 5), (2, 1, 0, 9), {}, "the gate source must not be zero-sized"),
    ((2, 3, 0, 5), (2, 1, 7, 9), {}, "features must not be zero-sized"),
    ((2, 3, 4, 5), (2, 1, 7, 9), {"scale": -1.0}, "scale must be >= 0 unless allow_negative_scale is set"),
]


@pytest.mark.parametrize("feat_shape, source_shape, params, rule", BAD_INPUTS)
def test_cpp_bad_input_aborts_naming_layer_rule_and_shapes(tmp_path, feat_shape, source_shape, params, rule):
    path = write_net(tmp_path, feat_shape, source_shape, params, name="amp1")
    script = "import sys, caffe; caffe.Net(sys.argv[1], caffe.TEST)"
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True,
                            env=dict(os.environ, GLOG_minloglevel="0"), timeout=60)
    assert result.returncode != 0
    shapes = (f"(features {' '.join(map(str, feat_shape))} ({int(np.prod(feat_shape))}), "
              f"gate source {' '.join(map(str, source_shape))} ({int(np.prod(source_shape))}))")
    assert f"amp1: {rule}" in result.stderr, result.stderr[-2000:]
    assert shapes in result.stderr, result.stderr[-2000:]


@pytest.mark.parametrize("feat_shape, source_shape, params, rule", BAD_INPUTS)
def test_twin_bad_input_raises(tmp_path, feat_shape, source_shape, params, rule):
    path = write_net(tmp_path, feat_shape, source_shape, params, python=True, name="amp1")
    with pytest.raises(ValueError, match="FlowAmplify \\(Python\\): " + rule.replace("(", "\\(").replace(")", "\\)")):
        caffe.Net(str(path), caffe.TEST)


def gpu_available():
    """Whether this pycaffe can run a layer on GPU 0 (probed in a subprocess: a CPU_ONLY build aborts)."""
    if not os.path.exists("/dev/nvidiactl"):
        return False
    probe = "import caffe; caffe.set_device(0); caffe.set_mode_gpu(); print(caffe.layer_type_list()[0])"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=120).returncode == 0


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="no CUDA device (or a CPU_ONLY build of the fork)")
@pytest.mark.parametrize("params", CONFIGS)
def test_gpu_matches_cpu(tmp_path, params):
    feat, source, top_diff = random_inputs(4, (4, 8, 14, 14), (4, 2, 224, 224), low=-100.0)
    path = write_net(tmp_path, feat.shape, source.shape, params)
    caffe.set_mode_cpu()
    on_cpu = run_net(path, feat, source, top_diff)
    caffe.set_device(0)
    caffe.set_mode_gpu()
    try:
        on_gpu = run_net(path, feat, source, top_diff)
    finally:
        caffe.set_mode_cpu()
    for a, b, what in zip(on_gpu, on_cpu, ("top", "feat diff", "source diff")):
        assert_close(a, b, what=f"GPU vs CPU {what}")


@pytest.mark.parametrize("bottoms", [1, 3])
def test_cpp_bottom_count_check_names_the_layer(tmp_path, bottoms):
    net = caffe.NetSpec()
    inputs = [L.Input(shape=dict(dim=[2, 3, 4, 5]), name=f"in{i}") for i in range(bottoms)]
    net.top = L.FlowAmplify(*inputs, name="amp1")
    path = tmp_path / "net.prototxt"
    path.write_text(str(net.to_proto()))
    script = "import sys, caffe; caffe.Net(sys.argv[1], caffe.TEST)"
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert (f"amp1: FlowAmplify takes 2 bottoms (features N x C x H x W, gate source N x G x H' x W'), "
            f"got {bottoms}") in result.stderr, result.stderr[-2000:]
