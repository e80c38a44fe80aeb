"""Speed of the 25-frame x 10-crop test protocol in Caffe (issues 7, 19): decoding, the batched forward pass and
the whole pipeline with data loading, in one run.

    python benchmarks/eval_speed.py --deploy D --data DATA [--weights W] [--gpu 0] [--videos 8] [--workers N]
                                    [--single] --out results.json

Rows (seconds per video; medians over the timed videos, the pipeline's total over all of them):
``decode+crop`` (frame store -> 250 uint8 crops of one video, one thread, then their conversion to float32 minus
the mean), ``forward batched`` (all 250 crops in one pass, already in the input blob), ``forward one crop at a
time`` (250 passes of batch 1; with ``--single``), ``pipeline`` (``mfuse.evaluation.score_videos``: ``--workers``
processes decode and crop ahead, each frame's crops converted into the input blob, batched passes: what
``tools/test_net.py`` runs, data loading included; ``--pipeline-videos`` videos after a first, untimed one that
waits for the workers to start). Math mode: ``MFUSE_TF32=1`` in the environment lets the
fork use TF32 (recorded in the JSON).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from mfuse.conventions import GLOG_LEVEL_ENV
from mfuse.fileio import write_atomic


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deploy", type=Path, required=True)
    parser.add_argument("--weights", type=Path, help="caffemodel (default: the prototxt's fillers)")
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    parser.add_argument("--split", type=int, default=1)
    parser.add_argument("--crop-size", type=int, help="default: the deploy net's input size")
    parser.add_argument("--videos", type=int, default=8, help="videos timed one by one")
    parser.add_argument("--pipeline-videos", type=int, default=40,
                        help="videos through the pipeline (the test videos repeated as needed)")
    parser.add_argument("--workers", type=int, help="decoding processes of the pipeline (default: cores but one)")
    parser.add_argument("--single", action="store_true", help="also time one crop per forward pass")
    parser.add_argument("--gpu", type=int)
    parser.add_argument("--out", type=Path, required=True, help="JSON results")
    return parser.parse_args()


def timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def main():
    args = parse_args()
    os.environ.setdefault(GLOG_LEVEL_ENV, "2")
    from mfuse.evaluation.testing import (Protocol, forward_crops, load_test_net, net_geometry, protocol_crops,
                                          protocol_for, score_videos, video_crops)
    from mfuse.processes import default_workers
    from mfuse.stores.format import rgb_frame_count
    from mfuse.stores.reader import open_frame_stores

    net = load_test_net(args.deploy, args.weights, args.gpu)
    output = list(net.blobs)[-1]
    geometry = net_geometry(net, str(args.deploy))
    stores = open_frame_stores(args.data, args.split, "test", geometry.modalities)
    protocol = protocol_for(Protocol(crop_size=args.crop_size), geometry, str(args.deploy))
    reference = geometry.modalities[0]
    videos = stores[reference].index.videos[:args.videos]
    decode, batched, single = [], [], []
    for video in videos:
        frames = rgb_frame_count(reference, video.num_frames)
        seconds, crops = timed(lambda: video_crops(stores, video.video_id, frames, protocol))
        decode.append(seconds)
        forward_crops(net, crops, output, protocol.max_batch)  # warm-up (reshape, allocation, algorithm choice)
        batched.append(timed(lambda: forward_crops(net, crops, output, protocol.max_batch))[0])
        if args.single:
            single.append(timed(lambda: forward_crops(net, crops, output, 1))[0])
            forward_crops(net, crops, output, protocol.max_batch)  # restore the batched shape
    workers = default_workers() if args.workers is None else args.workers
    all_videos = stores[reference].index.videos
    stream = [all_videos[i % len(all_videos)] for i in range(args.pipeline_videos + 1)]
    outputs = score_videos(net, protocol_crops(stores, stream, protocol), protocol, output, workers)
    next(outputs)                                   # the first video waits for the workers to start: not timed
    start = time.perf_counter()
    count = sum(1 for _ in outputs)
    pipeline = (time.perf_counter() - start) / count
    rows = {"decode+crop": statistics.median(decode), "forward batched": statistics.median(batched)}
    if single:
        rows["forward one crop at a time"] = statistics.median(single)
    rows["pipeline"] = pipeline
    result = {"bench": "eval_speed", "framework": "caffe", "device": "cpu" if args.gpu is None else f"gpu{args.gpu}",
              "math": "tf32" if os.environ.get("MFUSE_TF32") == "1" else "fp32", "net": str(args.deploy),
              "videos_timed": len(videos), "pipeline_videos": count, "crops_per_video": protocol.frames * protocol.crops_per_frame,
              "workers": workers, "cores": len(os.sched_getaffinity(0)), "seconds_per_video": rows,
              "videos_per_s": {name: 1.0 / value for name, value in rows.items()},
              "decode_over_forward": rows["decode+crop"] / rows["forward batched"]}
    write_atomic(args.out, json.dumps(result, indent=1))
    print(f"| step ({result['math']}) | s / video | videos / s |\n|---|---|---|")
    for name, value in rows.items():
        print(f"| {name} | {value:.4f} | {1 / value:.2f} |")
    print(f"decode+crop (one core) / batched forward {result['decode_over_forward']:.2f}; pipeline with {workers} "
          f"workers at {1 / pipeline:.2f} videos/s")


if __name__ == "__main__":
    main()
