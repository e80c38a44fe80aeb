"""Train one net with the fork's ``caffe train``, with a progress bar and exact resume.

    .venv/bin/python tools/train.py prototxt/tiny/spatial_solver.prototxt --log runs/tiny/spatial.log
    .venv/bin/python tools/train.py SOLVER --snapshot runs/tiny/spatial/snap_iter_200.solverstate

Resuming through this tool (rather than ``caffe train -snapshot``) also resumes mfuse's data layer at the
batch the interrupted run would have read next.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from mfuse.training import train


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("solver", type=Path, help="solver prototxt")
    parser.add_argument("--log", type=Path, required=True, help="where Caffe's log goes")
    parser.add_argument("--weights", type=Path, help="initial weights (caffemodel)")
    parser.add_argument("--snapshot", type=Path, help="resume from this .solverstate")
    parser.add_argument("--gpu", type=int, help="GPU id (default: the solver's mode)")
    parser.add_argument("--cwd", type=Path, default=Path("."), help="where caffe runs (default: here)")
    return parser.parse_args()


def main():
    args = parse_args()
    final = train(args.solver, args.log, weights=args.weights, cwd=args.cwd, gpu=args.gpu, snapshot=args.snapshot)
    print(f"final weights: {final}")


if __name__ == "__main__":
    main()
