"""Datasets, experiment files and weights for the recipe tests (plain helpers, no fixtures)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from caffe.proto import caffe_pb2

from dataprep_helpers import moving_frames, write_video
from mfuse.synthetic import SyntheticConfig, generate

#: Training settings that make every net of the tiny backbone train for a few iterations at batch 8.
FEW_ITERATIONS = """\
[train]
seeds = [1]
heldout_fraction = 0.34
stream_batch = 8
fusion_batch = 8
[train.spatial]
max_iter = 4
steps = [2]
snapshot = 2
batch = 8
test_interval = 1000
[train.temporal]
max_iter = 4
steps = [2]
snapshot = 2
batch = 8
test_interval = 1000
[train.fusion]
max_iter = 12
steps = [6]
snapshot = 3
batch = 8
test_interval = 1000
[test]
frames = 2
crops = "center"
"""


def write_lists(lists: Path, classes: list[str], videos: list[tuple[str, int]]) -> Path:
    """UCF101-format lists with CRLF (as the official files): ``videos`` are ``(relative path, group)``; split k
    tests group k, the other groups train."""
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\r\n" for i, c in enumerate(classes)), newline="")
    for k in (1, 2, 3):
        train = [p for p, g in videos if g != k]
        test = [p for p, g in videos if g == k]
        (lists / f"trainlist0{k}.txt").write_text(
            "".join(f"{p} {classes.index(p.split('/')[0]) + 1}\r\n" for p in train), newline="")
        (lists / f"testlist0{k}.txt").write_text("".join(f"{p}\r\n" for p in test), newline="")
    return lists


def small_synthetic_set(root: Path, num_classes: int = 5) -> tuple[Path, Path]:
    """The first ``num_classes`` classes of the synthetic dataset (4 groups x 1 clip of 12 frames each) as a
    user's own UCF101-format set: ``(videos, lists)``."""
    dataset = generate(root / "videos", SyntheticConfig(num_groups=4, clips_per_group=1, num_frames=12),
                       progress=False)
    keep = dataset.classes[:num_classes]
    videos = [(v.relpath, v.group) for v in dataset.videos if v.class_name in keep]
    return root / "videos", write_lists(root / "lists", keep, videos)


def ucf101_like_set(root: Path, num_classes: int = 101, groups: int = 4) -> tuple[Path, Path]:
    """``num_classes`` classes x ``groups`` groups of one small video each (copies of one encoded clip), with
    official-looking UCF101 names and CRLF lists: ``(videos, lists)``."""
    template = write_video(root / "template.avi", moving_frames(12))
    classes = [f"Action{i:03d}" for i in range(num_classes)]
    videos = []
    for name in classes:
        for group in range(1, groups + 1):
            relative = f"{name}/v_{name}_g{group:02d}_c01.avi"
            (root / "UCF-101" / name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(template, root / "UCF-101" / relative)
            videos.append((relative, group))
    return root / "UCF-101", write_lists(root / "ucfTrainTestlist", classes, videos)


def write_caffemodel(path: Path, layers: dict[str, list[tuple[int, ...]]], values: bool = False) -> Path:
    """A caffemodel whose layers declare ``layers``' blob shapes; without ``values`` the blobs hold no numbers
    (the dry run reads declared shapes), so even VGG19's fc6 costs a few bytes."""
    model = caffe_pb2.NetParameter(name="test")
    rng = np.random.default_rng(0)
    for name, shapes in layers.items():
        layer = model.layer.add(name=name, type="Convolution" if name.startswith("conv") else "InnerProduct")
        for shape in shapes:
            blob = layer.blobs.add()
            blob.shape.dim.extend(shape)
            if values:
                blob.data.extend(rng.standard_normal(int(np.prod(shape))).astype(np.float32))
    path.write_bytes(model.SerializeToString())
    return path
