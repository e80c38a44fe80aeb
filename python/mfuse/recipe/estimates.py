"""Time estimates for the plan, from the project's measured speeds (``benchmarks/results/``), never guessed.

- training: ``bench: net`` records of ``benchmarks/caffe_nets.py`` (Caffe's forward + backward of one pass of
  ``batch`` samples of a backbone's net on a device), scaled to the schedule's samples; a fusion net without
  its own record takes ``mfuse_conv5``'s (the two frozen towers' forward dominates every fusion net);
- testing: ``bench: eval_speed`` records (seconds per video of the 25 x 10 protocol) of the spatial net, scaled
  to another net by the ratio of the measured forward times where both are measured;
- data preparation: ``prep_speed.json`` (frame extraction and flow pairs per second on one core);
- where a net has none of those: ``bench: recipe_stage`` records (``benchmarks/recipe_stage_times.py``: the wall
  time of a finished run's training and test stages, startup and data loading included).

Anything without a measurement says so ("unmeasured") instead of inventing a number.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mfuse.conventions import FUSION_KINDS

#: The repository's measured results (present in a source checkout).
DEFAULT_RESULTS = Path(__file__).resolve().parents[3] / "benchmarks" / "results"
#: The frame size of ``prep_speed.json``'s measurements (benchmarks/prep_speed.py).
PREP_SIZE = (341, 256)
#: The net whose measured speed stands in for the fusion nets that have none.
FUSION_PROXY = "mfuse_conv5"


@dataclass(frozen=True)
class Estimate:
    """Seconds (None: unmeasured) and what the number rests on."""
    seconds: float | None
    basis: str

    def text(self) -> str:
        if self.seconds is None:
            return "unmeasured"
        return f"~{human_duration(self.seconds)}"


def human_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def total(estimates: Iterable[Estimate]) -> Estimate:
    """The sum; marked incomplete when some parts are unmeasured."""
    estimates = list(estimates)
    known = [e.seconds for e in estimates if e.seconds is not None]
    missing = len(estimates) - len(known)
    basis = f"sum of {len(known)} measured stages" + (f"; {missing} unmeasured stages not included" if missing else "")
    return Estimate(sum(known) if known else None, basis)


@dataclass(frozen=True)
class _Train:
    ms_per_pass: float
    fwd_ms: float
    batch: int
    device: str
    file: str


@dataclass
class Speeds:
    """Measured speeds, keyed by (``gpu``/``cpu``, backbone, net)."""
    train: dict[tuple[str, str, str], _Train] = field(default_factory=dict)
    test: dict[tuple[str, str, str], tuple[float, str, str]] = field(default_factory=dict)
    stage_train: dict[tuple[str, str, str], tuple[float, int, str, str]] = field(default_factory=dict)
    stage_test: dict[tuple[str, str, str], tuple[float, int, str, str]] = field(default_factory=dict)
    stage_data: dict[tuple[str, tuple[int, int]], tuple[float, str, str]] = field(default_factory=dict)
    extraction_fps: float | None = None
    flow_pairs_per_s: dict[str, float] = field(default_factory=dict)
    prep_file: str = ""

    @classmethod
    def load(cls, results_dir: Path | None = None) -> Speeds:
        """Reads every JSON result of ``results_dir`` (default: the repository's ``benchmarks/results``)."""
        speeds = cls()
        results_dir = Path(results_dir or DEFAULT_RESULTS)
        for path in sorted(results_dir.glob("*.json")) if results_dir.is_dir() else []:
            try:
                data = json.loads(path.read_text())
            except ValueError:
                continue
            speeds._add(data, path.name)
        return speeds

    def _add(self, data, name: str) -> None:
        if isinstance(data, dict) and "records" in data:
            records = data["records"]
            device = next((r.get("name") for r in records if r.get("bench") == "device"), None)
            env = next((r for r in records if r.get("bench") == "env"), {})
            for r in records:
                if r.get("bench") == "recipe_stage":
                    key = (r["mode"], r["backbone"], r["name"])
                    if r["kind"] == "train":
                        self.stage_train[key] = (r["s_per_iteration"], r["samples_per_iteration"], r["device"], name)
                    elif r["kind"] == "data":
                        key = (r["algorithm"], tuple(r["frame_size"]))
                        self.stage_data[key] = (r["core_s_per_frame"], r["device"], name)
                    elif r["kind"] == "test":
                        crops = r["frames"] * (10 if r["crops"] == "ten" else 1)
                        self.stage_test[key] = (r["s_per_video"], crops, r["device"], name)
                if r.get("bench") == "net" and r.get("framework", "caffe") == "caffe" and not r.get("forward_only"):
                    kind = r.get("mode", "gpu")
                    backbone = Path(r.get("model", "")).name.split("_")[0]
                    label = device if kind == "gpu" else f"{env.get('cpu', 'CPU')} ({env.get('nproc', '?')} cores)"
                    self.train[(kind, _backbone(backbone), r["name"])] = _Train(
                        r["total_ms"], r["fwd_ms"], r["batch"], label or kind, name)
        elif isinstance(data, dict) and data.get("bench") == "eval_speed":
            kind = "cpu" if data.get("device") == "cpu" else "gpu"
            stem = Path(data.get("net", "")).name
            backbone = "tiny" if kind == "cpu" and "demo" in data.get("net", "") else _backbone(stem.split("_")[0])
            self.test[(kind, backbone, "spatial")] = (data["seconds_per_video"]["pipeline"], data.get("device", kind),
                                                      name)
        elif isinstance(data, dict) and "frame_extraction_frames_per_s" in data:
            self.extraction_fps = data["frame_extraction_frames_per_s"]
            self.flow_pairs_per_s = {f["algorithm"]: f["pipeline_pairs_per_s"] for f in data.get("flow", [])}
            self.prep_file = name

    def _train_record(self, kind: str, backbone: str, net: str) -> tuple[_Train | None, str]:
        record = self.train.get((kind, backbone, net))
        if record is None and net in FUSION_KINDS:
            record = self.train.get((kind, backbone, FUSION_PROXY))
            return record, f" ({FUSION_PROXY}'s speed)" if record else ""
        return record, ""

    def training(self, kind: str, backbone: str, net: str, max_iter: int, batch: int) -> Estimate:
        """``max_iter`` updates of ``batch`` samples of ``net``."""
        record, proxy = self._train_record(kind, backbone, net)
        if record is None and (kind, backbone, net) in self.stage_train:
            seconds, samples, device, file = self.stage_train[(kind, backbone, net)]
            return Estimate(seconds * batch / samples * max_iter,
                            f"{seconds:.3f} s per iteration of {samples} samples in a recipe run on {device} ({file})")
        if record is None:
            return Estimate(None, f"no measured speed of {backbone} {net} on {kind} in benchmarks/results")
        seconds = record.ms_per_pass / 1000 * batch / record.batch * max_iter
        return Estimate(seconds, f"{record.ms_per_pass:.0f} ms per {record.batch} samples on {record.device}{proxy} "
                                 f"({record.file})")

    def testing(self, kind: str, backbone: str, net: str, videos: int, frames: int, crops: int) -> Estimate:
        """The protocol (``frames`` x ``crops`` per video) over ``videos`` videos."""
        if (kind, backbone, net) in self.stage_test:
            seconds, measured_crops, device, file = self.stage_test[(kind, backbone, net)]
            return Estimate(seconds * frames * crops / measured_crops * videos,
                            f"{seconds:.3f} s per {measured_crops}-crop video in a recipe run on {device} ({file})")
        measured = self.test.get((kind, backbone, "spatial"))
        if measured is None:
            return Estimate(None, f"no measured test speed of {backbone} on {kind} in benchmarks/results")
        per_video, device, file = measured
        ratio, note = 1.0, ""
        spatial, _ = self._train_record(kind, backbone, "spatial")
        other, _ = self._train_record(kind, backbone, net)
        if net != "spatial":
            if spatial and other:
                ratio, note = other.fwd_ms / spatial.fwd_ms, f" x {other.fwd_ms / spatial.fwd_ms:.2f} (forward ratio)"
            else:
                note = " (the spatial net's speed)"
        seconds = per_video * ratio * videos * frames * crops / 250
        return Estimate(seconds, f"{per_video:.2f} s per 250-crop video on {device}{note} ({file})")

    def preparation(self, frames: int, algorithm: str, workers: int, size: tuple[int, int] | None = None
                    ) -> Estimate:
        """Frame extraction and flow of ``frames`` frames of ``size`` (width, height; None: as measured) on
        ``workers`` cores: a recipe run's measurement at that size and algorithm when there is one, else
        ``prep_speed.json`` scaled from its frame size by the pixel count."""
        if size is not None and (algorithm, tuple(size)) in self.stage_data:
            per_frame, device, file = self.stage_data[(algorithm, tuple(size))]
            return Estimate(per_frame * frames / workers, f"{per_frame:.2f} core-s per {size[0]}x{size[1]} frame "
                                                          f"({algorithm}) in a recipe run on {device} ({file})")
        if self.extraction_fps is None or algorithm not in self.flow_pairs_per_s:
            return Estimate(None, f"no measured {algorithm} speed in benchmarks/results")
        scale = 1.0 if size is None else size[0] * size[1] / (PREP_SIZE[0] * PREP_SIZE[1])
        core_seconds = (frames / self.extraction_fps + frames / self.flow_pairs_per_s[algorithm]) * scale
        note = "" if size is None else f", scaled to {size[0]}x{size[1]} by the pixel count"
        return Estimate(core_seconds / workers, f"{self.flow_pairs_per_s[algorithm]:.2f} {algorithm} pairs/s and "
                                                f"{self.extraction_fps:.0f} frames/s per core at "
                                                f"{PREP_SIZE[0]}x{PREP_SIZE[1]}{note}, {workers} workers "
                                                f"({self.prep_file})")


def _backbone(name: str) -> str:
    return {"cnnm": "cnn_m_2048", "cnn": "cnn_m_2048"}.get(name, name)
