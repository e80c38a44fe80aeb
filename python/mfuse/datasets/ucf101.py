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
from mfuse.datasets.common import RecordCollector, SplitError, SplitProblem, VideoRecord, read_list

NAME = "ucf101"


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
    line (unknown class, label that contradicts the class folder, duplicate, missing video).
    """
    classes = load_classes(splits_dir)
    label_of = {name: i for i, name in enumerate(classes)}
    path = split_file(splits_dir, split, subset)
    collector = RecordCollector(videos_root)
    for number, line in read_list(path):
        relative, label = _parse_line(line)
        class_name = relative.replace("\\", "/").split("/", 1)[0]
        if "/" not in relative.replace("\\", "/"):
            collector.problem(path, number, f"expected '<Class>/<video>.avi', got {relative!r}")
        elif class_name not in label_of:
            collector.problem(path, number, f"class {class_name!r} is not in classInd.txt")
        elif label is not None and label != label_of[class_name] + 1:
            collector.problem(path, number, f"label {label} contradicts class {class_name!r} "
                                            f"(index {label_of[class_name] + 1} in classInd.txt)")
        else:
            collector.add(path, number, relative, label_of[class_name])
    return collector.result()


def _parse_line(line: str) -> tuple[str, int | None]:
    """``"Class/v.avi 12"`` -> (``"Class/v.avi"``, 12); ``"Class/v.avi"`` -> (``"Class/v.avi"``, None).

    The label is the last token when it is an integer, so file names with spaces still parse.
    """
    fields = line.rsplit(None, 1)
    if len(fields) == 2 and fields[1].isdigit():
        return fields[0], int(fields[1])
    return line, None
