"""The dry run's checks of every input, before anything is trained.

- the split lists parse (``mfuse.datasets``: labels agree with class folders, no duplicates, no train/test leak);
- every listed video exists, opens and has frames (PyAV reads its header; the frame counts feed the estimates);
- the pretrained model holds every backbone layer the stream nets take from it, with shapes that fit
  (:mod:`mfuse.recipe.weights`, from the files alone);
- the disk holds the run (an estimate from a sample video prepared with the run's settings, the frame stores
  of every split and the snapshots of every net);
- the GPUs asked for exist (``nvidia-smi -L``).

Each problem is one line ``<file>: <key>: <problem>`` (:class:`mfuse.recipe.experiment.ExperimentError`).
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path


from mfuse.conventions import FUSION_KINDS, NET_NAMES, SPLITS
from mfuse.datasets import SplitError, VideoRecord
from mfuse.nets.backbones import get_backbone
from mfuse.nets.build_all import build_net
from mfuse.nets.inputs import DeployInputs
from mfuse.prep.frames import extract_video, output_size
from mfuse.recipe.data import DatasetLists, hold_out
from mfuse.recipe.experiment import Experiment, ExperimentError
from mfuse.recipe.plan import TABLE_OF, Facts, Recipe
from mfuse.recipe.weights import ShapeError, param_shapes, pretrained_problems, stored_shapes
from mfuse.synthetic import class_names, groups_tested, plan_videos

#: At most this many problems are printed (the rest are counted).
MAX_PROBLEMS = 5
#: Videos prepared (into a temporary folder) to measure the bytes per frame of the run's settings.
SAMPLE_VIDEOS = 2
#: Bytes per parameter (float32) and the files of a snapshot: a caffemodel and a solverstate of the same size
#: (SGD's momentum history).
PARAM_BYTES, SNAPSHOT_COPIES = 4, 2


@dataclass
class Inspection:
    """What the dry run found: the facts for the plan, the problems (one line each) and notes."""
    facts: Facts | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def problem(exp: Experiment, key: str, text: str) -> str:
    return str(ExperimentError(exp.source, key, text))


def synthetic_lists(exp: Experiment) -> DatasetLists:
    """The lists the synthetic dataset will have (from its parameters; nothing is generated)."""
    config = exp.dataset.synthetic
    classes = class_names(config.layout)
    videos = plan_videos(config)
    official = {}
    for split in exp.dataset.splits:
        tested = set(groups_tested(config.num_groups, split))
        for subset in ("train", "test"):
            official[(split, subset)] = [VideoRecord(v.video_id, v.label, exp.videos_root / v.relpath) for v in videos
                                         if (v.group in tested) == (subset == "test")]
    train, heldout = {}, {}
    for split in exp.dataset.splits:
        train[split], heldout[split] = hold_out(official[(split, "train")], exp.train.heldout_fraction, split)
    return DatasetLists(exp.list_format, classes, official, train, heldout)


def video_header(path: Path) -> tuple[int, tuple[int, int]]:
    """``(frames, (width, height))`` of a video from its header (frames from duration x rate when the header has
    no count, by decoding when it has neither); ValueError if it does not open or has no video stream."""
    import av  # PyAV only where videos are decoded: prepared data trains and tests without it

    try:
        with av.open(os.fspath(path)) as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            stream = container.streams.video[0]
            size = (stream.codec_context.width, stream.codec_context.height)
            if stream.frames:
                return int(stream.frames), size
            if stream.duration and stream.average_rate:
                return int(stream.duration * stream.time_base * stream.average_rate), size
            return sum(1 for _ in container.decode(stream)), size
    except (av.FFmpegError, OSError) as error:
        raise ValueError(f"cannot open: {error}") from None


def probe_videos(videos: list[VideoRecord], workers: int = 8) -> tuple[int, tuple[int, int] | None, list[str]]:
    """``(total frames, the first video's size, problems)`` of the videos (each problem names the video)."""
    def probe(record):
        if not Path(record.path).is_file():
            return 0, None, f"{record.path}: listed but missing"
        try:
            return (*video_header(record.path), None)
        except ValueError as error:
            return 0, None, f"{record.path}: {error}"

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(probe, videos))
    size = next((s for _, s, _ in results if s), None)
    return sum(n for n, _, _ in results), size, [p for _, _, p in results if p]


def bytes_per_frame(exp: Experiment, videos: list[VideoRecord]) -> float | None:
    """Bytes of the frame folder per video frame (RGB + flow + magnitude JPEGs), from preparing up to
    ``SAMPLE_VIDEOS`` videos with the run's settings (DIS flow instead of a slower algorithm: the estimate needs
    the image size, not the exact flow)."""
    settings = replace(exp.data.extract, flow_algorithm="dis") if exp.data.extract.flow_algorithm else exp.data.extract
    total_bytes = total_frames = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, record in enumerate(videos[:SAMPLE_VIDEOS]):
            try:
                meta = extract_video(record.path, Path(tmp) / str(i), settings).meta
            except Exception:  # noqa: BLE001 - a video that fails here is reported by the probe
                continue
            total_frames += meta["num_frames"]
            total_bytes += sum(p.stat().st_size for p in (Path(tmp) / str(i)).iterdir())
    return total_bytes / total_frames if total_frames else None


def model_bytes(recipe: Recipe, num_classes: int) -> int:
    """Bytes of the snapshots the run keeps: every net's final caffemodel (and fusion init) per split and seed,
    plus the largest net's snapshots while it trains (a caffemodel and a solverstate each; the intermediate
    ones are removed when a net finishes)."""
    exp = recipe.exp
    net_set = recipe.net_set(exp.dataset.splits[0], exp.train.seeds[0], num_classes)
    kept, largest = 0, 0
    for net in NET_NAMES:
        params = param_shapes(build_net(net, net_set, DeployInputs(batch_size=1)), net)
        size = PARAM_BYTES * sum(math.prod(shape) for shapes in params.values() for shape in shapes)
        schedule = exp.schedule(TABLE_OF[net])
        kept += size * (2 if net in FUSION_KINDS else 1)
        largest = max(largest, size * SNAPSHOT_COPIES * math.ceil(schedule.max_iter / schedule.snapshot))
    return kept * len(exp.dataset.splits) * len(exp.train.seeds) + largest


def check_pretrained(recipe: Recipe, num_classes: int) -> list[str]:
    """Problems of the pretrained model against the stream nets' backbone layers (key ``model.imagenet``)."""
    exp = recipe.exp
    if exp.model.imagenet is None:
        return []
    try:
        model = stored_shapes(exp.model.imagenet)
    except ShapeError as error:
        return [problem(exp, "model.imagenet", str(error))]
    backbone = get_backbone(exp.model.backbone)
    layers = (*backbone.conv_names, *backbone.fc_names)
    net_set = recipe.net_set(exp.dataset.splits[0], exp.train.seeds[0], num_classes)
    found: dict[str, str] = {}    # one line per layer: the first net it does not fit
    nets = ["spatial"] + (["temporal"] if exp.model.temporal_init == "cross_modality" else [])
    for net in nets:
        expected = param_shapes(build_net(net, net_set, DeployInputs(batch_size=1)), net)
        for layer in layers:
            texts = pretrained_problems(model, expected, [layer], f"{exp.model.backbone} {net}",
                                        backbone.conv_names[0] if net == "temporal" else None)
            if texts and layer not in found:
                found[layer] = problem(exp, "model.imagenet", f"{exp.model.imagenet} {texts[0]}")
    return list(found.values())


def gpu_list() -> list[str] | None:
    """``nvidia-smi -L`` lines (one per GPU), or None when there is no NVIDIA driver."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return [line.strip() for line in done.stdout.splitlines() if line.startswith("GPU ")] if done.returncode == 0 \
        else None


def check_gpus(exp: Experiment) -> tuple[list[str], str]:
    gpus = gpu_list()
    note = "GPUs: " + ("none found (no nvidia-smi)" if gpus is None else "; ".join(gpus) or "none")
    wanted = exp.train.gpus
    if wanted and (gpus is None or max(wanted) >= len(gpus)):
        return [problem(exp, "train.gpus", f"{list(wanted)} asked for, {len(gpus or [])} NVIDIA GPU(s) found "
                                           "(nvidia-smi -L); leave gpus empty to run on the CPU")], note
    return [], note


def check_disk(exp: Experiment, recipe: Recipe, lists: DatasetLists, frames: int) -> tuple[list[str], str]:
    """The space the run needs against the space free where it writes."""
    if exp.dataset.format == "synthetic":
        width, height = exp.dataset.synthetic.size
        per_frame = float(width * height * 6)   # uncompressed RGB + flow (x|y) + magnitude: an upper bound
    else:
        per_frame = bytes_per_frame(exp, lists.videos)
    if per_frame is None:
        return [], "disk: no sample video could be prepared, no estimate"
    copies = 1 + len(exp.dataset.splits)          # the frame folders and one store entry per split
    data = per_frame * frames * copies
    models = model_bytes(recipe, len(lists.classes))
    need = data + models
    where = Path(exp.out).resolve()
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free
    note = (f"disk: about {need / 2**30:.1f} GiB needed ({data / 2**30:.1f} GiB data at {per_frame / 1024:.1f} KiB "
            f"per frame, {models / 2**30:.1f} GiB snapshots), {free / 2**30:.1f} GiB free at {where}")
    if need > free:
        return [problem(exp, "out", f"the run needs about {need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB are free "
                                    f"at {where}")], note
    return [], note


def inspect_inputs(recipe: Recipe) -> Inspection:
    """Every check of the dry run; ``facts`` is None when the lists do not parse."""
    exp = recipe.exp
    found = Inspection()
    if exp.dataset.format == "synthetic":
        lists = synthetic_lists(exp)
        frames = exp.dataset.synthetic.num_frames * len(lists.videos)
        size = exp.dataset.synthetic.size
    else:
        try:
            lists = recipe.lists
        except SplitError as error:
            found.problems += [problem(exp, "dataset.lists", str(p)) for p in error.problems]
            return found
        frames, size, unreadable = probe_videos(lists.videos)
        found.problems += [problem(exp, "dataset.videos", text) for text in unreadable]
    if any(not v for k in exp.dataset.splits for v in (lists.train[k], lists.official[(k, "test")])):
        found.problems.append(problem(exp, "dataset.splits", "a split has no training or no test video"))
    settings = exp.data.extract
    found.facts = Facts.from_lists(lists, frames, size and output_size(*size, settings.short_side, settings.fixed_size))
    found.problems += check_pretrained(recipe, len(lists.classes))
    gpu_problems, note = check_gpus(exp)
    found.problems += gpu_problems
    found.notes.append(note)
    disk_problems, note = check_disk(exp, recipe, lists, frames)
    found.problems += disk_problems
    found.notes.append(note)
    if tuple(exp.dataset.splits) != SPLITS and exp.dataset.format != "synthetic":
        found.notes.append(f"splits {list(exp.dataset.splits)}: the paper's Tables 1 and 3 average splits 1-3")
    return found


def format_problems(problems: list[str]) -> str:
    """At most ``MAX_PROBLEMS`` lines, then how many more there are."""
    lines = problems[:MAX_PROBLEMS]
    if len(problems) > MAX_PROBLEMS:
        lines.append(f"... and {len(problems) - MAX_PROBLEMS} more problem(s)")
    return "\n".join(lines)

