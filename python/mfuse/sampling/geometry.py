"""The input geometry of a net: which modalities it takes, the crop side and the flow stack length.

A net's input blobs say it (``mfuse.conventions.INPUT_BLOBS``): ``data_rgb`` N x 3 x S x S, ``data_flow``
N x 2L x S x S, ``data_mag`` N x 1 x S x S. Samplers must produce exactly that; the test runner and the CLIs
read it from the deploy net (:func:`mfuse.nets.inputs.read_input_geometry`,
:func:`mfuse.evaluation.testing.net_geometry`) instead of assuming the paper's 224 x 224 and L = 10.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mfuse.conventions import INPUT_BLOBS, MODALITIES, input_channels


@dataclass(frozen=True)
class InputGeometry:
    """What a net takes.

    Attributes:
        modalities: its modalities, in ``rgb, flow, mag`` order.
        crop_size: the side S of its square inputs.
        stack_length: L of its ``data_flow`` input (2L channels); None when it takes no flow.
    """
    modalities: tuple[str, ...]
    crop_size: int
    stack_length: int | None = None

    @classmethod
    def from_blob_shapes(cls, shapes: Mapping[str, Sequence[int]], source: str = "the net") -> InputGeometry:
        """The geometry of a net with input blobs ``{name: N x C x S x S}``.

        Raises:
            ValueError: naming ``source`` and the blob, for an unknown input name, a shape that is not
                N x C x S x S, a channel count that does not fit its modality, or inputs of different sides.
        """
        modality_of = {blob: modality for modality, blob in INPUT_BLOBS.items()}
        unknown = [name for name in shapes if name not in modality_of]
        if not shapes or unknown:
            raise ValueError(f"{source}: inputs {list(shapes)} must be among {list(INPUT_BLOBS.values())}")
        sides, stack_length = {}, None
        for name, shape in shapes.items():
            shape = tuple(int(d) for d in shape)
            if len(shape) != 4 or shape[2] != shape[3]:
                raise ValueError(f"{source}: input {name} must be N x C x S x S, got {shape}")
            modality = modality_of[name]
            if modality == "flow":
                if shape[1] < 2 or shape[1] % 2:
                    raise ValueError(f"{source}: input {name} must have 2L channels (x/y pairs), got {shape[1]}")
                stack_length = shape[1] // 2
            elif shape[1] != input_channels(modality):
                raise ValueError(f"{source}: input {name} must have {input_channels(modality)} channels, "
                                 f"got {shape[1]}")
            sides[name] = shape[2]
        if len(set(sides.values())) != 1:
            raise ValueError(f"{source}: inputs differ in size: {sides}")
        modalities = tuple(m for m in MODALITIES if INPUT_BLOBS[m] in shapes)
        return cls(modalities, next(iter(sides.values())), stack_length)
