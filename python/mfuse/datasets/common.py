"""Shared pieces of the split parsers: the video record, split errors and list reading.

A video is named by its *video id*: the path of the video file relative to the dataset root, without
extension, with ``/`` separators (``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01``). Labels are 0-based
class indices.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mfuse.conventions import check_split


@dataclass(frozen=True)
class VideoRecord:
    """One video of a split: ``video_id`` (str), ``label`` (0-based int), ``path`` (the video file)."""

    video_id: str
    label: int
    path: Path


@dataclass(frozen=True)
class SplitProblem:
    """One bad line of a split file."""

    file: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class SplitError(ValueError):
    """A split list is malformed: every problem found, each with its file and line number."""

    def __init__(self, problems: list[SplitProblem]):
        self.problems = list(problems)
        shown = "\n  ".join(str(p) for p in self.problems[:50])
        more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        super().__init__(f"{len(self.problems)} problem(s) in the split lists:\n  {shown}{more}")


def read_list(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, stripped_line)`` of the non-blank lines of a text list.

    Accepts CRLF line ends (the official UCF101 files use them), a UTF-8 BOM and trailing spaces.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split list not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line:
            yield number, line


def video_id_of(relative_path: str) -> str:
    """The video id of a video path relative to the dataset root: ``Class/v_X.avi`` -> ``Class/v_X``."""
    posix = PurePosixPath(relative_path.replace("\\", "/"))
    return str(posix.with_suffix(""))


class RecordCollector:
    """Collects records of one split/subset and the problems found while reading its lists.

    Duplicates (the same video id twice) and, when ``videos_root`` is given, videos listed but missing
    on disk become problems naming the file and line.
    """

    def __init__(self, videos_root: Path | None):
        self.videos_root = Path(videos_root) if videos_root is not None else None
        self.records: list[VideoRecord] = []
        self.problems: list[SplitProblem] = []
        self._first_seen: dict[str, tuple[Path, int]] = {}

    def problem(self, file: Path, line: int, message: str) -> None:
        self.problems.append(SplitProblem(Path(file), line, message))

    def add(self, file: Path, line: int, relative_path: str, label: int) -> None:
        video_id = video_id_of(relative_path)
        if video_id in self._first_seen:
            first_file, first_line = self._first_seen[video_id]
            self.problem(file, line, f"duplicate entry {video_id!r} (first at {first_file}:{first_line})")
            return
        self._first_seen[video_id] = (Path(file), line)
        root = self.videos_root if self.videos_root is not None else Path(".")
        path = root / PurePosixPath(relative_path.replace("\\", "/"))
        if self.videos_root is not None and not path.is_file():
            self.problem(file, line, f"video listed but missing: {path}")
            return
        self.records.append(VideoRecord(video_id, label, path))

    def result(self) -> list[VideoRecord]:
        """The records sorted by video id; raises ``SplitError`` if any problem was found."""
        if self.problems:
            raise SplitError(self.problems)
        return sorted(self.records, key=lambda r: r.video_id)


def union_of_splits(splits: list[list[VideoRecord]]) -> list[VideoRecord]:
    """All distinct videos of several split lists, sorted by video id (for per-video extraction)."""
    by_id: dict[str, VideoRecord] = {}
    for records in splits:
        for record in records:
            by_id.setdefault(record.video_id, record)
    return [by_id[k] for k in sorted(by_id)]
