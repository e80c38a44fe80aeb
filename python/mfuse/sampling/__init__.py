"""Sampling shared by training and testing: frame positions, crops, clips, batches, and the input geometry of a net.

- ``positions``: where samples are taken (training: uniform or middle frame; testing: 25 equally spaced);
- ``crops``: 10-crop and centre crop (testing), random crop and mirror (training), flow stacks and flips;
- ``clips``: a sample's images from frame stores, training samples and epoch order;
- ``batches``: training batches and the test's crops as fixed-size uint8 items (producers of
  :mod:`mfuse.processes`), and their conversion to net inputs;
- ``geometry``: a net's input modalities, crop side and flow stack length.
"""
from __future__ import annotations

from mfuse.sampling.batches import (INPUT_THREADS, LABEL, ProtocolCrops, TrainBatches, input_threads,
                                    to_net_inputs)
from mfuse.sampling.clips import (ClipSpec, common_videos, cut_crops, epoch_order, frame_images, make_sample,
                                  make_sample_uint8, read_images, sample_box)
from mfuse.sampling.crops import (FLOW_X_CHANNELS, CropBox, choose_crop, crop_boxes, crop_flow_images, crop_image,
                                  crop_modalities, crop_uint8, flow_x_channels, normalize, split_flow_image,
                                  stack_flow)
from mfuse.sampling.geometry import InputGeometry
from mfuse.sampling.positions import (NUM_TEST_SAMPLES, flow_stack_indices, frame_range, rgb_index,
                                      sample_positions, train_position)

__all__ = ["FLOW_X_CHANNELS", "INPUT_THREADS", "LABEL", "NUM_TEST_SAMPLES", "ClipSpec", "CropBox", "InputGeometry",
           "ProtocolCrops", "TrainBatches", "choose_crop", "common_videos", "crop_boxes", "crop_flow_images",
           "crop_image", "crop_modalities", "crop_uint8", "cut_crops", "epoch_order", "flow_stack_indices",
           "flow_x_channels", "frame_images", "frame_range", "input_threads", "make_sample", "make_sample_uint8",
           "normalize", "read_images", "rgb_index", "sample_box", "sample_positions", "split_flow_image",
           "stack_flow", "to_net_inputs", "train_position"]
