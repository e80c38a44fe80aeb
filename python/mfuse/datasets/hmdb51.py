"""HMDB51 split parser (official ``testTrainMulti_7030_splits`` layout).

Files in ``splits_dir``: ``<class>_test_split<k>.txt`` (k = 1, 2, 3), one per class and split, lines
``"<video>.avi <flag>"`` with flag 1 = train, 2 = test, 0 = unused (trailing spaces allowed).

Videos live at ``<videos_root>/<class>/<video>.avi``; the video id is ``<class>/<video>``. Classes are
the class names sorted alphabetically; labels are 0-based indices into that list.
"""

from __future__ import annotations

import re
from pathlib import Path

from mfuse.conventions import SPLITS, check_split
from mfuse.datasets.common import RecordCollector, SplitError, SplitProblem, VideoRecord, read_list

NAME = "hmdb51"
_FILE_PATTERN = re.compile(r"^(?P<cls>.+)_test_split(?P<split>[1-3])\.txt$")
_FLAG_OF_SUBSET = {"train": 1, "test": 2}


def _split_files(splits_dir: Path) -> dict[int, dict[str, Path]]:
    """``{split: {class_name: file}}`` for every ``<class>_test_split<k>.txt`` in ``splits_dir``."""
    splits_dir = Path(splits_dir)
    if not splits_dir.is_dir():
        raise FileNotFoundError(f"HMDB51 splits directory not found: {splits_dir}")
    files: dict[int, dict[str, Path]] = {k: {} for k in SPLITS}
    for path in splits_dir.iterdir():
        match = _FILE_PATTERN.match(path.name)
        if match and path.is_file():
            files[int(match["split"])][match["cls"]] = path
    return files


def load_classes(splits_dir: Path) -> list[str]:
    """Class names in label order: the sorted names of the ``<class>_test_split<k>.txt`` files.

    Raises ``SplitError`` if a class lacks the file of one of the 3 splits, or there are no files.
    """
    files = _split_files(splits_dir)
    names = sorted(set().union(*(f.keys() for f in files.values())))
    if not names:
        raise SplitError([SplitProblem(Path(splits_dir), 0, "no '<class>_test_split<k>.txt' files")])
    problems = [SplitProblem(Path(splits_dir) / f"{name}_test_split{k}.txt", 0, "file missing")
                for k, by_class in files.items() for name in names if name not in by_class]
    if problems:
        raise SplitError(problems)
    return names


def load_split(splits_dir: Path, split: int, subset: str, videos_root: Path | None = None) -> list[VideoRecord]:
    """The videos of one split and subset (flag 1 = train, 2 = test), sorted by video id.

    ``videos_root``: when given, each listed video must exist at ``<videos_root>/<class>/<video>``.
    Raises ``SplitError`` listing every bad line (bad flag, malformed line, a video listed twice in
    the split, with both places and a train/test leak named as such, missing video).
    """
    check_split(split, subset)
    classes = load_classes(splits_dir)
    files = _split_files(splits_dir)[split]
    wanted = _FLAG_OF_SUBSET[subset]
    collector = RecordCollector(videos_root)
    seen: dict[str, tuple[Path, int, int]] = {}
    for label, class_name in enumerate(classes):
        path = files[class_name]
        for number, line in read_list(path):
            fields = line.rsplit(None, 1)
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                collector.problem(path, number, f"expected '<video>.avi <0|1|2>', got {line!r}")
                continue
            video, flag = fields[0], int(fields[1])
            if "/" in video or "\\" in video:
                collector.problem(path, number, f"expected a bare file name, got {video!r}")
                continue
            if video in seen:
                first_file, first_line, first_flag = seen[video]
                leak = ("; listed for both train and test, which leaks test data"
                        if {flag, first_flag} == set(_FLAG_OF_SUBSET.values()) else "")
                collector.problem(path, number,
                                  f"duplicate entry {video!r} (first at {first_file}:{first_line}){leak}")
                continue
            seen[video] = (path, number, flag)
            if flag == wanted:
                collector.add(path, number, f"{class_name}/{video}", label)
    return collector.result()
