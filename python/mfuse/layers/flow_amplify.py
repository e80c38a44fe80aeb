"""FlowAmplify as a pycaffe Python layer: the twin of the fork's C++ ``FlowAmplify`` layer.

For stock pycaffe (no fork)::

    layer { name: "amp" type: "Python" bottom: "conv5" bottom: "mag" top: "conv5_amp"
            python_param { module: "mfuse.layers.flow_amplify" layer: "FlowAmplify"
                           param_str: '{"offset": 1, "scale": 1, "resize": "AREA"}' } }

Bottoms: features N x C x H x W, gate source N x G x H' x W' (G = 1 magnitude, G = 2 x/y flow).
Top: N x C x H x W. ``param_str`` (JSON or YAML) takes the fields of ``FlowAmplifyParameter``: offset,
scale, resize, clip_max, normalize, allow_negative_scale. Semantics and numbers: ``flow_amplify_ops``.
In-place use (top == features) works: the layer keeps its own copy of the features.
"""
from __future__ import annotations

import caffe
import numpy as np

from mfuse.layers.flow_amplify_ops import FlowAmplifyParams, check_shapes, flow_amplify_backward, \
    flow_amplify_forward

LAYER = "FlowAmplify (Python)"


class FlowAmplify(caffe.Layer):
    """``top = feat * (offset + scale * resize(|source|))``; gradients to both bottoms."""

    def setup(self, bottom, top):
        if len(bottom) != 2 or len(top) != 1:
            raise ValueError(f"{LAYER}: takes 2 bottoms (features, gate source) and 1 top; "
                             f"got {len(bottom)} and {len(top)}")
        self.params = FlowAmplifyParams.from_param_str(self.param_str, layer=LAYER)
        self.feat = None

    def reshape(self, bottom, top):
        check_shapes(tuple(bottom[0].shape), tuple(bottom[1].shape), layer=LAYER)
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        self.feat = np.array(bottom[0].data, dtype=np.float64)  # kept for backward (and in-place use)
        top[0].data[...] = flow_amplify_forward(self.feat, bottom[1].data, self.params)

    def backward(self, top, propagate_down, bottom):
        if not any(propagate_down):
            return
        feat_diff, source_diff = flow_amplify_backward(top[0].diff, self.feat, bottom[1].data, self.params)
        if propagate_down[0]:
            bottom[0].diff[...] = feat_diff
        if propagate_down[1]:
            bottom[1].diff[...] = source_diff
