"""Train one net: the fork's ``caffe train`` on the CPU or one GPU, one process per GPU (NCCL) on several.

    .venv/bin/python tools/train.py prototxt/tiny/spatial_solver.prototxt --log runs/tiny/spatial.log
    .venv/bin/python tools/train.py prototxt/mfuse_conv5_solver.prototxt --weights runs/mfuse_conv5/init.caffemodel \\
        --gpus 0,1,2,3 --batch split
    .venv/bin/python tools/train.py SOLVER --snapshot runs/tiny/spatial/snap_iter_200.solverstate

--gpus takes ids (0,1,2,3) or "all", as caffe train -gpu. On several GPUs every GPU runs the solver's batch
(Caffe's convention; total batch = batch x iter_size x GPUs) unless --batch split keeps the solver's total.
Rank 0 writes the log, the snapshots and the progress bar; ranks r > 0 log to <log stem>.rank<r>.log.

A finished stage (its final snapshot exists) is skipped only if the run record beside it shows the same solver,
nets, weights and batch; otherwise the tool refuses, and --force retrains. Resuming through this tool (rather
than ``caffe train -snapshot``) also resumes mfuse's data layer at the batch the interrupted run would have
read next.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mfuse.training import BATCH_MODES, BATCH_PER_GPU, GpuSelectionError, TrainingError, parse_gpus, train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("solver", type=Path, help="solver prototxt")
    parser.add_argument("--log", type=Path, help="where Caffe's log goes (default: train.log in the folder of "
                                                 "the solver's snapshot_prefix)")
    parser.add_argument("--weights", type=Path, help="initial weights (caffemodel)")
    parser.add_argument("--snapshot", type=Path, help="resume from this .solverstate")
    parser.add_argument("--gpus", "--gpu", dest="gpus", help="GPU ids, e.g. 0 or 0,1,2,3, or 'all' (default: the "
                                                             "solver's mode, CPU for mfuse's solvers)")
    parser.add_argument("--batch", choices=BATCH_MODES, default=BATCH_PER_GPU,
                        help="per-gpu: every GPU runs the solver's batch (Caffe); split: the solver's batch x "
                             "iter_size is the total over all GPUs")
    parser.add_argument("--force", action="store_true", help="train even if the final snapshot exists")
    parser.add_argument("--cwd", type=Path, default=Path("."), help="where caffe runs (default: here)")
    args = parser.parse_args(argv)
    if args.gpus is not None:
        try:
            args.gpus = parse_gpus(args.gpus)
        except GpuSelectionError as err:
            parser.error(f"--{err}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        final = train(args.solver, args.log, weights=args.weights, cwd=args.cwd, gpus=args.gpus,
                      snapshot=args.snapshot, force=args.force, batch=args.batch)
    except (TrainingError, ValueError, FileNotFoundError) as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 1
    print(f"final weights: {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
