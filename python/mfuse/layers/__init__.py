"""Caffe Python layers (``type: "Python"``) of mfuse, and their numpy computations.

Twins of the fork's C++ layers, for stock pycaffe users, and the video data layer. Use them in a prototxt as::

    layer { type: "Python" python_param { module: "mfuse.layers.flow_amplify" layer: "FlowAmplify"
            param_str: '{"offset": 1.0, "scale": 1.0}' } }

- ``params``: ``param_str`` parsing and validation;
- ``flow_amplify_ops`` / ``flow_amplify``: FlowAmplify in numpy and as a layer;
- ``multiplicative_fusion``: MultiplicativeFusion (numpy functions and the layer);
- ``video_data``: the two-stream data layer over frame stores (:mod:`mfuse.stores`, :mod:`mfuse.sampling`).
"""
from __future__ import annotations

from mfuse.layers.flow_amplify import FlowAmplify
from mfuse.layers.flow_amplify_ops import (FlowAmplifyParams, check_shapes, compute_gate, flow_amplify_backward,
                                           flow_amplify_forward, resize_matrices)
from mfuse.layers.multiplicative_fusion import (MultiplicativeFusion, check_bottom_shapes, fusion_backward,
                                                fusion_forward)
from mfuse.layers.params import REQUIRED, Param, parse_param_str
from mfuse.layers.video_data import VideoBatchLoader, VideoDataLayer, loader_from_params

__all__ = ["REQUIRED", "FlowAmplify", "FlowAmplifyParams", "MultiplicativeFusion", "Param", "VideoBatchLoader",
           "VideoDataLayer", "check_bottom_shapes", "check_shapes", "compute_gate", "flow_amplify_backward",
           "flow_amplify_forward", "fusion_backward", "fusion_forward", "loader_from_params", "parse_param_str",
           "resize_matrices"]
