"""MultiplicativeFusion: the C++ layer of the fork and its Python twin.

Checked against an independent float64 numpy reference (forward by explicit loops, every gradient by
central finite differences of that forward), against each other, against the authors' composition of stock
layers (1x1 Convolution with bias 1 and lr_mult 0, ReLU, Eltwise PROD) in the same net with shared weights,
through a short solver run, and on bad input (glog CHECKs abort: run in subprocesses). GPU variants skip
where no CUDA device is usable.
"""
import functools
import itertools
import json
import subprocess
import sys
import textwrap

import caffe
import numpy as np
import pytest
from caffe import layers as L
from caffe.proto import caffe_pb2

from mfuse.layers import multiplicative_fusion as mf

FusionParam = caffe_pb2.MultiplicativeFusionParameter
CHANNELS = (3, 4, 2)
N, H, W, K = 2, 2, 3, 3


# ---------------------------------------------------------------- float64 reference

def reference_forward(xs, ws, bs, relu, dot):
    """Explicit loops over (n, k, position, stream, channel); float64."""
    n_, p_ = xs[0].shape[0], int(np.prod(xs[0].shape[2:], dtype=int))
    k_ = ws[0].shape[0]
    out = np.zeros((n_, k_, p_))
    for n, k, p in itertools.product(range(n_), range(k_), range(p_)):
        product = 1.0
        for x, w, b in zip(xs, ws, bs):
            xf, wf = x.reshape(n_, x.shape[1], p_), w.reshape(k_, -1)
            z = sum(wf[k, c] * xf[n, c, p] for c in range(x.shape[1])) + np.broadcast_to(b, (k_,))[k]
            product *= max(z, 0.0) if relu else z
        out[n, k, p] = product
    if dot:
        return out.sum(axis=2).reshape((n_, k_) + (1,) * (xs[0].ndim - 2))
    return out.reshape((n_, k_) + xs[0].shape[2:])


def numeric_gradient(f, array, weights, eps=1e-6):
    """d sum(weights * f()) / d array by central differences, perturbing ``array`` in place."""
    grad = np.zeros_like(array)
    for i in np.ndindex(array.shape):
        old = array[i]
        array[i] = old + eps
        plus = np.sum(weights * f())
        array[i] = old - eps
        minus = np.sum(weights * f())
        array[i] = old
        grad[i] = (plus - minus) / (2 * eps)
    return grad


def reference_gradients(xs, ws, bs, relu, dot, top_diff):
    """(bottom, weight, bias) gradients of sum(top_diff * forward), float64, by finite differences."""
    xs, ws = [x.copy() for x in xs], [w.copy() for w in ws]
    bs = [np.broadcast_to(np.asarray(b, dtype=np.float64), (ws[0].shape[0],)).copy() for b in bs]

    def forward():
        return reference_forward(xs, ws, bs, relu, dot)

    return ([numeric_gradient(forward, x, top_diff) for x in xs],
            [numeric_gradient(forward, w, top_diff) for w in ws],
            [numeric_gradient(forward, b, top_diff) for b in bs])


# ---------------------------------------------------------------- configurations and nets

CONFIGS = [dict(streams=s, spatial=sp, relu=r, dot=d, learnable=lb)
           for s, sp, r, d, lb in itertools.product((2, 3), (True, False), (False, True), (False, True),
                                                      (False, True))]


def config_id(c):
    return (f"{c['streams']}s-{'4d' if c['spatial'] else '2d'}-{'relu' if c['relu'] else 'none'}-"
            f"{'dot' if c['dot'] else 'elt'}-{'learn' if c['learnable'] else 'fixed'}")


def bottom_shapes(streams, spatial):
    return [(N, c, H, W) if spatial else (N, c) for c in CHANNELS[:streams]]


def weight_shape(c, spatial):
    return (K, c, 1, 1) if spatial else (K, c)


def param_specs(streams, learnable, prefix="", bias_lr=1.0):
    specs = []
    for s in range(streams):
        specs.append(dict(name=f"{prefix}w{s}"))
        if learnable:
            specs.append(dict(name=f"{prefix}b{s}", lr_mult=bias_lr))
    return specs


def cpp_fusion(bottoms, cfg, bias_value=1.0, **kwargs):
    return L.MultiplicativeFusion(
        *bottoms, multiplicative_fusion_param=dict(
            num_output=K, bias_value=bias_value, bias_learnable=cfg["learnable"],
            activation=FusionParam.RELU if cfg["relu"] else FusionParam.NONE,
            spatial=FusionParam.DOT if cfg["dot"] else FusionParam.ELEMENTWISE,
            weight_filler=dict(type="gaussian", std=0.5)), **kwargs)


def twin_fusion(bottoms, cfg, bias_value=1.0, **kwargs):
    param_str = json.dumps(dict(num_output=K, bias_value=bias_value, bias_learnable=cfg["learnable"],
                                activation="RELU" if cfg["relu"] else "NONE",
                                spatial="DOT" if cfg["dot"] else "ELEMENTWISE"))
    return L.Python(*bottoms, python_param=dict(module="mfuse.layers.multiplicative_fusion",
                                                layer="MultiplicativeFusion", param_str=param_str), **kwargs)


def inputs(spec, shapes, prefix):
    tops = L.Input(shape=[dict(dim=list(s)) for s in shapes], ntop=len(shapes))
    tops = tops if isinstance(tops, tuple) else (tops,)
    for s, top in enumerate(tops):
        setattr(spec, f"{prefix}{s}", top)
    return list(tops)


def make_net(tmp_path, spec, name="net"):
    proto = spec.to_proto()
    proto.force_backward = True
    path = tmp_path / f"{name}.prototxt"
    path.write_text(str(proto))
    return caffe.Net(str(path), caffe.TRAIN)


def random_inputs(rng, shapes):
    return [rng.normal(size=s) for s in shapes]


@functools.lru_cache(maxsize=None)
def gpu_usable():
    """True when this pycaffe can run a net forward on CUDA device 0 (checked in a subprocess: failures abort;
    pycaffe has no constructible ``caffe.Blob``)."""
    code = textwrap.dedent("""
        import tempfile
        import caffe
        from caffe import layers as L
        caffe.set_device(0)
        caffe.set_mode_gpu()
        n = caffe.NetSpec()
        n.x = L.Input(shape=dict(dim=[2]))
        n.y = L.Power(n.x, power_param=dict(scale=2.0))
        with tempfile.NamedTemporaryFile("w", suffix=".prototxt") as f:
            f.write(str(n.to_proto()))
            f.flush()
            net = caffe.Net(f.name, caffe.TEST)
        net.blobs["x"].data[...] = 1.0
        assert net.forward()["y"].sum() == 4.0
    """)
    try:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.fixture(params=["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def mode(request):
    if request.param == "gpu":
        if not gpu_usable():
            pytest.skip("no usable CUDA device for pycaffe")
        caffe.set_device(0)
        caffe.set_mode_gpu()
    else:
        caffe.set_mode_cpu()
    yield request.param
    caffe.set_mode_cpu()


def assert_close(actual, expected, what, rtol=1e-5):
    """Relative agreement, with the scale of the whole array as the floor for near-zero entries."""
    expected = np.asarray(expected, dtype=np.float64)
    atol = rtol * max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=rtol, atol=atol,
                               err_msg=what)


# ---------------------------------------------------------------- tests

def test_layer_type_registered():
    assert "MultiplicativeFusion" in caffe.layer_type_list()


@pytest.mark.parametrize("cfg", CONFIGS[:8] + CONFIGS[-4:], ids=config_id)
def test_twin_math_matches_float64_reference(cfg):
    rng = np.random.default_rng(0)
    shapes = bottom_shapes(cfg["streams"], cfg["spatial"])
    xs = random_inputs(rng, shapes)
    ws = [rng.normal(scale=0.5, size=weight_shape(s[1], cfg["spatial"])) for s in shapes]
    bs = [rng.normal(size=K) for _ in shapes] if cfg["learnable"] else [1.0] * len(shapes)
    expected = reference_forward(xs, ws, bs, cfg["relu"], cfg["dot"])
    top_diff = rng.normal(size=expected.shape)
    assert_close(mf.fusion_forward(xs, ws, bs, cfg["relu"], cfg["dot"]), expected, "forward", 1e-12)
    got = mf.fusion_backward(top_diff, xs, ws, bs, cfg["relu"], cfg["dot"])
    want = reference_gradients(xs, ws, bs, cfg["relu"], cfg["dot"], top_diff)
    for kind, got_list, want_list in zip(("bottom", "weight", "bias"), got, want):
        for s, (g, w) in enumerate(zip(got_list, want_list)):
            assert g.shape == w.shape
            assert_close(g, w, f"{kind} gradient of stream {s}", 1e-6)


@pytest.mark.parametrize("cfg", CONFIGS, ids=config_id)
def test_cpp_and_twin_match_reference(tmp_path, cfg, mode):
    """One net: the C++ layer and the twin, weights shared by name; every output and gradient."""
    shapes = bottom_shapes(cfg["streams"], cfg["spatial"])
    spec = caffe.NetSpec()
    params = param_specs(cfg["streams"], cfg["learnable"])
    spec.cpp = cpp_fusion(inputs(spec, shapes, "a"), cfg, bias_value=0.75, param=params)
    spec.twin = twin_fusion(inputs(spec, shapes, "b"), cfg, bias_value=0.75, param=params)
    net = make_net(tmp_path, spec)
    rng = np.random.default_rng(1)
    xs = random_inputs(rng, shapes)
    for s, x in enumerate(xs):
        net.blobs[f"a{s}"].data[...] = x
        net.blobs[f"b{s}"].data[...] = x
    blobs = net.params["cpp"]
    assert len(blobs) == cfg["streams"] * (2 if cfg["learnable"] else 1)
    if cfg["learnable"]:
        for s in range(cfg["streams"]):
            blobs[2 * s + 1].data[...] = rng.normal(size=K)
    per_stream = 2 if cfg["learnable"] else 1
    ws = [blobs[per_stream * s].data.astype(np.float64) for s in range(cfg["streams"])]
    bs = ([blobs[2 * s + 1].data.astype(np.float64) for s in range(cfg["streams"])]
          if cfg["learnable"] else [0.75] * cfg["streams"])
    for s, shape in enumerate(shapes):  # shared: the twin sees the same blobs
        assert net.params["twin"][per_stream * s].data.shape == weight_shape(shape[1], cfg["spatial"])
    net.forward()
    expected = reference_forward(xs, ws, bs, cfg["relu"], cfg["dot"])
    assert net.blobs["cpp"].data.shape == expected.shape
    assert_close(net.blobs["cpp"].data, expected, "C++ forward")
    assert_close(net.blobs["twin"].data, net.blobs["cpp"].data, "twin forward vs C++")
    top_diff = rng.normal(size=expected.shape)
    want = reference_gradients(xs, ws, bs, cfg["relu"], cfg["dot"], top_diff)
    grads = {}
    for layer, other in (("cpp", "twin"), ("twin", "cpp")):  # one side at a time: shared diffs add up
        net.forward()
        net.clear_param_diffs()
        net.blobs[layer].diff[...] = top_diff
        net.blobs[other].diff[...] = 0
        net.backward()
        prefix = "a" if layer == "cpp" else "b"
        grads[layer] = ([net.blobs[f"{prefix}{s}"].diff.copy() for s in range(cfg["streams"])],
                        [blob.diff.copy() for blob in blobs])
    for layer in ("cpp", "twin"):
        bottom_diffs, param_diffs = grads[layer]
        for s in range(cfg["streams"]):
            assert_close(bottom_diffs[s], want[0][s], f"{layer} bottom gradient of stream {s}")
            assert_close(param_diffs[per_stream * s], want[1][s], f"{layer} weight gradient of stream {s}")
            if cfg["learnable"]:
                assert_close(param_diffs[2 * s + 1], want[2][s], f"{layer} bias gradient of stream {s}")
    for cpp_diff, twin_diff in zip(grads["cpp"][0] + grads["cpp"][1], grads["twin"][0] + grads["twin"][1]):
        assert_close(twin_diff, cpp_diff, "twin gradient vs C++")


def stock_composition(spec, bottoms, cfg, spatial):
    """The authors' composition: per stream a 1x1 Convolution (InnerProduct for 2-D) sharing the fused
    layer's weight, bias filled to 1 with lr_mult 0 (or sharing the learnable bias), optional ReLU; then
    Eltwise PROD (and a sum over positions for DOT)."""
    branches = []
    for s, bottom in enumerate(bottoms):
        bias_param = dict(name=f"b{s}") if cfg["learnable"] else dict(lr_mult=0, decay_mult=0)
        common = dict(num_output=K, bias_filler=dict(type="constant", value=1.0))
        if spatial:
            proj = L.Convolution(bottom, kernel_size=1, param=[dict(name=f"w{s}"), bias_param], **common)
        else:
            proj = L.InnerProduct(bottom, param=[dict(name=f"w{s}"), bias_param], **common)
        setattr(spec, f"proj{s}", proj)
        if cfg["relu"]:
            proj = L.ReLU(proj, in_place=True)
        branches.append(proj)
    product = L.Eltwise(*branches, operation=caffe_pb2.EltwiseParameter.PROD)
    if cfg["dot"] and spatial:
        spec.stock_prod = product
        return L.Reduction(product, operation=caffe_pb2.ReductionParameter.SUM, axis=2)
    return product


@pytest.mark.parametrize("cfg", [c for c in CONFIGS if c["streams"] == 2] + [CONFIGS[-1]], ids=config_id)
def test_equals_stock_composition(tmp_path, cfg, mode):
    shapes = bottom_shapes(cfg["streams"], cfg["spatial"])
    spec = caffe.NetSpec()
    spec.fused = cpp_fusion(inputs(spec, shapes, "a"), cfg, param=param_specs(cfg["streams"], cfg["learnable"]))
    spec.stock = stock_composition(spec, inputs(spec, shapes, "b"), cfg, cfg["spatial"])
    net = make_net(tmp_path, spec)
    rng = np.random.default_rng(2)
    for s, x in enumerate(random_inputs(rng, shapes)):
        net.blobs[f"a{s}"].data[...] = x
        net.blobs[f"b{s}"].data[...] = x
    net.forward()
    fused, stock = net.blobs["fused"], net.blobs["stock"]
    assert_close(fused.data.reshape(stock.data.shape), stock.data, "forward")
    top_diff = rng.normal(size=stock.data.shape)
    diffs = {}
    for side, other in (("fused", "stock"), ("stock", "fused")):
        net.forward()
        net.clear_param_diffs()
        net.blobs[side].diff[...] = top_diff.reshape(net.blobs[side].diff.shape)
        net.blobs[other].diff[...] = 0
        net.backward()
        prefix = "a" if side == "fused" else "b"
        diffs[side] = ([net.blobs[f"{prefix}{s}"].diff.copy() for s in range(cfg["streams"])],
                       [blob.diff.copy() for blob in net.params["fused"]])
    for what, f, s in zip(("bottom", "param"), diffs["fused"], diffs["stock"]):
        for i, (a, b) in enumerate(zip(f, s)):
            assert np.abs(a).max() > 0
            assert_close(a, b, f"{what} gradient {i}")


def write_solver(tmp_path, spec, base_lr=0.001):
    proto = spec.to_proto()
    net_path = tmp_path / "train.prototxt"
    net_path.write_text(str(proto))
    solver_path = tmp_path / "solver.prototxt"
    solver_path.write_text(textwrap.dedent(f"""\
        net: "{net_path}"
        base_lr: {base_lr}
        lr_policy: "fixed"
        momentum: 0.9
        weight_decay: 0.0005
        max_iter: 20
        display: 0
        snapshot_after_train: false
        random_seed: 7
        solver_mode: CPU
        """))
    return str(solver_path)


@pytest.mark.parametrize("learnable, bias_lr", [(False, 0.0), (True, 0.0), (True, 1.0)])
def test_solver_updates_weights_not_fixed_bias(tmp_path, learnable, bias_lr):
    caffe.set_mode_cpu()
    cfg = dict(streams=2, spatial=True, relu=True, dot=False, learnable=learnable)
    spec = caffe.NetSpec()
    shapes = bottom_shapes(2, True)
    gaussian = dict(type="gaussian", std=1.0)
    spec.x0, spec.x1 = (L.DummyData(shape=dict(dim=list(s)), data_filler=gaussian) for s in shapes)
    spec.target = L.DummyData(shape=dict(dim=[N, K, H, W]), data_filler=gaussian)
    spec.fuse = cpp_fusion([spec.x0, spec.x1], cfg, bias_value=1.0,
                           param=param_specs(2, learnable, bias_lr=bias_lr))
    spec.loss = L.EuclideanLoss(spec.fuse, spec.target)
    solver = caffe.SGDSolver(write_solver(tmp_path, spec))
    blobs = solver.net.params["fuse"]
    assert len(blobs) == (4 if learnable else 2)
    before = [b.data.copy() for b in blobs]
    solver.step(20)
    assert np.isfinite(float(solver.net.blobs["loss"].data))
    per_stream = 2 if learnable else 1
    for s in range(2):
        assert not np.allclose(blobs[per_stream * s].data, before[per_stream * s]), f"weight {s} unchanged"
        if learnable:
            changed = not np.array_equal(blobs[2 * s + 1].data, before[2 * s + 1])
            assert changed == (bias_lr > 0), f"bias {s}: lr_mult {bias_lr}, changed {changed}"
    net = solver.net
    for s in range(2):  # zero input: the output is the product of the biases
        net.blobs[f"x{s}"].data[...] = 0
    net.forward(start="fuse", end="fuse")
    expected = (np.prod([blobs[2 * s + 1].data for s in range(2)], axis=0)[None, :, None, None]
                if learnable else np.full((1, K, 1, 1), 1.0))
    assert_close(net.blobs["fuse"].data, np.broadcast_to(expected, (N, K, H, W)), "output shift")


def test_caffemodel_round_trip_between_cpp_and_twin(tmp_path):
    caffe.set_mode_cpu()
    cfg = dict(streams=2, spatial=True, relu=False, dot=False, learnable=True)
    shapes = bottom_shapes(2, True)
    nets = {}
    for kind, make in (("cpp", cpp_fusion), ("twin", twin_fusion)):
        spec = caffe.NetSpec()
        spec.fuse = make(inputs(spec, shapes, "x"), cfg)
        nets[kind] = make_net(tmp_path, spec, kind)
    for blob in nets["cpp"].params["fuse"]:
        blob.data[...] = np.random.default_rng(3).normal(size=blob.data.shape)
    model = tmp_path / "fuse.caffemodel"
    nets["cpp"].save(str(model))
    nets["twin"].copy_from(str(model))
    for a, b in zip(nets["cpp"].params["fuse"], nets["twin"].params["fuse"]):
        np.testing.assert_array_equal(a.data, b.data)


BAD_INPUT = {
    "mismatched N": ([(2, 3, 2, 2), (3, 4, 2, 2)], dict(num_output=3),
                     ["fuse: all bottoms must have the same N", "2 3 2 2 (24)", "3 4 2 2 (48)"]),
    "mismatched HxW": ([(2, 3, 2, 2), (2, 4, 3, 2)], dict(num_output=3),
                       ["fuse: all bottoms must have the same H x W", "2 3 2 2 (24)", "2 4 3 2 (48)"]),
    "mixed 4-D and 2-D": ([(2, 3, 2, 2), (2, 4)], dict(num_output=3),
                          ["fuse: all bottoms must have the same number of axes", "2 4 (8)"]),
    "single bottom": ([(2, 3, 2, 2)], dict(num_output=3),
                      ["fuse: MultiplicativeFusion needs at least 2 bottoms", "got 1", "2 3 2 2 (24)"]),
    "K = 0": ([(2, 3, 2, 2), (2, 4, 2, 2)], dict(num_output=0), ["fuse: num_output (K) must be > 0, got 0"]),
    "stream fillers": ([(2, 3), (2, 4)], dict(num_output=3, stream_weight_filler=[dict(type="xavier")]),
                       ["fuse: stream_weight_filler must be given once per stream (2 bottoms), got 1"]),
}

NET_SCRIPT = """
import json, sys, caffe
from caffe import layers as L
shapes, fusion_param, path, action = json.loads(sys.argv[1])
spec = caffe.NetSpec()
tops = L.Input(shape=[dict(dim=s) for s in shapes], ntop=len(shapes))
spec.fuse = L.MultiplicativeFusion(*(tops if isinstance(tops, tuple) else (tops,)),
                                   multiplicative_fusion_param=fusion_param)
proto = spec.to_proto()
proto.force_backward = True
open(path, "w").write(str(proto))
net = caffe.Net(path, caffe.TRAIN)
if action == "backward twice":
    net.forward()
    net.backward()
    print("first backward ok", flush=True)
    net.backward()
"""


def run_net_script(tmp_path, shapes, fusion_param, action="build"):
    """Builds (and maybe runs) a net with one C++ fusion layer named 'fuse' in a subprocess."""
    args = json.dumps([shapes, fusion_param, str(tmp_path / "net.prototxt"), action])
    return subprocess.run([sys.executable, "-c", NET_SCRIPT, args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_a_check_naming_layer_rule_and_shapes(tmp_path, case):
    shapes, fusion_param, messages = BAD_INPUT[case]
    result = run_net_script(tmp_path, shapes, fusion_param)
    assert result.returncode != 0
    check_line = next((line for line in result.stderr.splitlines() if "Check failed" in line), "")
    for message in messages:
        assert message in check_line, result.stderr[-2000:]


def test_good_input_builds(tmp_path):  # the subprocess itself works: the failures above are the CHECKs
    result = run_net_script(tmp_path, [(2, 3, 2, 2), (2, 4, 2, 2)], dict(num_output=3))
    assert result.returncode == 0, result.stderr[-2000:]


def test_backward_twice_without_forward_is_refused(tmp_path):
    result = run_net_script(tmp_path, [(2, 3, 2, 2), (2, 4, 2, 2)], dict(num_output=3), "backward twice")
    assert "first backward ok" in result.stdout
    assert result.returncode != 0
    assert "fuse: Backward needs the projections of its own Forward" in result.stderr


@pytest.mark.parametrize("param_str, message", [
    ('{"num_output": 0}', "num_output"),
    ('{}', "'num_output' is required"),
    ('{"num_output": 2, "weight_filler": {"type": "bogus"}}', "weight_filler"),
    ('{"num_output": 2, "weight_filler": {"type": "gaussian", "value": 1}}', "weight_filler"),
    ('{"num_output": 2, "activation": "TANH"}', "must be one of"),
    ('{"num_output": 2, "spatial": "SUM"}', "must be one of"),
    ('{"num_output": 2, "bias_learnable": 1}', "must be bool"),
])
def test_twin_param_str_validation(param_str, message):
    with pytest.raises(ValueError, match=message):
        mf.parse_param_str(param_str, mf.SCHEMA, mf.LAYER)


def test_twin_bad_bottoms_raise_through_net(tmp_path):
    spec = caffe.NetSpec()
    spec.fuse = twin_fusion(inputs(spec, [(2, 3, 2, 2), (3, 4, 2, 2)], "x"),
                            dict(streams=2, spatial=True, relu=False, dot=False, learnable=False))
    with pytest.raises(ValueError, match=r"same N; bottom\[0\] is \(2, 3, 2, 2\), bottom\[1\] is \(3, 4, 2, 2\)"):
        make_net(tmp_path, spec)


@pytest.mark.parametrize("shapes, message", [
    ([(2, 3, 2, 2)], "at least 2 bottoms"),
    ([(2, 3, 2, 2), (3, 3, 2, 2)], "same N"),
    ([(2, 3, 2, 2), (2, 3, 2, 3)], "same H x W"),
    ([(2, 3, 2, 2), (2, 3)], "same number of axes"),
    ([(2, 3, 2), (2, 3, 2)], "4-D"),
])
def test_twin_bottom_shape_rules(shapes, message):
    with pytest.raises(ValueError, match=message):
        mf.check_bottom_shapes(shapes)


def test_twin_fillers_follow_caffe_semantics():
    rng = np.random.default_rng(0)
    xavier = mf.fill({"type": "xavier"}, (64, 16, 1, 1), rng)
    limit = np.sqrt(3.0 / 16)  # fan_in = C
    assert np.abs(xavier).max() <= limit and np.abs(xavier).max() > 0.9 * limit
    assert np.all(mf.fill({"type": "constant", "value": 2.5}, (3, 2), rng) == 2.5)
    gauss = mf.fill({"type": "gaussian", "std": 0.1}, (200, 50), rng)
    assert abs(gauss.std() - 0.1) < 0.01


@pytest.mark.parametrize("fusion_param, message", [
    ({}, "fuse: num_output (K, the fused dimension) is required in multiplicative_fusion_param"),
    (dict(num_output=4000000000), "fuse: num_output (K) must be at most 2147483647, got 4000000000"),
])
def test_num_output_absent_or_beyond_int_is_a_clear_check(tmp_path, fusion_param, message):
    result = run_net_script(tmp_path, [(2, 3, 2, 2), (2, 4, 2, 2)], fusion_param)
    assert result.returncode != 0
    check_line = next((line for line in result.stderr.splitlines() if "Check failed" in line), "")
    assert message in check_line, result.stderr[-2000:]
