"""Speed of the 25-frame x 10-crop test protocol (issue 7): batched vs one-crop-at-a-time forward passes, and
how long decoding + cropping takes next to the net, all in one run.

    python benchmarks/eval_speed.py --deploy D --data DATA [--weights W] [--gpu 0] [--videos 8] --out results.json

Rows: ``decode+crop`` (frame store -> 250 crops of one video, one thread), ``forward batched`` (all 250 crops in
one pass), ``forward one crop at a time`` (250 passes of batch 1), ``pipeline`` (``evaluate_net``: decoding in
threads overlapped with batched passes). Times are medians over the videos, in seconds per video.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
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
    parser.add_argument("--videos", type=int, default=8, help="videos timed")
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
    from mfuse.evaluation.testing import (Protocol, evaluate_net, forward_crops, load_test_net, net_geometry,
                                          protocol_for, video_crops)
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
        forward_crops(net, crops, output, protocol.max_batch)  # warm-up (reshape, allocation)
        batched.append(timed(lambda: forward_crops(net, crops, output, protocol.max_batch))[0])
        single.append(timed(lambda: forward_crops(net, crops, output, 1))[0])
        forward_crops(net, crops, output, protocol.max_batch)  # restore the batched shape
    with tempfile.TemporaryDirectory() as tmp:
        subset = {m: store for m, store in stores.items()}
        total, scores = timed(lambda: evaluate_net(net, subset, Path(tmp) / "s.npz", {"split": args.split,
                                                                                      "subset": "test"},
                                                   protocol, progress=False))
    rows = {"decode+crop": statistics.median(decode), "forward batched": statistics.median(batched),
            "forward one crop at a time": statistics.median(single), "pipeline": total / len(scores)}
    result = {"bench": "eval_speed", "device": "cpu" if args.gpu is None else f"gpu{args.gpu}",
              "net": str(args.deploy), "videos_timed": len(videos), "videos_in_pipeline": len(scores),
              "crops_per_video": 250, "seconds_per_video": rows,
              "videos_per_s": {name: 1.0 / value for name, value in rows.items()},
              "batched_speedup": rows["forward one crop at a time"] / rows["forward batched"],
              "decode_over_forward": rows["decode+crop"] / rows["forward batched"]}
    write_atomic(args.out, json.dumps(result, indent=1))
    print("| step | s / video | videos / s |\n|---|---|---|")
    for name, value in rows.items():
        print(f"| {name} | {value:.4f} | {1 / value:.2f} |")
    print(f"batched speed-up {result['batched_speedup']:.1f}x; decode+crop / batched forward "
          f"{result['decode_over_forward']:.2f}")


if __name__ == "__main__":
    main()
