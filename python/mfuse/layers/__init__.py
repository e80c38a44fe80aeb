"""Caffe Python layers (``type: "Python"``) of mfuse.

Twins of the fork's C++ layers, for stock pycaffe users, and the video data layer. Use them in a prototxt as::

    layer { type: "Python" python_param { module: "mfuse.layers.flow_amplify" layer: "FlowAmplify"
            param_str: '{"offset": 1.0, "scale": 1.0}' } }
"""
