"""UCF101 split parser (official ``ucfTrainTestlist`` layout).

Files in ``splits_dir``:

- ``classInd.txt``: lines ``"1 ApplyEyeMakeup"`` (1-based index, class name).
- ``trainlist0{k}.txt``: lines ``"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"`` (1-based label).
- ``testlist0{k}.txt``: lines ``"ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"`` (path only).

Videos live at ``<videos_root>/<Class>/<name>.avi``; the video id is ``<Class>/<name>``.
Labels returned are 0-based.
"""

from __future__ import annotations

from pathlib import Path

from mfuse.conventions import check_split
from mfuse.datasets.common import (RecordCollector, SplitError, SplitProblem, VideoRecord, read_list,
                                   video_id_of)

NAME = "ucf101"
_OTHER_SUBSET = {"train": "test", "test": "train"}
#: File endings that mark the end of a video name in a list line (what follows is a label).
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".mpg", ".mpeg")


def load_classes(splits_dir: Path) -> list[str]:
    """Class names in label order (``classes[label]``) from ``classInd.txt``.

    Raises ``SplitError`` naming file and line for malformed lines, duplicate names or indices, and
    indices that are not exactly 1..C.
    """
    path = Path(splits_dir) / "classInd.txt"
    problems: list[SplitProblem] = []
    by_index: dict[int, str] = {}
    seen_names: dict[str, int] = {}
    for number, line in read_list(path):
        fields = line.split(None, 1)
        if len(fields) != 2 or not fields[0].isdigit():
            problems.append(SplitProblem(path, number, f"expected '<index> <class>', got {line!r}"))
            continue
        index, name = int(fields[0]), fields[1].strip()
        if index in by_index:
            problems.append(SplitProblem(path, number, f"duplicate class index {index}"))
        elif name in seen_names:
            problems.append(SplitProblem(path, number, f"duplicate class name {name!r} (line {seen_names[name]})"))
        else:
            by_index[index] = name
            seen_names[name] = number
    if not problems and sorted(by_index) != list(range(1, len(by_index) + 1)):
        problems.append(SplitProblem(path, 0, f"class indices must be 1..{len(by_index)} without gaps"))
    if not by_index and not problems:
        problems.append(SplitProblem(path, 0, "no classes"))
    if problems:
        raise SplitError(problems)
    return [by_index[i] for i in sorted(by_index)]


def split_file(splits_dir: Path, split: int, subset: str) -> Path:
    """``trainlist0{split}.txt`` or ``testlist0{split}.txt`` in ``splits_dir``."""
    check_split(split, subset)
    return Path(splits_dir) / f"{subset}list0{split}.txt"


def load_split(splits_dir: Path, split: int, subset: str, videos_root: Path | None = None) -> list[VideoRecord]:
    """The videos of one split and subset, sorted by video id.

    ``videos_root``: when given, each listed video must exist there and ``VideoRecord.path`` points
    to it; when None the paths are relative and not checked. Raises ``SplitError`` listing every bad
    line (unknown class, missing or bad label in a train list, label that contradicts the class folder,
    duplicate, missing video, a video of the other subset's list of the split: train/test leakage).
    """
    classes = load_classes(splits_dir)
    label_of = {name: i for i, name in enumerate(classes)}
    path = split_file(splits_dir, split, subset)
    collector = RecordCollector(videos_root)
    other = split_file(splits_dir, split, _OTHER_SUBSET[subset])
    in_other = _listed_videos(other) if other.is_file() else {}
    for number, line in read_list(path):
        relative, label, problem = _parse_line(line, labelled=subset == "train")
        class_name = relative.replace("\\", "/").split("/", 1)[0]
        video_id = video_id_of(relative)
        if problem:
            collector.problem(path, number, problem)
        elif video_id in in_other:
            collector.problem(path, number, f"video {video_id!r} is also in {other}:{in_other[video_id]} "
                                            f"(a video in both the train and the test list leaks test data)")
        elif "/" not in relative.replace("\\", "/"):
            collector.problem(path, number, f"expected '<Class>/<video>.avi', got {relative!r}")
        elif class_name not in label_of:
            collector.problem(path, number, f"class {class_name!r} is not in classInd.txt")
        elif label is not None and label != label_of[class_name] + 1:
            collector.problem(path, number, f"label {label} contradicts class {class_name!r} "
                                            f"(index {label_of[class_name] + 1} in classInd.txt)")
        else:
            collector.add(path, number, relative, label_of[class_name])
    return collector.result()


def _parse_line(line: str, labelled: bool) -> tuple[str, int | None, str | None]:
    """``"Class/v.avi 12"`` -> (``"Class/v.avi"``, 12, None); ``"Class/v.avi"`` -> (``"Class/v.avi"``, None,
    None); the third item is a problem (a message) or None.

    The label is the last token when the line has one after a video file name, so file names with spaces
    still parse. A train list (``labelled``) needs a 1-based integer label; a test list has none.
    """
    fields = line.rsplit(None, 1)
    if len(fields) == 2 and fields[1].isdigit():
        return fields[0], int(fields[1]), None
    if len(fields) == 2 and fields[0].lower().endswith(VIDEO_SUFFIXES):
        if labelled:
            return fields[0], None, f"bad label {fields[1]!r} of {fields[0]!r}: expected a 1-based class index"
        return fields[0], None, (f"unexpected {fields[1]!r} after {fields[0]!r}: a test list names the video "
                                 f"only")
    if labelled:
        return line, None, f"missing label: expected '<Class>/<video>.avi <class index>', got {line!r}"
    return line, None, None


def _listed_videos(path: Path) -> dict[str, int]:
    """``{video id: line number}`` of every line of a split list (for the train/test overlap check)."""
    return {video_id_of(_parse_line(line, labelled=False)[0]): number for number, line in read_list(path)}
