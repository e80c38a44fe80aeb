"""The project's shared facts, defined once: every module that needs one imports it from here.

What lives here is a contract between modules (docs/conventions.md), not a setting: the modalities and their
net inputs, the splits and subsets, the flow stack length, the means the nets subtract, the fusion net kinds,
FlowAmplify's defaults (the fork's ``FlowAmplifyParameter``) and the environment variables mfuse reads.
This module imports nothing of mfuse (and no third-party package), so every stage may use it.
"""
from __future__ import annotations

from collections.abc import Sequence

#: The three inputs of the paper's nets: RGB frames, stacked optical flow, flow magnitude.
MODALITIES = ("rgb", "flow", "mag")

#: The official three-fold splits of UCF101 and HMDB51.
SPLITS = (1, 2, 3)
#: The subsets of an official split list (split parsers, frame stores, the data layer).
SUBSETS = ("train", "test")
#: The subsets a score file may hold: ``val`` is a held-out part of the train split (for fusion weights).
SCORE_SUBSETS = ("train", "val", "test")

#: Flow images per stack (L): the flow input has 2L channels x1, y1, ..., xL, yL (paper §5.2).
STACK_LENGTH = 10
#: The paper's crop side; a net's own input size wins wherever a net is at hand.
CROP_SIZE = 224
#: Ways to crop a test frame: four corners + centre, each mirrored (paper §5.2), or the centre only.
CROP_MODES = ("ten", "center")

#: The mean subtracted from BGR frames (the Caffe reference models' ImageNet mean).
RGB_MEAN = (104, 117, 123)
#: The centre of the 8-bit flow quantisation, subtracted from flow.
FLOW_MEAN = 128
#: ``{modality: mean subtracted before the net, or None}``; magnitudes go in raw (0..255).
MEANS = {"rgb": RGB_MEAN, "flow": FLOW_MEAN, "mag": None}

#: Frame-folder file prefixes: ``<prefix>_<t:05d>.jpg`` (docs/conventions.md).
IMAGE_PREFIXES = {"rgb": "img", "flow": "flow", "mag": "mag"}
#: Where frame stores live under a prepared dataset folder.
STORAGES = ("lmdb", "folder")

#: The nets' input blobs, one per modality, and the label blob of train_val nets.
INPUT_BLOBS = {modality: f"data_{modality}" for modality in MODALITIES}
LABEL_BLOB = "label"

#: The two-stream fusion nets (paper §4): baselines A, B and multiplicative fusion of conv5 or fc7.
FUSION_KINDS = ("baseline_a", "baseline_b", "mfuse_conv5", "mfuse_fc7")
#: The single-stream nets: spatial, spatial with flow amplification, temporal.
STREAM_NETS = ("spatial", "spatial_amp", "temporal")
#: Every net of a net set, in training order.
NET_NAMES = STREAM_NETS + FUSION_KINDS

#: The fields and defaults of the fork's ``FlowAmplifyParameter`` (patches/, layers/): offset 1 is the paper's
#: "scaled from 1 rather than 0", scale 1 because magnitudes are stored in pixels.
FLOW_AMPLIFY_DEFAULTS = {"offset": 1.0, "scale": 1.0, "resize": "AREA", "clip_max": 0.0, "normalize": "NONE",
                         "allow_negative_scale": False}
#: ``FlowAmplifyParameter.resize`` and ``.normalize`` values.
FLOW_AMPLIFY_RESIZES = ("AREA", "BILINEAR", "NEAREST")
FLOW_AMPLIFY_NORMALIZATIONS = ("NONE", "MEAN")

#: Read by TRAIN-phase data layers at setup: the batch to start from (set by ``mfuse.training`` on resume).
START_BATCH_ENV = "MFUSE_DATA_START_BATCH"
#: glog's minimum level (0 INFO .. 3 FATAL) for Caffe's logging.
GLOG_LEVEL_ENV = "GLOG_minloglevel"
#: The fork's cap on the cuDNN workspace of a device, in MiB (patch 0014; read once per process).
CUDNN_WORKSPACE_ENV = "MFUSE_CUDNN_WORKSPACE_MB"


def input_channels(modality: str, stack_length: int = STACK_LENGTH) -> int:
    """Channels of a modality's net input: 3 (rgb, BGR), 2 * stack_length (flow x/y pairs), 1 (mag)."""
    channels = {"rgb": 3, "flow": 2 * stack_length, "mag": 1}
    if modality not in channels:
        raise ValueError(f"unknown modality {modality!r}; choose from {list(MODALITIES)}")
    return channels[modality]


def check_split(split: int, subset: str, subsets: Sequence[str] = SUBSETS) -> None:
    """ValueError unless ``split`` is one of ``SPLITS`` and ``subset`` one of ``subsets``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if subset not in subsets:
        raise ValueError(f"subset must be one of {tuple(subsets)}, got {subset!r}")
