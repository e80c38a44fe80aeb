"""FlowAmplify's numpy computation against OpenCV and an independent float64 reference."""
import cv2
import numpy as np
import pytest

from mfuse.layers.flow_amplify_ops import FlowAmplifyParams, check_shapes, compute_gate, flow_amplify_backward, \
    flow_amplify_forward, resize_matrices, resize_weights

CV2_FLAGS = {"AREA": cv2.INTER_AREA, "BILINEAR": cv2.INTER_LINEAR, "NEAREST": cv2.INTER_NEAREST}
# Against cv2.resize, relative to the map's maximum (the issue asks 1e-5). Measured: <= 2.2e-7, except for
# 1-pixel-high/wide BILINEAR maps, where x86 cv2 leaves its IPP path for one that rounds the source
# coordinate to float32 first (<= 1.8e-6). A float32 coordinate everywhere would fail (6e-6 at 224 -> 13).
RESIZE_RTOL = 3e-6


def size_pairs(count, seed):
    """Fixed interesting (src_h, src_w, dst_h, dst_w) plus `count` random ones (shrinking, growing, mixed)."""
    fixed = [(224, 224, 13, 13), (224, 224, 14, 14), (256, 340, 13, 13), (224, 224, 224, 224), (7, 7, 14, 14),
             (3, 5, 13, 4), (1, 1, 13, 13), (1, 40, 32, 39), (56, 8, 58, 5), (30, 20, 7, 20), (6, 6, 4, 4)]
    rng = np.random.default_rng(seed)
    return fixed + [tuple(int(v) for v in rng.integers(1, 64, 4)) for _ in range(count)]


def cv2_operator(src_hw, dst_hw, method):
    """The (H*W, H'*W') matrix of cv2.resize, from float64 basis images: an independent reference."""
    columns = []
    for i in range(src_hw[0] * src_hw[1]):
        basis = np.zeros(src_hw[0] * src_hw[1])
        basis[i] = 1.0
        out = cv2.resize(basis.reshape(src_hw), (dst_hw[1], dst_hw[0]), interpolation=CV2_FLAGS[method])
        columns.append(out.reshape(-1))
    return np.stack(columns, axis=1)


def reference_forward(feat, source, params):
    """Straightforward float64 FlowAmplify built on cv2_operator."""
    n, _, h, w = feat.shape
    magnitude = source[:, 0] if source.shape[1] == 1 else np.hypot(source[:, 0], source[:, 1])
    if params.clip_max > 0:
        magnitude = np.minimum(magnitude, params.clip_max)
    operator = cv2_operator(source.shape[2:], (h, w), params.resize)
    gate = params.offset + params.scale * (magnitude.reshape(n, -1) @ operator.T).reshape(n, h, w)
    if params.normalize == "MEAN":
        gate = gate / gate.mean(axis=(1, 2), keepdims=True)
    return feat * gate[:, None]


def numeric_gradient(loss, x, eps=1e-6):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        saved = x[i]
        x[i] = saved + eps
        plus = loss()
        x[i] = saved - eps
        minus = loss()
        x[i] = saved
        grad[i] = (plus - minus) / (2 * eps)
    return grad


def random_inputs(rng, feat_shape, source_shape, low, high, kinks=()):
    """Gaussian features, uniform source; magnitudes kept 0.02 away from each kink (clip bound, 0)."""
    feat = rng.normal(size=feat_shape)
    source = rng.uniform(low, high, size=source_shape)
    for kink in kinks:
        magnitude = source[:, 0] if source.shape[1] == 1 else np.hypot(source[:, 0], source[:, 1])
        near = np.abs(magnitude - kink) < 0.02
        source[:, 0][near] += np.where(source[:, 0][near] >= 0, 0.1, -0.1)
    return feat, source


@pytest.mark.parametrize("method", ["AREA", "BILINEAR", "NEAREST"])
def test_resize_matrices_match_cv2(method):
    rng = np.random.default_rng(3)
    for src_h, src_w, dst_h, dst_w in size_pairs(30, seed=11):
        magnitude = rng.uniform(0, 255, (src_h, src_w)).astype(np.float32)
        wy, wx = resize_matrices((src_h, src_w), (dst_h, dst_w), method)
        expected = cv2.resize(magnitude, (dst_w, dst_h), interpolation=CV2_FLAGS[method]).reshape(dst_h, dst_w)
        np.testing.assert_allclose(wy @ magnitude @ wx.T, expected, rtol=0, atol=RESIZE_RTOL * 255,
                                   err_msg=f"{method} {(src_h, src_w)} -> {(dst_h, dst_w)}")


def test_resize_weights_by_hand():
    np.testing.assert_allclose(resize_weights(3, 2, "AREA"), [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]], atol=1e-7)
    np.testing.assert_allclose(resize_weights(4, 2, "AREA"), [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    np.testing.assert_allclose(resize_weights(2, 4, "BILINEAR"), [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
    np.testing.assert_array_equal(resize_weights(2, 4, "NEAREST"), [[1, 0], [1, 0], [0, 1], [0, 1]])
    np.testing.assert_array_equal(resize_weights(2, 4, "AREA", area_shrinks=False), [[1, 0], [1, 0], [0, 1], [0, 1]])
    for method in ("AREA", "BILINEAR", "NEAREST"):
        np.testing.assert_array_equal(resize_weights(13, 13, method), np.eye(13))


CONFIGS = [
    FlowAmplifyParams(),
    FlowAmplifyParams(offset=0.0, scale=0.5, resize="BILINEAR", clip_max=1.5),
    FlowAmplifyParams(resize="NEAREST", normalize="MEAN"),
    FlowAmplifyParams(offset=2.0, scale=-0.3, allow_negative_scale=True, resize="BILINEAR", normalize="MEAN",
                      clip_max=2.0),
]
SHAPES = [((2, 3, 4, 5), (2, 1, 9, 7)), ((2, 2, 5, 4), (2, 2, 3, 6)), ((1, 3, 3, 3), (1, 2, 7, 4))]


@pytest.mark.parametrize("params", CONFIGS)
@pytest.mark.parametrize("feat_shape, source_shape", SHAPES)
def test_forward_and_gradients_match_float64_reference(params, feat_shape, source_shape):
    rng = np.random.default_rng(5)
    feat, source = random_inputs(rng, feat_shape, source_shape, -2.0 if source_shape[1] == 2 else 0.0, 2.5,
                                 kinks=(0.0, params.clip_max) if params.clip_max else (0.0,))
    top_diff = rng.normal(size=feat_shape)

    np.testing.assert_allclose(flow_amplify_forward(feat, source, params), reference_forward(feat, source, params),
                               rtol=1e-6, atol=1e-9)

    feat_diff, source_diff = flow_amplify_backward(top_diff, feat, source, params)
    loss = lambda: float(np.sum(top_diff * reference_forward(feat, source, params)))  # noqa: E731
    np.testing.assert_allclose(feat_diff, numeric_gradient(loss, feat), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(source_diff, numeric_gradient(loss, source), rtol=1e-5, atol=1e-6)


def test_flow_norm_and_clip_by_hand():
    feat = np.array([1.0, 2.0, -1.0]).reshape(1, 1, 1, 3)
    source = np.array([[3.0, 0.0, -6.0], [4.0, 0.0, 8.0]]).reshape(1, 2, 1, 3)
    np.testing.assert_allclose(flow_amplify_forward(feat, source, FlowAmplifyParams()).ravel(), [6, 2, -11])
    np.testing.assert_allclose(flow_amplify_forward(feat, source, FlowAmplifyParams(clip_max=7)).ravel(), [6, 2, -8])
    _, source_diff = flow_amplify_backward(np.ones_like(feat), feat, source, FlowAmplifyParams(clip_max=7))
    # d|v|/dv = v/|v| times feat; 0 at |v| = 0 and above the clip
    np.testing.assert_allclose(source_diff.reshape(2, 3), [[0.6, 0, 0], [0.8, 0, 0]])


def test_offset_one_scale_zero_is_identity():
    rng = np.random.default_rng(0)
    feat = rng.normal(size=(2, 3, 13, 13)).astype(np.float32)
    source = rng.uniform(0, 255, size=(2, 1, 224, 224))
    np.testing.assert_array_equal(flow_amplify_forward(feat, source, FlowAmplifyParams(scale=0.0)), feat)


def test_mean_normalisation_gives_mean_one_and_refuses_zero_mean():
    source = np.random.default_rng(0).uniform(0, 9, size=(3, 1, 20, 30))
    gate, means = compute_gate(source, (13, 13), FlowAmplifyParams(normalize="MEAN"))
    np.testing.assert_allclose(gate.mean(axis=(1, 2)), 1.0)
    assert means.shape == (3,)
    with pytest.raises(ValueError, match="MEAN needs a gate whose spatial mean is not 0"):
        compute_gate(np.zeros((1, 1, 4, 4)), (2, 2), FlowAmplifyParams(offset=0.0, normalize="MEAN"))


def test_params_from_param_str():
    assert FlowAmplifyParams.from_param_str("") == FlowAmplifyParams()
    parsed = FlowAmplifyParams.from_param_str('{"offset": 0, "scale": 2, "resize": "bilinear", "clip_max": 20, '
                                              '"normalize": "MEAN"}')
    assert parsed == FlowAmplifyParams(offset=0.0, scale=2.0, resize="BILINEAR", clip_max=20.0, normalize="MEAN")
    assert FlowAmplifyParams.from_param_str("scale: -1\nallow_negative_scale: true").scale == -1.0


@pytest.mark.parametrize("text, message", [
    ('{"scale": -1}', "scale must be >= 0 unless allow_negative_scale is set"),
    ('{"resize": "CUBIC"}', "must be one of"),
    ('{"clip_max": -2}', "clip_max >= 0"),
    ('{"normalize": "L2"}', "must be one of"),
    ('{"offset": .nan}', "offset must be finite"),
    ('{"gain": 2}', "unknown param_str key"),
])
def test_bad_param_str(text, message):
    with pytest.raises(ValueError, match=message) as err:
        FlowAmplifyParams.from_param_str(text, layer="amp1")
    assert str(err.value).startswith("amp1:")


@pytest.mark.parametrize("feat_shape, source_shape, rule", [
    ((2, 3, 4, 5), (3, 1, 7, 9), "features and gate source must have the same N"),
    ((2, 3, 4, 5), (2, 3, 7, 9), "G = 1 \\(magnitude\\) or G = 2"),
    ((2, 3, 4, 5), (2, 1, 0, 9), "the gate source must not be zero-sized"),
    ((2, 3, 0, 5), (2, 1, 7, 9), "features must not be zero-sized"),
    ((2, 3, 4), (2, 1, 7, 9), "features must have 4 axes"),
])
def test_bad_shapes_name_layer_rule_and_shapes(feat_shape, source_shape, rule):
    with pytest.raises(ValueError, match=rule) as err:
        check_shapes(feat_shape, source_shape, layer="amp1")
    assert str(err.value).startswith("amp1:")
    assert f"(features {' '.join(map(str, feat_shape))} (" in str(err.value)
    assert f"gate source {' '.join(map(str, source_shape))} (" in str(err.value)
