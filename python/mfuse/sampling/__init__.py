"""Sampling shared by training and testing: frame positions, crops, clips, and the input geometry of a net.

- ``positions``: where samples are taken (training: uniform or middle frame; testing: 25 equally spaced);
- ``crops``: 10-crop and centre crop (testing), random crop and mirror (training), flow stacks and flips;
- ``clips``: a sample's images from frame stores, training samples and epoch order;
- ``geometry``: a net's input modalities, crop side and flow stack length.
"""
from __future__ import annotations

from mfuse.sampling.clips import ClipSpec, common_videos, epoch_order, frame_images, make_sample
from mfuse.sampling.crops import (FLOW_X_CHANNELS, CropBox, choose_crop, crop_boxes, crop_image, crop_modalities,
                                  flow_x_channels, split_flow_image, stack_flow)
from mfuse.sampling.geometry import InputGeometry
from mfuse.sampling.positions import (NUM_TEST_SAMPLES, flow_stack_indices, frame_range, rgb_index,
                                      sample_positions, train_position)

__all__ = ["FLOW_X_CHANNELS", "NUM_TEST_SAMPLES", "ClipSpec", "CropBox", "InputGeometry", "choose_crop",
           "common_videos", "crop_boxes", "crop_image", "crop_modalities", "epoch_order", "flow_stack_indices",
           "flow_x_channels", "frame_images", "frame_range", "make_sample", "rgb_index", "sample_positions",
           "split_flow_image", "stack_flow", "train_position"]
