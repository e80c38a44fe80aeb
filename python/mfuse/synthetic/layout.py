"""On-disk layouts of the synthetic dataset: file names, group-based splits and list files.

UCF101 layout (``layout="ucf101"``)::

    <root>/<Class>/v_<Class>_g<GG>_c<CC>.avi
    <root>/ucfTrainTestlist/classInd.txt           "1 BlueBounce"              (1-based, CRLF)
    <root>/ucfTrainTestlist/trainlist0<k>.txt      "Class/v_Class_gGG_cCC.avi 3"  (1-based label, CRLF)
    <root>/ucfTrainTestlist/testlist0<k>.txt       "Class/v_Class_gGG_cCC.avi"    (CRLF)

HMDB51 layout (``layout="hmdb51"``)::

    <root>/<class>/<class>_g<GG>_c<CC>.avi
    <root>/testTrainMulti_7030_splits/<class>_test_split<k>.txt   "<video>.avi 1 " (1 train, 2 test; LF)

Splits follow UCF101's rule scaled to ``G`` groups: UCF101 has 25 groups and split k tests groups
7(k-1)+1 .. 7k (groups 22-25 are always in training). With ``G`` groups a block of
``b = max(1, min(round(7 G / 25), (G - 1) // 3))`` groups is tested per split: split k tests groups
b(k-1)+1 .. bk, and at least one group is in training for every split. ``G = 25`` gives UCF101's rule;
``G >= 4`` is required. A group never appears on both sides of a split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mfuse.conventions import SPLITS
from mfuse.fileio import write_atomic

UCF101_LIST_DIR = "ucfTrainTestlist"
HMDB51_SPLIT_DIR = "testTrainMulti_7030_splits"
LAYOUTS = ("ucf101", "hmdb51")


@dataclass(frozen=True)
class SyntheticVideo:
    """One generated video: its class (0-based ``label`` and layout-specific ``class_name``), group and clip
    (both 1-based), and its path relative to the dataset root."""

    label: int
    class_name: str
    group: int
    clip: int
    relpath: str

    @property
    def video_id(self) -> str:
        """The project's video id: the relative path without extension."""
        return self.relpath.rsplit(".", 1)[0]


def split_block_size(num_groups: int) -> int:
    """Number of groups tested in each split (7 for UCF101's 25 groups)."""
    if num_groups < 4:
        raise ValueError(f"num_groups must be >= 4 to form 3 group-disjoint splits, got {num_groups}")
    return max(1, min(round(7 * num_groups / 25), (num_groups - 1) // 3))


def groups_tested(num_groups: int, split: int) -> range:
    """The 1-based groups tested in ``split`` (1, 2 or 3)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split}")
    block = split_block_size(num_groups)
    return range(block * (split - 1) + 1, block * split + 1)


def video_relpath(layout: str, class_name: str, group: int, clip: int) -> str:
    """Path of a video relative to the dataset root, UCF101 or HMDB51 style."""
    if layout == "ucf101":
        return f"{class_name}/v_{class_name}_g{group:02d}_c{clip:02d}.avi"
    if layout == "hmdb51":
        return f"{class_name}/{class_name}_g{group:02d}_c{clip:02d}.avi"
    raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")


def _write_text(path: Path, lines: list[str], newline: str) -> None:
    """Write ``lines``, each ended by ``newline``, atomically, as ASCII."""
    write_atomic(path, "".join(line + newline for line in lines).encode("ascii"))


def write_ucf101_lists(root: Path, classes: list[str], videos: list[SyntheticVideo], num_groups: int) -> list[Path]:
    """``classInd.txt`` and ``train/testlist0{1,2,3}.txt`` under ``<root>/ucfTrainTestlist``, CRLF."""
    list_dir = Path(root) / UCF101_LIST_DIR
    written = [list_dir / "classInd.txt"]
    _write_text(written[0], [f"{i + 1} {name}" for i, name in enumerate(classes)], "\r\n")
    ordered = sorted(videos, key=lambda v: v.relpath)
    for split in SPLITS:
        tested = groups_tested(num_groups, split)
        train = [f"{v.relpath} {v.label + 1}" for v in ordered if v.group not in tested]
        test = [v.relpath for v in ordered if v.group in tested]
        for name, lines in ((f"trainlist0{split}.txt", train), (f"testlist0{split}.txt", test)):
            _write_text(list_dir / name, lines, "\r\n")
            written.append(list_dir / name)
    return written


def write_hmdb51_lists(root: Path, classes: list[str], videos: list[SyntheticVideo], num_groups: int) -> list[Path]:
    """``<class>_test_split<k>.txt`` under ``<root>/testTrainMulti_7030_splits``: "<video>.avi <1|2> " lines.

    Flag 1 = train, 2 = test (HMDB51's 0 = unused is not produced); trailing space and LF as in HMDB51.
    """
    split_dir = Path(root) / HMDB51_SPLIT_DIR
    written = []
    for label, class_name in enumerate(classes):
        own = sorted((v for v in videos if v.label == label), key=lambda v: v.relpath)
        for split in SPLITS:
            tested = groups_tested(num_groups, split)
            lines = [f"{Path(v.relpath).name} {2 if v.group in tested else 1} " for v in own]
            path = split_dir / f"{class_name}_test_split{split}.txt"
            _write_text(path, lines, "\n")
            written.append(path)
    return written


def write_lists(layout: str, root: Path, classes: list[str], videos: list[SyntheticVideo],
                num_groups: int) -> list[Path]:
    """Write the split files of ``layout``; returns their paths."""
    writers = {"ucf101": write_ucf101_lists, "hmdb51": write_hmdb51_lists}
    if layout not in writers:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    return writers[layout](root, classes, videos, num_groups)
