"""The stand-in for ImageNet pretraining: a backbone trained once on a synthetic image classification task.

:func:`pretrain_backbone` is a pipeline stage usable with any dataset (the tiny backbone has no published
ImageNet model); its caffemodel has the backbone's layer names and feeds the stream nets through
:func:`mfuse.surgery.init_from_imagenet` as a real ImageNet model would. See ``images.py`` for the task,
``net.py`` for the net and ``stage.py`` for the cached stage.
"""
from __future__ import annotations

from mfuse.pretrain.images import SHAPES, TEXTURES, ImageTaskConfig, plan_images, render_image
from mfuse.pretrain.net import IMAGENET_CLASSIFIER, pretrain_net
from mfuse.pretrain.stage import PRETRAINED_MODEL, PretrainConfig, pretrain_backbone, write_image_lmdb

__all__ = ["IMAGENET_CLASSIFIER", "PRETRAINED_MODEL", "SHAPES", "TEXTURES", "ImageTaskConfig", "PretrainConfig",
           "plan_images", "pretrain_backbone", "pretrain_net", "render_image", "write_image_lmdb"]
