"""Late fusion of score files: the paper's '+' (L2-normalised average) or a weighted average.

    .venv/bin/python tools/fuse_scores.py spatial=s.npz temporal=t.npz --out st.npz
    .venv/bin/python tools/fuse_scores.py mfusion=m.npz spatial=s.npz temporal=t.npz \\
        --weights mfusion=2 spatial=3 temporal=4 --out final.npz

Prints every input's and the fused accuracy. Stream names must be unique; weights are finite numbers >= 0.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from mfuse.evaluation import ScoreFileError, evaluate, fuse, load_scores, save_scores


def name_value(text):
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def name_weight(text):
    name, value = name_value(text)
    try:
        weight = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"weight of {name!r} must be a number, got {value!r}") from None
    if not math.isfinite(weight) or weight < 0:
        raise argparse.ArgumentTypeError(f"weight of {name!r} must be a finite number >= 0, got {value!r}")
    return name, weight


def unique(parser, pairs, what):
    """``{name: value}`` of the NAME=VALUE pairs; a name given twice is an argparse error."""
    result = {}
    for name, value in pairs:
        if name in result:
            parser.error(f"{what} {name!r} is given twice ({result[name]} and {value}): names must be unique")
        result[name] = value
    return result


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("streams", type=name_value, nargs="+", help="NAME=score_file.npz (two or more)")
    parser.add_argument("--weights", type=name_weight, nargs="+", help="NAME=weight (default: equal, the '+')")
    parser.add_argument("--no-normalize", action="store_true", help="average raw softmax scores")
    parser.add_argument("--out", type=Path, help="write the fused score file here")
    args = parser.parse_args()
    args.streams = unique(parser, args.streams, "stream")
    args.weights = unique(parser, args.weights, "weight") if args.weights else None
    return args


def main():
    args = parse_args()
    try:
        streams = {name: load_scores(path) for name, path in args.streams.items()}
        fused = fuse(streams, args.weights, normalize=not args.no_normalize)
    except (ScoreFileError, ValueError) as error:
        sys.exit(f"error: {error}")
    report = {name: evaluate(s).accuracy for name, s in streams.items()}
    report["fused"] = evaluate(fused).accuracy
    if args.out:
        save_scores(args.out, fused)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
