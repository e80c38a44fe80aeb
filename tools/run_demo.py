"""The main job on the built-in synthetic dataset: data, training, 25x10 testing, fusion, report.

    .venv/bin/python tools/run_demo.py [--out runs/demo] [--seeds 1 2 3] [--quick]
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from mfuse.conventions import GLOG_LEVEL_ENV, SPLITS
from mfuse.prep.flow import ALGORITHMS


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="run directory (default runs/demo)")
    # Unless given, a setting is DemoConfig's default.
    parser.add_argument("--seeds", type=int, nargs="+", default=argparse.SUPPRESS, help="training seeds")
    parser.add_argument("--split", type=int, choices=SPLITS, default=argparse.SUPPRESS)
    parser.add_argument("--flow", dest="flow_algorithm", choices=ALGORITHMS, default=argparse.SUPPRESS,
                        help="optical flow")
    parser.add_argument("--workers", type=int, default=argparse.SUPPRESS, help="processes for data preparation")
    parser.add_argument("--quick", action="store_true", help="few videos and iterations (a smoke run)")
    return parser.parse_args()


def main():
    args = parse_args()
    # pycaffe logs every net it builds (one per tested net); keep warnings and errors only.
    os.environ.setdefault(GLOG_LEVEL_ENV, "1")
    from mfuse.demo import DemoConfig, quick_config, run_demo

    if args.quick:
        config = quick_config(args.out, progress=True)
    else:
        given = {key: value for key, value in vars(args).items() if key not in ("out", "quick")}
        if "seeds" in given:
            given["seeds"] = tuple(given["seeds"])
        config = DemoConfig(out=args.out, **given)
    report = run_demo(config)
    print(report.read_text())
    print(f"Results, pictures and score files: {report.parent}")


if __name__ == "__main__":
    main()
