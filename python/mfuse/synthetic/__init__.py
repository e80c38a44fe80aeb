"""The built-in synthetic action dataset: small, seeded, in the UCF101 or HMDB51 on-disk layout.

Eight classes of one or two isoluminant discs (red, blue) that stay still, swing left-right, bounce
up-down or orbit, on a textured background with camera jitter and noise. The classes are designed so
that appearance alone confuses some pairs (same discs, different motion), motion alone confuses others
(same motion, different discs), and some pairs differ only in WHICH disc moves how -- the case where
spatially aligned fusion (multiplicative fusion, flow amplification) should beat late averaging. See
``classes.py`` for the class table, ``render.py`` for the geometry, ``layout.py`` for files and splits,
``generator.py`` for determinism, and ``docs/synthetic-dataset.md``.

Example::

    from mfuse.synthetic import SyntheticConfig, generate
    generate("data/synthetic", SyntheticConfig(num_groups=7, clips_per_group=3, size=(64, 48)))
"""

from __future__ import annotations

from mfuse.synthetic.classes import (APPEARANCE_CONFUSED, BINDING_CONFUSED, CLASSES, MOTION_CONFUSED, SEPARABLE,
                                     ActionClass, ceiling, class_names, loss_floor)
from mfuse.synthetic.generator import (SyntheticConfig, SyntheticDataset, generate, plan_videos, read_masks,
                                       render_video)
from mfuse.synthetic.layout import HMDB51_SPLIT_DIR, LAYOUTS, UCF101_LIST_DIR, SyntheticVideo, groups_tested

__all__ = ["APPEARANCE_CONFUSED", "BINDING_CONFUSED", "CLASSES", "HMDB51_SPLIT_DIR", "LAYOUTS", "MOTION_CONFUSED",
           "SEPARABLE", "UCF101_LIST_DIR", "ActionClass", "SyntheticConfig", "SyntheticDataset", "SyntheticVideo",
           "ceiling", "class_names", "generate", "groups_tested", "loss_floor", "plan_videos", "read_masks",
           "render_video"]
