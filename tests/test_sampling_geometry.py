"""A net's input geometry from its input blob shapes: modalities, crop side, stack length, and what is refused."""
import pytest

from mfuse.sampling.geometry import InputGeometry


def test_geometry_of_the_paper_nets():
    assert InputGeometry.from_blob_shapes({"data_rgb": (10, 3, 224, 224)}) == InputGeometry(("rgb",), 224, None)
    fusion = InputGeometry.from_blob_shapes({"data_flow": [1, 20, 48, 48], "data_rgb": [1, 3, 48, 48]})
    assert fusion == InputGeometry(("rgb", "flow"), 48, 10)
    amplified = InputGeometry.from_blob_shapes({"data_mag": (2, 1, 40, 40), "data_rgb": (2, 3, 40, 40)})
    assert amplified.modalities == ("rgb", "mag") and amplified.stack_length is None
    assert InputGeometry.from_blob_shapes({"data_flow": (1, 6, 32, 32)}).stack_length == 3


@pytest.mark.parametrize("shapes, message", [
    ({}, r"x.prototxt: inputs \[\] must be among"),
    ({"data": (1, 3, 224, 224)}, r"inputs \['data'\] must be among \['data_rgb', 'data_flow', 'data_mag'\]"),
    ({"data_rgb": (1, 3, 224, 200)}, r"input data_rgb must be N x C x S x S, got \(1, 3, 224, 200\)"),
    ({"data_rgb": (3, 224, 224)}, "must be N x C x S x S"),
    ({"data_rgb": (1, 1, 48, 48)}, "input data_rgb must have 3 channels, got 1"),
    ({"data_mag": (1, 2, 48, 48)}, "input data_mag must have 1 channels, got 2"),
    ({"data_flow": (1, 21, 48, 48)}, r"input data_flow must have 2L channels \(x/y pairs\), got 21"),
    ({"data_rgb": (1, 3, 48, 48), "data_flow": (1, 20, 40, 40)}, "inputs differ in size"),
])
def test_inputs_that_do_not_fit_the_conventions_are_refused(shapes, message):
    with pytest.raises(ValueError, match=message):
        InputGeometry.from_blob_shapes(shapes, "x.prototxt")
