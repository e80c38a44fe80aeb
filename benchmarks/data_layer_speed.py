"""Throughput of the video data layer's loader (issues 6, 19): samples/s for each net's inputs against the number
of worker processes.

    python benchmarks/data_layer_speed.py --data runs/demo/data --crop-size 48 --workers 0 1 2 --out results.json

For each net's inputs and each ``workers`` value: a ``VideoBatchLoader`` as the data layer builds it (LMDB
storage, batches of ``--batch``), one batch taken to start the workers, then ``--batches`` timed batches, each
converted to float32 as the layer's forward does (into one reused buffer, as into the tops). Nothing consumes
the batches, so the rate is what the loader can deliver; ``main ms`` is the time per batch the net's process
spends (waiting + converting), ``convert ms`` the conversion alone (with the layer's conversion threads: the
part of a training pass that no number of workers removes). ``workers 0`` makes each batch in the calling
thread (the cost one core pays per batch). ``CPU ms / sample`` adds the CPU time of this process and of the
workers over the timed batches: on a machine whose cores are busy with other work the wall-clock rate cannot
show the scaling, the CPU cost per sample can (n free cores deliver about n / that samples per ms).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from mfuse.conventions import CROP_SIZE, SUBSETS
from mfuse.fileio import write_atomic

INPUTS = {"spatial": ["rgb"], "spatial_amp": ["rgb", "mag"], "temporal": ["flow"], "fusion": ["rgb", "flow"]}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    parser.add_argument("--crop-size", type=int, default=CROP_SIZE)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="worker counts to measure")
    parser.add_argument("--subset", choices=SUBSETS, default="train")
    parser.add_argument("--nets", nargs="+", choices=sorted(INPUTS), default=list(INPUTS), help="inputs to time")
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(args, net: str, workers: int) -> dict:
    import numpy as np

    from mfuse.layers.params import parse_param_str
    from mfuse.layers.video_data import SCHEMA, loader_from_params

    params = parse_param_str(json.dumps({"source": str(args.data), "modalities": INPUTS[net], "workers": workers,
                                         "batch_size": args.batch, "crop_size": args.crop_size,
                                         "subset": args.subset}), SCHEMA, "bench")
    loader = loader_from_params(params)
    try:
        out = loader.next_batch()                                  # starts the workers
        cpu = time.process_time() + sum(map(process_cpu_seconds, loader.worker_pids))
        start = time.perf_counter()
        for _ in range(args.batches):
            loader.next_batch(out=out)
        seconds = time.perf_counter() - start
        cpu = time.process_time() + sum(map(process_cpu_seconds, loader.worker_pids)) - cpu
        item = {name: np.zeros(shape, dtype) for name, (shape, dtype) in loader.batches.layout().items()}
        convert = time.perf_counter()
        for _ in range(5):
            loader.convert(item, out)
        convert_ms = (time.perf_counter() - convert) / 5 * 1000
    finally:
        loader.close()
    return {"net": net, "modalities": INPUTS[net], "workers": workers, "batch": args.batch,
            "samples_per_s": args.batch * args.batches / seconds, "main_ms_per_batch": seconds / args.batches * 1000,
            "cpu_ms_per_sample": cpu / (args.batch * args.batches) * 1000,
            "convert_ms": convert_ms, "convert_threads": loader.threads}


def main():
    args = parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    records = [measure(args, net, workers) for net in args.nets for workers in args.workers]
    write_atomic(args.out, json.dumps({"bench": "data_layer_speed", "data": str(args.data), "crop_size": args.crop_size,
                                       "batch": args.batch, "cores": len(os.sched_getaffinity(0)),
                                       "cpu": platform.processor() or platform.machine(), "records": records},
                                      indent=1))
    print("| net inputs | workers | samples/s | CPU ms / sample (all processes) | main ms / batch | "
          "convert ms (threads) |\n|---|---|---|---|---|---|")
    for r in records:
        print(f"| {r['net']} ({'+'.join(r['modalities'])}) | {r['workers']} | {r['samples_per_s']:.0f} | "
              f"{r['cpu_ms_per_sample']:.2f} | {r['main_ms_per_batch']:.1f} | {r['convert_ms']:.1f} "
              f"({r['convert_threads']}) |")


if __name__ == "__main__":
    main()
