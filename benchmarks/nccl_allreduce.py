"""NCCL all-reduce between the GPUs of one machine through PyTorch: what the link gives for a buffer the size of
a net's parameters (issue 17, where the time of multi-GPU training goes).

    python benchmarks/nccl_allreduce.py --mib 1880 560 --gpus 2 --out results.json

One process per GPU (torch.distributed, NCCL, NVLink multicast off), float32 buffers, 3 warm-up and ``--reps``
timed all-reduces each between two barriers and CUDA synchronisations; the median is reported with NCCL's
bus bandwidth convention (algbw x 2 (n - 1) / n). Needs PyTorch with CUDA (the GPU machine has it).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=float, nargs="+", required=True, help="buffer sizes in MiB")
    parser.add_argument("--gpus", type=int, default=2)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--port", type=int, default=29517)
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args()


def worker(rank: int, args, results) -> None:
    import torch
    import torch.distributed as dist

    os.environ.update(NCCL_NVLS_ENABLE="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(args.port))
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", rank=rank, world_size=args.gpus, device_id=torch.device("cuda", rank))
    for mib in args.mib:
        buffer = torch.ones(int(mib * 2 ** 20) // 4, device="cuda")
        times = []
        for rep in range(3 + args.reps):
            dist.barrier()
            torch.cuda.synchronize()
            start = time.perf_counter()
            dist.all_reduce(buffer)
            torch.cuda.synchronize()
            if rep >= 3:
                times.append(time.perf_counter() - start)
        if rank == 0:
            median = statistics.median(times)
            algbw = buffer.numel() * 4 / median / 1e9
            results.append({"bench": "nccl_allreduce", "mib": mib, "gpus": args.gpus, "median_s": median,
                            "min_s": min(times), "algbw_GBps": algbw,
                            "busbw_GBps": algbw * 2 * (args.gpus - 1) / args.gpus})
        del buffer
    dist.destroy_process_group()


def main():
    import torch.multiprocessing as mp

    args = parse_args()
    os.environ["NCCL_NVLS_ENABLE"] = "0"
    with mp.Manager() as manager:
        results = manager.list()
        mp.spawn(worker, args=(args, results), nprocs=args.gpus)
        records = list(results)
    args.out.write_text(json.dumps(records, indent=1) + "\n")
    for record in records:
        print(json.dumps(record))


if __name__ == "__main__":
    main()
