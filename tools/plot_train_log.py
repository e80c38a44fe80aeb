"""Parse a Caffe training log into CSV tables and a PNG of loss, test accuracy and learning rate.

Example: python tools/plot_train_log.py runs/spatial/train.log --out runs/spatial/report
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mfuse.reports import plot_training_curves, read_train_log


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", type=Path, help="glog output of caffe train (or a pycaffe solver)")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: the log's directory)")
    parser.add_argument("--title", default=None, help="figure title (default: the log's file name)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = args.out or args.log.parent
    log = read_train_log(args.log)
    if not log.train and not log.test:
        raise SystemExit(f"{args.log}: no 'Iteration ...' or 'Test net output' lines found")
    paths = log.write_csv(out, stem=args.log.stem)
    paths.append(plot_training_curves(log, out / f"{args.log.stem}_curves.png", title=args.title or args.log.name))
    print(f"{len(log.train)} train rows, {len(log.test)} test rows -> " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    main()
