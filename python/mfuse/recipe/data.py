"""The recipe's data: the split lists, the videos held out of training for the fusion weights, and the data
preparation (frames, flow, frame stores) of every split.

Held-out videos: the weight search of late fusion (``mfuse.evaluation.search_weights``) must never see a test
video, so it runs on training videos that the nets did not train on. Per split, a seeded share
(``heldout_fraction``) of each class's training videos is held out, whole UCF101 groups at a time (clips of
one group share actors and scenes, so a held-out clip whose group was trained on would look easier than it
is); lists without groups hold out single videos. The nets train on the rest. Their frame stores are the
``train`` stores of ``<data>/heldout/`` (which reads the same frame folders). ``heldout_fraction = 0`` trains
on the whole list, as the paper, and the weight search is skipped.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mfuse.conventions import SUBSETS
from mfuse.datasets import VideoRecord
from mfuse.datasets.common import union_of_splits
from mfuse.fileio import write_atomic
from mfuse.prep.parallel import worker_pool
from mfuse.prep.pipeline import STAGES, Summary, build_stores, extract_videos, load_splits, write_failures, \
    write_summary
from mfuse.recipe.stages import RecipeError
from mfuse.stores.format import database_name

#: The held-out stores' folder under the data root, and the subset they are stored as.
HELDOUT_DIR = "heldout"
HELDOUT_SUBSET = "train"
#: The record of which videos were held out, under the data root.
HELDOUT_FILE = "heldout.json"
#: The held-out choice depends on this seed and the split only, so every training seed sees the same data.
HELDOUT_SEED = 0
_GROUP = re.compile(r"_g(\d+)_c\d+$")


class DataError(RecipeError):
    """Data preparation left videos out; the message names the failures file."""


def video_group(video_id: str) -> str:
    """The group of a video: ``<class>/g<NN>`` for UCF101-style names (``v_X_g08_c01``), else the video itself."""
    match = _GROUP.search(video_id)
    return f"{video_id.split('/')[0]}/g{match.group(1)}" if match else video_id


def hold_out(records: Sequence[VideoRecord], fraction: float, split: int, seed: int = HELDOUT_SEED
             ) -> tuple[list[VideoRecord], list[VideoRecord]]:
    """``(kept, held_out)`` of a train list: per class, ``round(fraction * groups)`` groups (at least one when
    ``fraction > 0``, never all), chosen by ``seed`` and ``split``."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"heldout fraction must be in [0, 1), got {fraction}")
    by_class: dict[int, list[str]] = {}
    for record in records:
        groups = by_class.setdefault(record.label, [])
        if video_group(record.video_id) not in groups:
            groups.append(video_group(record.video_id))
    chosen: set[str] = set()
    rng = np.random.default_rng([seed, split])
    for label in sorted(by_class):
        groups = sorted(by_class[label])
        count = 0 if fraction == 0 or len(groups) < 2 else min(max(1, round(fraction * len(groups))), len(groups) - 1)
        chosen.update(groups[i] for i in sorted(rng.choice(len(groups), count, replace=False)))
    kept = [r for r in records if video_group(r.video_id) not in chosen]
    held = [r for r in records if video_group(r.video_id) in chosen]
    return kept, held


@dataclass(frozen=True)
class DatasetLists:
    """The classes and lists of a run: ``official[(split, subset)]``, the ``train`` lists the nets train on
    (official minus held out) and the held-out lists ``heldout[split]``."""
    format: str
    classes: list[str]
    official: dict[tuple[int, str], list[VideoRecord]]
    train: dict[int, list[VideoRecord]]
    heldout: dict[int, list[VideoRecord]]

    @property
    def videos(self) -> list[VideoRecord]:
        return union_of_splits(list(self.official.values()))

    def store_lists(self) -> dict[tuple[int, str], list[VideoRecord]]:
        """The lists of the main frame stores: the training lists and the official test lists."""
        return {**{(k, "train"): v for k, v in self.train.items()},
                **{(k, s): v for (k, s), v in self.official.items() if s != "train"}}

    def describe(self) -> str:
        lines = [f"{self.format} lists: {len(self.classes)} classes, {len(self.videos)} videos"]
        for split in sorted(self.train):
            held = len(self.heldout[split])
            lines.append(f"  split {split}: {len(self.official[(split, 'train')])} train"
                         + (f" ({held} held out for the fusion weights)" if held else "")
                         + f", {len(self.official[(split, 'test')])} test")
        return "\n".join(lines)


def dataset_lists(list_format: str, lists_dir: Path, videos_root: Path, splits: Sequence[int],
                  heldout_fraction: float) -> DatasetLists:
    """Parses the split lists (``mfuse.datasets``: every bad line is a ``SplitError``) and holds out videos."""
    classes, official = load_splits(list_format, Path(lists_dir), Path(videos_root), splits)
    train, heldout = {}, {}
    for split in splits:
        train[split], heldout[split] = hold_out(official[(split, "train")], heldout_fraction, split)
    return DatasetLists(list_format, classes, official, train, heldout)


def heldout_root(data_root: Path) -> Path:
    return Path(data_root) / HELDOUT_DIR


def store_path(root: Path, split: int, subset: str, modality: str, storage: str) -> Path:
    """A frame store as ``mfuse.stores.reader.open_frame_store`` finds it: an LMDB folder or a folder index."""
    name = database_name(split, subset, modality)
    return Path(root) / "lmdb" / name if storage == "lmdb" else Path(root) / "lists" / f"{name}.json"


def store_paths(data_root: Path, lists: DatasetLists, modalities: Sequence[str], storage: str) -> list[Path]:
    """Every frame store the preparation makes: per split the train and test stores, and the held-out ones."""
    found = [store_path(data_root, split, subset, m, storage)
             for split in lists.train for subset in SUBSETS for m in modalities]
    found += [store_path(heldout_root(data_root), split, HELDOUT_SUBSET, m, storage)
              for split, held in lists.heldout.items() if held for m in modalities]
    return found


def prepare_data(lists: DatasetLists, data_root: Path, settings, storage: str = "lmdb", workers: int = 2,
                 progress: bool = True) -> Summary:
    """Frames + flow of every listed video into ``<data_root>/frames``, the frame stores of every split (the
    training lists without the held-out videos) and the held-out stores; writes ``summary.json``,
    ``failures.tsv`` and ``heldout.json``.

    Raises:
        DataError: when a video could not be prepared (the stores would silently lack it).
    """
    data_root = Path(data_root)
    data_root.mkdir(parents=True, exist_ok=True)
    summary = Summary(lists.format, videos=len(lists.videos))
    held = {(k, HELDOUT_SUBSET): v for k, v in lists.heldout.items() if v}
    with worker_pool(workers) as pool:
        summary.stages[STAGES[0]], metas = extract_videos(lists.videos, data_root / "frames", settings, pool,
                                                          progress)
        summary.stages[STAGES[1]] = build_stores(lists.format, lists.classes, lists.store_lists(), data_root,
                                                 settings, storage, pool=pool, progress=progress)
        if held:
            root = heldout_root(data_root)
            root.mkdir(exist_ok=True)
            if not (root / "frames").exists():
                os.symlink(os.path.join("..", "frames"), root / "frames")
            build_stores(lists.format, lists.classes, held, root, settings, storage, pool=pool, progress=progress)
    summary.frames = sum(m["num_frames"] for m in metas.values())
    summary.flow_images = sum(m["num_flow"] for m in metas.values())
    summary.short_for_stack = sorted(v for v, m in metas.items() if m["short_for_stack"])
    write_failures(data_root / "failures.tsv", summary.failures)
    write_summary(data_root / "summary.json", summary)
    write_atomic(data_root / HELDOUT_FILE, json.dumps(
        {str(k): [r.video_id for r in v] for k, v in lists.heldout.items()}, indent=1))
    if summary.failures:
        first = summary.failures[0]
        raise DataError(f"{len(summary.failures)} video(s) could not be prepared, e.g. {first.video_id}: "
                        f"{first.reason}; see {data_root / 'failures.tsv'} (fix or remove them from the lists)")
    return summary
