"""Late fusion of score files: the paper's '+' (L2-normalised average) or a weighted average.

    .venv/bin/python tools/fuse_scores.py spatial=s.npz temporal=t.npz --out st.npz
    .venv/bin/python tools/fuse_scores.py mfusion=m.npz spatial=s.npz temporal=t.npz \\
        --weights mfusion=2 spatial=3 temporal=4 --out final.npz

Prints every input's and the fused accuracy.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from mfuse.evaluation import evaluate, fuse, load_scores, save_scores


def name_value(text):
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("streams", type=name_value, nargs="+", help="NAME=score_file.npz (two or more)")
    parser.add_argument("--weights", type=name_value, nargs="+", help="NAME=weight (default: equal, the '+')")
    parser.add_argument("--no-normalize", action="store_true", help="average raw softmax scores")
    parser.add_argument("--out", type=Path, help="write the fused score file here")
    return parser.parse_args()


def main():
    args = parse_args()
    streams = {name: load_scores(path) for name, path in args.streams}
    weights = {name: float(value) for name, value in args.weights} if args.weights else None
    fused = fuse(streams, weights, normalize=not args.no_normalize)
    report = {name: evaluate(s).accuracy for name, s in streams.items()}
    report["fused"] = evaluate(fused).accuracy
    if args.out:
        save_scores(args.out, fused)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
