"""The pretraining stage: a backbone trained once on the synthetic image task, as a stand-in for ImageNet.

``pretrain_backbone(out, PretrainConfig(...))`` writes, under ``out``::

    images/train_lmdb, images/val_lmdb   Caffe Datum LMDBs of JPEG-encoded images (Caffe's ``Data`` layer)
    pretrain_{train_val,solver}.prototxt the classification net: the backbone, fc6, fc7 and ``fc8`` over the
                                         image categories, named as an ImageNet model
    snap_iter_<N>.caffemodel, train.log  Caffe's snapshot and log
    pretrained.caffemodel                the final model (a copy of the last snapshot)
    pretrain.json                        the config, the validation accuracy; written last: marks completion

and returns the model. A folder whose ``pretrain.json`` holds the same config is reused as it is (the stage is
cached like the data), another config is an error unless ``overwrite``. The model has exactly the layer names
and shapes of the backbone (conv1..conv5, fc6, fc7, plus fc8), so the stream nets start from it through
:func:`mfuse.surgery.init_from_imagenet` -- the code path of a real ImageNet caffemodel
(``tools/surgery.py imagenet-init``), with ``cross_modality`` for the temporal net.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import lmdb
import numpy as np
from caffe.proto import caffe_pb2
from tqdm import tqdm

from mfuse.fileio import atomic_path, write_atomic
from mfuse.nets import solvers
from mfuse.nets.backbones import get_backbone

from mfuse.nets.build_all import net_text
from mfuse.pretrain.images import ImageTaskConfig, plan_images, render_image
from mfuse.pretrain.net import pretrain_net
from mfuse.training import train

MANIFEST = "pretrain.json"
PRETRAINED_MODEL = "pretrained.caffemodel"
STAGE_VERSION = 1
_JPEG_QUALITY = 95
_TEST_ACCURACY = re.compile(r"Test net output #\d+: accuracy = ([-+.\deE]+)")


@dataclass(frozen=True)
class PretrainConfig:
    """What to pretrain and how.

    Attributes:
        images: the image task.
        backbone: key of ``mfuse.nets.backbones.BACKBONES``.
        crop_size: side of the random (train) / centre (val) crop; None: the backbone's.
        schedule: the solver's schedule (its ``batch`` is the effective batch).
        batch_size: images per pass (divides ``schedule.batch``).
        dropout: after fc6 and fc7 (0: with dropout the tiny backbone's loss sat at chance, E3 of
            docs/demo-design-notes.md).
        seed: the solver's random seed.
    """
    images: ImageTaskConfig = field(default_factory=ImageTaskConfig)
    backbone: str = "tiny"
    crop_size: int | None = None
    schedule: solvers.Schedule = solvers.TINY_PRETRAIN
    batch_size: int = 32
    dropout: float = 0.0
    seed: int = 1

    def crop(self) -> int:
        return self.crop_size or get_backbone(self.backbone).crop_size

    def as_json(self) -> dict:
        data = json.loads(json.dumps(asdict(self)))
        data["crop_size"] = self.crop()
        data["version"] = STAGE_VERSION
        return data


def write_image_lmdb(path: Path, config: ImageTaskConfig, subset: str, progress: bool = True) -> int:
    """Renders ``subset`` of the image task into a Datum LMDB at ``path`` (JPEG-encoded, shuffled order so that
    Caffe's sequential ``Data`` layer sees mixed labels); returns the number of images."""
    from caffe.proto import caffe_pb2

    plan = plan_images(config, subset)
    order = _shuffled(len(plan), config.seed)
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    width, height = config.size
    env = lmdb.open(str(path), map_size=max(1 << 26, len(plan) * width * height * 3 * 2))
    try:
        txn = env.begin(write=True)
        for key, i in enumerate(tqdm(order, desc=f"pretraining images ({subset})", unit="img", disable=not progress)):
            label, index = plan[i]
            ok, jpeg = cv2.imencode(".jpg", render_image(config, label, index), [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
            if not ok:
                raise RuntimeError(f"JPEG encoding failed for pretraining image {label}/{index}")
            datum = caffe_pb2.Datum(channels=3, height=height, width=width, data=jpeg.tobytes(), label=label,
                                    encoded=True)
            txn.put(f"{key:08d}".encode(), datum.SerializeToString())
            if key % 1000 == 999:
                txn.commit()
                txn = env.begin(write=True)
        txn.commit()
    finally:
        env.close()
    return len(plan)


def _shuffled(count: int, seed: int) -> list[int]:
    return np.random.default_rng(np.random.SeedSequence([seed, 0x5EED])).permutation(count).tolist()


def _write_nets(out: Path, config: PretrainConfig, num_val: int) -> Path:
    crop = config.crop()
    train_val = pretrain_net(config.backbone, config.images.num_classes, str(out / "images" / "train_lmdb"),
                             str(out / "images" / "val_lmdb"), config.batch_size, crop, config.dropout)
    net_path = write_atomic(out / "pretrain_train_val.prototxt", net_text(
        train_val, [f"mfuse pretraining of the {config.backbone} backbone on the synthetic image task "
                    f"({config.images.num_classes} categories); written by mfuse.pretrain.stage."]))
    val_iters = max(1, -(-num_val // config.batch_size))
    schedule = replace(config.schedule, test_iter=val_iters)
    solver = solvers.make_solver(str(net_path), schedule, config.batch_size, snapshot_prefix=str(out / "snap"),
                                 random_seed=config.seed)
    return write_atomic(out / "pretrain_solver.prototxt",
                        solvers.solver_text(solver, schedule, config.batch_size,
                                            ("mfuse pretraining solver (mfuse.pretrain.stage).",)))


def _holds_other_config(out: Path, config: PretrainConfig) -> bool:
    manifest = out / MANIFEST
    return manifest.is_file() and json.loads(manifest.read_text()).get("config") != config.as_json()


def pretrain_backbone(out: str | Path, config: PretrainConfig = PretrainConfig(), overwrite: bool = False,
                      progress: bool = True) -> Path:
    """Pretrains ``config.backbone`` on the image task under ``out`` unless done; returns the caffemodel.

    Raises:
        FileExistsError: ``out`` holds a pretraining with another config (and not ``overwrite``).
        mfuse.training.TrainingError: caffe failed (its log's tail in the message).
    """
    out = Path(out).resolve()
    if (out / MANIFEST).is_file() and (out / PRETRAINED_MODEL).is_file() and not _holds_other_config(out, config):
        return out / PRETRAINED_MODEL
    if _holds_other_config(out, config):
        if not overwrite:
            raise FileExistsError(f"{out / MANIFEST} holds a pretraining with another config; use another folder "
                                  "or overwrite=True")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    counts = {subset: write_image_lmdb(out / "images" / f"{subset}_lmdb", config.images, subset, progress)
              for subset in ("train", "val")}
    solver = _write_nets(out, config, counts["val"])
    final = train(solver, out / "train.log", cwd=out, progress=progress)
    with atomic_path(out / PRETRAINED_MODEL) as tmp:
        shutil.copyfile(final, tmp)
    accuracy = _TEST_ACCURACY.findall((out / "train.log").read_text())
    write_atomic(out / MANIFEST, json.dumps({"config": config.as_json(), "images": counts,
                                             "classes": config.images.class_names(),
                                             "val_accuracy": float(accuracy[-1]) if accuracy else None,
                                             "model": PRETRAINED_MODEL}, indent=1) + "\n")
    return out / PRETRAINED_MODEL
