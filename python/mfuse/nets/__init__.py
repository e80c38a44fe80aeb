"""NetSpec builders of the project's nets and solvers.

- ``backbones``: conv towers + fc6/fc7 of CNN-M-2048, VGG19 and a tiny CPU net (published layer names);
- ``inputs``: the video data layer (train_val), DummyData (shape checks) and Input layers (deploy), and the
  input geometry a deploy prototxt declares;
- ``streams``: spatial, spatial + FlowAmplify, temporal nets;
- ``fusion``: baselines A/B and multiplicative fusion of conv5 / fc7;
- ``solvers``: the paper's schedules;
- ``build_all``: every net + solver of the committed ``prototxt/`` (``tools/make_nets.py``).
"""
from __future__ import annotations

from mfuse.nets import solvers
from mfuse.nets.backbones import BACKBONES, Backbone, get_backbone
from mfuse.nets.build_all import COMMITTED, NetSet, build_net, custom_set, net_text, write_all
from mfuse.nets.fusion import PREFIXES, Fusion, fusion_net
from mfuse.nets.inputs import DeployInputs, DummyInputs, VideoData, input_shapes, read_input_geometry
from mfuse.nets.solvers import Schedule, make_solver, solver_text
from mfuse.nets.streams import Amplify, spatial_net, temporal_net

__all__ = ["BACKBONES", "COMMITTED", "PREFIXES", "Amplify", "Backbone", "DeployInputs", "DummyInputs",
           "Fusion", "NetSet", "Schedule", "VideoData", "build_net", "custom_set", "fusion_net", "get_backbone",
           "input_shapes", "make_solver", "net_text", "read_input_geometry", "solver_text", "solvers",
           "spatial_net", "temporal_net", "write_all"]
