"""The PyTorch side of the 25-frame x 10-crop test speed (issue 19 item 5): VGG19 spatial (``torch_nets.py``'s
mirror of the Caffe net) fed by the same data path, videos/s with data loading included, per math mode.

    python3 benchmarks/eval_speed_torch.py --data DATA [--videos 40] [--workers N] [--precisions fp32,tf32]
                                           --out results.json

Data: ``mfuse.evaluation.protocol_crops`` (25 sampled frames x 10 crops of the split-1 test videos, repeated to
``--videos``) made by ``--workers`` processes (:class:`mfuse.processes.ParallelProducer`), exactly the crops the
Caffe pipeline gets. As a PyTorch user would feed them: each video's 250 uint8 crops are gathered in one of two
pinned host buffers, copied to the GPU asynchronously (uint8: a quarter of Caffe's float32 bytes), converted and
mean-subtracted there, and the model runs while the next video is gathered (its softmax is read back one video
later). ``forward only`` is the same model on a resident input (no data), for reference. Times exclude a first
video (workers starting, cuDNN's algorithm search). Needs torch, and mfuse with its readers (lmdb, OpenCV).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mfuse.conventions import MEANS
from mfuse.fileio import write_atomic
from torch_nets import build, environment, set_precision


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset folder (split-1 test LMDBs)")
    parser.add_argument("--videos", type=int, default=40, help="videos timed (the test videos repeated)")
    parser.add_argument("--workers", type=int, help="decoding processes (default: the usable cores but one)")
    parser.add_argument("--precisions", default="fp32,tf32")
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args()


def pipeline(model, crops, workers: int, count: int, device) -> float:
    """Seconds per video over ``count`` videos after a first one, data loading included."""
    from mfuse.processes import ParallelProducer

    frames = crops.frames
    per_frame = crops.crops_per_frame
    shape = (frames * per_frame,) + crops.layout()["rgb"][0][1:]
    buffers = [torch.empty(shape, dtype=torch.uint8).pin_memory() for _ in range(2)]
    copied = [torch.cuda.Event() for _ in range(2)]
    mean = torch.tensor(MEANS["rgb"], dtype=torch.float32, device=device).view(1, 3, 1, 1)
    pending, start = None, None
    with ParallelProducer(crops, 0, len(crops), workers, depth=4, name="test crops") as source, torch.no_grad():
        for video in range(count + 1):
            slot = video % 2
            copied[slot].synchronize()                  # the copy of two videos ago has left this buffer
            host = buffers[slot].numpy()
            for frame in range(frames):
                host[frame * per_frame:(frame + 1) * per_frame] = source.get()["rgb"]
            x = buffers[slot].to(device, non_blocking=True)
            copied[slot].record()
            probs = F.softmax(model(x.float() - mean), dim=1)
            if pending is not None:
                pending.cpu()
            pending = probs
            if video == 0:
                pending.cpu()
                pending, start = None, time.perf_counter()
        pending.cpu()
    return (time.perf_counter() - start) / count


def forward_only(model, shape, device, count: int) -> float:
    x = torch.randint(0, 256, shape, dtype=torch.uint8, device=device).float()
    with torch.no_grad():
        for rep in range(count + 1):
            if rep == 1:
                torch.cuda.synchronize()
                start = time.perf_counter()
            F.softmax(model(x), dim=1).cpu()
    return (time.perf_counter() - start) / count


def main():
    args = parse_args()
    if not torch.cuda.is_available():
        sys.exit("eval_speed_torch: no CUDA device")
    from mfuse.evaluation.testing import Protocol, protocol_crops
    from mfuse.processes import default_workers
    from mfuse.stores.reader import open_frame_stores

    device = torch.device("cuda", 0)
    workers = default_workers() if args.workers is None else args.workers
    stores = open_frame_stores(args.data, 1, "test", ["rgb"])
    videos = stores["rgb"].index.videos
    stream = [videos[i % len(videos)] for i in range(args.videos + 1)]
    protocol = Protocol(crop_size=224)
    records = []
    for precision, benchmark in [(p, b) for p in args.precisions.split(",") for b in (False, True)]:
        settings = {**set_precision(precision, benchmark), "cudnn_benchmark": benchmark}
        torch.manual_seed(1)
        model = build("spatial_test25x10")[0].to(device).eval()
        seconds = pipeline(model, protocol_crops(stores, stream, protocol), workers, args.videos, device)
        shape = (protocol.frames * 10, 3, 224, 224)
        alone = forward_only(model, shape, device, min(args.videos, 20))
        records.append({"precision": precision, "pipeline_s_per_video": seconds, "pipeline_videos_per_s": 1 / seconds,
                        "forward_only_s_per_video": alone, "forward_only_videos_per_s": 1 / alone, **settings})
        print(json.dumps(records[-1]), flush=True)
        del model
        torch.cuda.empty_cache()
    try:
        env = environment()
    except RuntimeError as error:          # e.g. a cuDNN on LD_LIBRARY_PATH older than PyTorch's
        env = {"error": str(error)}
    write_atomic(args.out, json.dumps({"bench": "eval_speed", "framework": "torch", "environment": env,
                                       "workers": workers, "cores": len(os.sched_getaffinity(0)),
                                       "videos": args.videos, "records": records}, indent=1))
    print("| precision | pipeline videos/s | forward only videos/s |\n|---|---|---|")
    for r in records:
        print(f"| {r['precision']} | {r['pipeline_videos_per_s']:.2f} | {r['forward_only_videos_per_s']:.2f} |")


if __name__ == "__main__":
    main()
