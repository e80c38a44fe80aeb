"""Throughput of the video data layer's loader (issue 6): samples/s on one core for each net's inputs.

    python benchmarks/data_layer_speed.py --data runs/demo/data --crop-size 48 --out results.json

One thread (the layer's prefetch thread does this work), LMDB storage, batches of 32, after one warm-up batch.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from mfuse.conventions import CROP_SIZE, SUBSETS
from mfuse.fileio import write_atomic

INPUTS = {"spatial": ["rgb"], "spatial_amp": ["rgb", "mag"], "temporal": ["flow"], "fusion": ["rgb", "flow"]}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    parser.add_argument("--crop-size", type=int, default=CROP_SIZE)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--subset", choices=SUBSETS, default="train")
    parser.add_argument("--nets", nargs="+", choices=sorted(INPUTS), default=list(INPUTS), help="inputs to time")
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args()


def main():
    args = parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from mfuse.layers.params import parse_param_str
    from mfuse.layers.video_data import SCHEMA, loader_from_params

    results = {}
    for net in args.nets:
        params = parse_param_str(json.dumps({"source": str(args.data), "modalities": INPUTS[net], "batch_size": 32,
                                             "crop_size": args.crop_size, "subset": args.subset}), SCHEMA, "bench")
        loader = loader_from_params(params)
        loader.next_batch()
        start = time.perf_counter()
        for _ in range(args.batches):
            loader.next_batch()
        seconds = time.perf_counter() - start
        results[net] = 32 * args.batches / seconds
    write_atomic(args.out, json.dumps({"bench": "data_layer_speed", "data": str(args.data),
                                       "crop_size": args.crop_size, "batch": 32,
                                       "samples_per_s_one_core": results}, indent=1))
    print("| net inputs | samples/s (one core) |\n|---|---|")
    for net, rate in results.items():
        print(f"| {net} ({'+'.join(INPUTS[net])}) | {rate:.0f} |")


if __name__ == "__main__":
    main()
