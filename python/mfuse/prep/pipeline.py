"""The preparation pipeline: split lists -> frame folders (frames + flow) -> frame stores.

Stages (each a plain function, each run on a process pool with a progress bar):

- :func:`extract_videos`: every video of the chosen splits -> ``<out>/frames/<video_id>/`` (see
  :mod:`mfuse.prep.frames`); videos already complete with the same settings are skipped.
- :func:`build_stores`: per (split, subset, modality) an LMDB database ``<out>/lmdb/<name>/`` and/or
  a frame-folder index ``<out>/lists/<name>.json`` (see :mod:`mfuse.prep.lmdb_store`; read by
  :mod:`mfuse.stores.reader`).

:func:`prepare_dataset` runs both and returns a :class:`Summary`. Unusable videos are recorded in
``<out>/failures.tsv`` (``stage, video_id, path, reason``) and skipped; with ``shard=(i, n)`` only
every n-th video (extraction) or database (stores) starting at i is handled, and the files get a
``-shard<i>of<n>`` suffix so several machines can share one output folder.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from multiprocessing.pool import Pool
from pathlib import Path

from mfuse.conventions import MODALITIES, SPLITS, STACK_LENGTH, STORAGES, SUBSETS
from mfuse.datasets import VideoRecord, get_dataset, union_of_splits
from mfuse.fileio import write_atomic
from mfuse.prep.frames import (ExtractSettings, VideoError, extract_video, is_video_complete, partial_decode,
                               read_meta)
from mfuse.prep.lmdb_store import VideoSource, build_lmdb, write_folder_index
from mfuse.prep.parallel import imap_progress, worker_pool
from mfuse.stores.format import StoreIndex, VideoEntry, database_name

STAGES = ("extract", "stores")
#: Where :func:`build_stores` writes: LMDB databases, frame-folder indexes, or both.
STORE_CHOICES = STORAGES + ("both",)


#: ``Failure.level`` values: a video left out, or one kept with a problem (e.g. decoded partly).
LEVELS = ("error", "warning")


@dataclass(frozen=True)
class Failure:
    """A video a stage could not use (``level`` error), or used with a problem worth knowing (warning)."""

    stage: str
    video_id: str
    path: str
    reason: str
    level: str = "error"


@dataclass
class StageReport:
    """What one stage did. ``seconds`` is wall time; ``worker_seconds`` sums time per step."""

    processed: int = 0
    skipped: int = 0
    failures: list[Failure] = field(default_factory=list)
    warnings: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    worker_seconds: dict[str, float] = field(default_factory=dict)
    disk_bytes: int = 0


@dataclass
class Summary:
    """The outcome of :func:`prepare_dataset`."""

    dataset: str
    videos: int = 0
    frames: int = 0
    flow_images: int = 0
    short_for_stack: list[str] = field(default_factory=list)
    stages: dict[str, StageReport] = field(default_factory=dict)

    @property
    def failures(self) -> list[Failure]:
        """One failure per video: the first stage's (a video that failed extraction is also
        missing from the stores)."""
        first: dict[str, Failure] = {}
        for report in self.stages.values():
            for failure in report.failures:
                first.setdefault(failure.video_id, failure)
        return list(first.values())

    @property
    def warnings(self) -> list[Failure]:
        """Videos kept with a problem (level ``warning``), e.g. decoded partly."""
        return [warning for report in self.stages.values() for warning in report.warnings]


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` (0 <= i < n) -> ``(i, n)``."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"shard must look like 'i/n', got {text!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"shard {text!r}: need 0 <= i < n")
    return index, count


def select_shard(items: Sequence, shard: tuple[int, int] | None) -> list:
    """Items ``i, i+n, i+2n, ...`` of ``items`` for ``shard = (i, n)``; all of them for None."""
    if shard is None:
        return list(items)
    index, count = shard
    return list(items[index::count])


def load_splits(dataset: str, splits_dir: Path, videos_root: Path, splits: Sequence[int] = SPLITS
                ) -> tuple[list[str], dict[tuple[int, str], list[VideoRecord]]]:
    """``(classes, {(split, subset): records})`` of ``dataset``, paths under ``videos_root``; raises
    ``SplitError`` on bad lists. A listed video missing on disk is not a list problem: extraction reports it
    as a failed video, like a corrupt one."""
    module = get_dataset(dataset)
    classes = module.load_classes(splits_dir)
    lists = {(k, subset): [replace(r, path=Path(videos_root) / r.path)
                           for r in module.load_split(splits_dir, k, subset, videos_root=None)]
             for k in splits for subset in SUBSETS}
    return classes, lists


# ------------------------------------------------------------------------------------- extraction

def _extract_one(job: tuple[VideoRecord, Path, ExtractSettings]) -> dict:
    """Extract one video in a worker; never raises for a bad video (the result says what happened)."""
    record, video_dir, settings = job
    result = {"video_id": record.video_id, "path": str(record.path), "status": "done", "seconds": {}}
    try:
        if is_video_complete(video_dir, settings):
            result["status"] = "skipped"
            result["meta"] = read_meta(video_dir)
        elif not Path(record.path).is_file():
            raise VideoError(f"video file missing: {record.path}")
        else:
            outcome = extract_video(record.path, video_dir, settings)
            result["meta"], result["seconds"] = outcome.meta, outcome.seconds
        result["bytes"] = sum(e.stat().st_blocks * 512 for e in os.scandir(video_dir))
    except VideoError as error:
        result.update(status="failed", reason=str(error))
    except Exception as error:  # noqa: BLE001 - one bad video must not stop a dataset
        result.update(status="failed", reason=f"{type(error).__name__}: {error}")
    return result


def extract_videos(records: Sequence[VideoRecord], frames_root: Path, settings: ExtractSettings,
                   pool: Pool | None = None, progress: bool = True) -> tuple[StageReport, dict[str, dict]]:
    """Extract frames (and flow) of ``records`` into ``<frames_root>/<video_id>/``, one video per task
    on ``pool`` (:func:`mfuse.prep.parallel.worker_pool`; None runs inline).

    Returns the stage report and ``{video_id: meta}`` of every complete video.
    """
    start = time.perf_counter()
    report = StageReport(worker_seconds={"decode": 0.0, "flow": 0.0, "write": 0.0})
    metas: dict[str, dict] = {}
    jobs = [(r, Path(frames_root) / r.video_id, settings) for r in records]
    for result in imap_progress(_extract_one, jobs, pool, "frames+flow", progress=progress):
        if result["status"] == "failed":
            report.failures.append(Failure("extract", result["video_id"], result["path"], result["reason"]))
            continue
        report.skipped += result["status"] == "skipped"
        report.processed += result["status"] == "done"
        report.disk_bytes += result["bytes"]
        metas[result["video_id"]] = result["meta"]
        warning = partial_decode(result["meta"])
        if warning is not None:
            report.warnings.append(Failure("extract", result["video_id"], result["path"], warning, "warning"))
        for step, seconds in result["seconds"].items():
            report.worker_seconds[step] += seconds
    report.failures.sort(key=lambda f: f.video_id)
    report.warnings.sort(key=lambda f: f.video_id)
    report.seconds = time.perf_counter() - start
    return report, metas


# ----------------------------------------------------------------------------------------- stores

def store_modalities(settings: ExtractSettings) -> tuple[str, ...]:
    """The modalities a dataset extracted with ``settings`` has: rgb, plus flow and mag with flow."""
    return MODALITIES if settings.flow_algorithm is not None else ("rgb",)


def build_stores(dataset: str, classes: list[str], lists: dict[tuple[int, str], list[VideoRecord]],
                 out_root: Path, settings: ExtractSettings, storage: str = "lmdb",
                 modalities: Sequence[str] | None = None, pool: Pool | None = None,
                 shard: tuple[int, int] | None = None, progress: bool = True) -> StageReport:
    """Build the frame stores of every (split, subset, modality) from the extracted frame folders.

    Videos whose folder is not complete (failed or not extracted) are left out and reported.
    """
    if storage not in STORE_CHOICES:
        raise ValueError(f"storage must be one of {STORE_CHOICES}, got {storage!r}")
    modalities = tuple(modalities) if modalities is not None else store_modalities(settings)
    missing = set(modalities) - set(store_modalities(settings))
    if missing:
        raise ValueError(f"cannot build {sorted(missing)} stores: frames were extracted without flow")
    start = time.perf_counter()
    out_root, frames_root = Path(out_root), Path(out_root) / "frames"
    report = StageReport()
    sources, metas, report.failures = complete_videos(union_of_splits(list(lists.values())), frames_root,
                                                      settings)
    jobs = [(k, subset, modality) for (k, subset) in sorted(lists) for modality in modalities]
    for k, subset, modality in select_shard(jobs, shard):
        index = _store_index(dataset, classes, k, subset, modality, lists[(k, subset)], metas, settings)
        name = database_name(k, subset, modality)
        if storage in ("folder", "both"):
            write_folder_index(out_root / "lists" / f"{name}.json", index, frames_root)
        if storage in ("lmdb", "both"):
            stats = build_lmdb(out_root / "lmdb" / name, index, sources, pool, progress)
            report.skipped += stats["skipped"]
            report.processed += not stats["skipped"]
            report.disk_bytes += stats["bytes"]
    report.seconds = time.perf_counter() - start
    return report


def complete_videos(records: Sequence[VideoRecord], frames_root: Path, settings: ExtractSettings
                    ) -> tuple[dict[str, VideoSource], dict[str, dict], list[Failure]]:
    """``(sources, metas, failures)``: the videos whose frame folders are complete, and the others."""
    sources, metas, failures = {}, {}, []
    for record in records:
        video_dir = Path(frames_root) / record.video_id
        if is_video_complete(video_dir, settings):
            meta = read_meta(video_dir)
            metas[record.video_id] = meta
            sources[record.video_id] = VideoSource(video_dir, meta["height"], meta["width"])
        else:
            failures.append(Failure("stores", record.video_id, str(record.path),
                                    "frame folder missing or incomplete (extraction failed or not run)"))
    return sources, metas, failures


def _store_index(dataset, classes, split, subset, modality, records, metas, settings) -> StoreIndex:
    count_key = "num_frames" if modality == "rgb" else "num_flow"
    videos = [VideoEntry(r.video_id, r.label, metas[r.video_id][count_key]) for r in records
              if r.video_id in metas]
    return StoreIndex(dataset, split, subset, modality, list(classes), videos, settings.as_json())


# ---------------------------------------------------------------------------------------- driver

def prepare_dataset(dataset: str, videos_root: Path, splits_dir: Path, out_root: Path,
                    settings: ExtractSettings = ExtractSettings(), splits: Sequence[int] = SPLITS,
                    storage: str = "lmdb", modalities: Sequence[str] | None = None, workers: int = 1,
                    shard: tuple[int, int] | None = None, stages: Sequence[str] = STAGES,
                    progress: bool = True) -> Summary:
    """Run the chosen stages for ``dataset`` (``ucf101`` or ``hmdb51``) and return the summary.

    Writes ``<out_root>/frames/``, ``<out_root>/lmdb/`` and/or ``<out_root>/lists/``, the failures
    file and ``summary.json`` (names suffixed ``-shard<i>of<n>`` when sharded).
    """
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stages {sorted(unknown)}; known: {STAGES}")
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    classes, lists = load_splits(dataset, splits_dir, videos_root, splits)
    videos = union_of_splits(list(lists.values()))
    summary = Summary(dataset, videos=len(videos))
    metas: dict[str, dict] = {}
    with worker_pool(workers) as pool:
        if "extract" in stages:
            report, metas = extract_videos(select_shard(videos, shard), out_root / "frames", settings,
                                           pool, progress)
            summary.stages["extract"] = report
        if "stores" in stages:
            summary.stages["stores"] = build_stores(dataset, classes, lists, out_root, settings, storage,
                                                    modalities, pool, shard, progress)
    if "extract" not in stages:
        metas = complete_videos(videos, out_root / "frames", settings)[1]
    summary.frames = sum(m["num_frames"] for m in metas.values())
    summary.flow_images = sum(m["num_flow"] for m in metas.values())
    summary.short_for_stack = sorted(v for v, m in metas.items() if m["short_for_stack"])
    suffix = f"-shard{shard[0]}of{shard[1]}" if shard is not None else ""
    write_failures(out_root / f"failures{suffix}.tsv", summary.failures + summary.warnings)
    write_summary(out_root / f"summary{suffix}.json", summary)
    return summary


def write_failures(path: Path, failures: Sequence[Failure]) -> None:
    """``stage  video_id  path  reason  level`` lines (tab-separated, with a header), written atomically."""
    lines = ["stage\tvideo_id\tpath\treason\tlevel"]
    for f in failures:
        lines.append("\t".join(_one_line(value) for value in (f.stage, f.video_id, f.path, f.reason, f.level)))
    write_atomic(Path(path), "\n".join(lines) + "\n")


def read_failures(path: Path) -> list[Failure]:
    """The failures and warnings written by :func:`write_failures`."""
    rows = Path(path).read_text(encoding="utf-8").splitlines()[1:]
    return [Failure(*row.split("\t")) for row in rows if row]


def write_summary(path: Path, summary: Summary) -> None:
    data = asdict(summary)
    data["failures"] = len(summary.failures)
    data["warnings"] = [asdict(w) for w in summary.warnings]
    write_atomic(Path(path), json.dumps(data, indent=1, ensure_ascii=False))


def format_summary(summary: Summary) -> str:
    """A human-readable table of the summary."""
    lines = [f"{summary.dataset}: {summary.videos} videos, {summary.frames} frames, "
             f"{summary.flow_images} flow images, {len(summary.failures)} failures, "
             f"{len(summary.warnings)} warnings, "
             f"{len(summary.short_for_stack)} too short for a {STACK_LENGTH}-frame flow stack"]
    lines.append(f"{'stage':<8} {'done':>6} {'skipped':>8} {'failed':>7} {'wall s':>9} {'disk':>10}  worker s")
    for name, report in summary.stages.items():
        steps = ", ".join(f"{k} {v:.1f}" for k, v in report.worker_seconds.items()) or "-"
        lines.append(f"{name:<8} {report.processed:>6} {report.skipped:>8} {len(report.failures):>7} "
                     f"{report.seconds:>9.1f} {_human_bytes(report.disk_bytes):>10}  {steps}")
    for failure in summary.failures[:20]:
        lines.append(f"  failed [{failure.stage}] {failure.video_id}: {failure.reason}")
    if len(summary.failures) > 20:
        lines.append(f"  ... {len(summary.failures) - 20} more in the failures file")
    for warning in summary.warnings[:20]:
        lines.append(f"  warning [{warning.stage}] {warning.video_id}: {warning.reason}")
    if len(summary.warnings) > 20:
        lines.append(f"  ... {len(summary.warnings) - 20} more warnings in the failures file")
    return "\n".join(lines)


def _human_bytes(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.0f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def _one_line(text: str) -> str:
    return re.sub(r"[\t\r\n]+", " ", str(text))


