"""NetSpec builders of the project's nets and solvers.

- ``backbones``: conv towers + fc6/fc7 of CNN-M-2048, VGG19 and a tiny CPU net (published layer names);
- ``inputs``: the video data layer (train_val), DummyData (shape checks) and Input layers (deploy);
- ``streams``: spatial, spatial + FlowAmplify, temporal nets;
- ``fusion``: baselines A/B and multiplicative fusion of conv5 / fc7;
- ``solvers``: the paper's schedules;
- ``build_all``: every net + solver of the committed ``prototxt/`` (``tools/make_nets.py``).
"""
