"""The shared facts: their values, their helpers, and agreement with the fork's FlowAmplifyParameter."""
import ast

import pytest
from caffe.proto import caffe_pb2

from mfuse import conventions
from mfuse.conventions import (FLOW_AMPLIFY_DEFAULTS, FLOW_AMPLIFY_NORMALIZATIONS, FLOW_AMPLIFY_RESIZES,
                               FUSION_KINDS, INPUT_BLOBS, MEANS, MODALITIES, NET_NAMES, SCORE_SUBSETS, SPLITS,
                               STREAM_NETS, SUBSETS, check_split, input_channels)


def test_flow_amplify_defaults_are_the_proto_defaults():
    field_defaults = {}
    for field in caffe_pb2.FlowAmplifyParameter.DESCRIPTOR.fields:
        value = field.default_value
        field_defaults[field.name] = field.enum_type.values_by_number[value].name if field.enum_type else value
    assert field_defaults == FLOW_AMPLIFY_DEFAULTS
    enums = {f.name: tuple(v.name for v in f.enum_type.values)
             for f in caffe_pb2.FlowAmplifyParameter.DESCRIPTOR.fields if f.enum_type}
    assert enums == {"resize": FLOW_AMPLIFY_RESIZES, "normalize": FLOW_AMPLIFY_NORMALIZATIONS}


def test_inputs_of_each_modality():
    assert INPUT_BLOBS == {"rgb": "data_rgb", "flow": "data_flow", "mag": "data_mag"}
    assert [input_channels(m) for m in MODALITIES] == [3, 20, 1]
    assert input_channels("flow", 5) == 10
    with pytest.raises(ValueError, match="unknown modality 'depth'"):
        input_channels("depth")
    assert set(MEANS) == set(MODALITIES) and MEANS["mag"] is None and len(MEANS["rgb"]) == 3


def test_splits_subsets_and_nets():
    assert SPLITS == (1, 2, 3)
    assert set(SUBSETS) < set(SCORE_SUBSETS) and "val" in SCORE_SUBSETS
    assert NET_NAMES == STREAM_NETS + FUSION_KINDS and len(set(NET_NAMES)) == len(NET_NAMES)
    check_split(3, "test")
    check_split(2, "val", SCORE_SUBSETS)
    with pytest.raises(ValueError, match=r"split must be one of \(1, 2, 3\), got 4"):
        check_split(4, "train")
    with pytest.raises(ValueError, match=r"subset must be one of \('train', 'test'\), got 'val'"):
        check_split(1, "val")


def test_conventions_import_nothing_of_mfuse_or_third_parties():
    tree = ast.parse(open(conventions.__file__).read())
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    modules |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert modules <= {"__future__", "collections.abc"}
