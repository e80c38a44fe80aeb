#!/usr/bin/env python3
"""Prepare UCF101 or HMDB51: videos -> frames + optical flow -> LMDB databases (and/or folder lists).

Example:
    python tools/prepare.py ucf101 --videos UCF-101 --splits ucfTrainTestlist --out data/ucf101 --workers 16
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mfuse.conventions import MODALITIES, SPLITS
from mfuse.datasets import DATASETS, SplitError
from mfuse.prep.flow import ALGORITHMS, DEFAULT_BOUND, SUBTRACTIONS
from mfuse.prep.frames import ExtractSettings
from mfuse.prep.pipeline import STAGES, STORE_CHOICES, format_summary, parse_shard, prepare_dataset


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 340x256, got {text!r}") from None
    return width, height


def parse_shard_arg(text: str) -> tuple[int, int]:
    try:
        return parse_shard(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("--videos", type=Path, required=True, help="dataset root holding <class>/<video>.avi")
    parser.add_argument("--splits", type=Path, required=True, help="folder of the official split lists")
    parser.add_argument("--out", type=Path, required=True, help="output folder (frames/, lmdb/, lists/)")
    parser.add_argument("--split-ids", type=int, nargs="+", default=list(SPLITS), choices=SPLITS)
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--storage", default="lmdb", choices=STORE_CHOICES,
                        help="LMDB databases, frame-folder index files, or both")
    parser.add_argument("--modalities", nargs="+", choices=MODALITIES, default=None,
                        help="stores to build (default: rgb flow mag, or rgb with --flow none)")
    parser.add_argument("--short-side", type=int, default=256, help="resize so the smaller side is this")
    parser.add_argument("--size", type=parse_size, default=None, help="fixed WxH instead, e.g. 340x256 (TSN)")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality of every image")
    parser.add_argument("--flow", default="tvl1", choices=[*ALGORITHMS, "none"])
    parser.add_argument("--bound", type=float, default=DEFAULT_BOUND, help="flow clipping bound (pixels)")
    parser.add_argument("--flow-subtract", default=SUBTRACTIONS[0], choices=SUBTRACTIONS,
                        help="camera-motion compensation per flow frame before quantisation: mean (Simonyan and "
                             "Zisserman's mean flow subtraction, as the paper; default), median, none (TSN)")
    parser.add_argument("--separate-xy", action="store_true", help="also write flow_x_/flow_y_ files")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--shard", type=parse_shard_arg, default=None, metavar="I/N",
                        help="handle shard I of N (0-based): every N-th video / database")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 if any video failed")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    settings = ExtractSettings(short_side=args.short_side, fixed_size=args.size, jpeg_quality=args.quality,
                               flow_algorithm=None if args.flow == "none" else args.flow, bound=args.bound,
                               flow_subtract=args.flow_subtract, separate_xy=args.separate_xy)
    try:
        summary = prepare_dataset(args.dataset, args.videos, args.splits, args.out, settings,
                                  splits=args.split_ids, storage=args.storage, modalities=args.modalities,
                                  workers=args.workers, shard=args.shard, stages=args.stages,
                                  progress=not args.no_progress)
    except (SplitError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    return 1 if args.strict and summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
