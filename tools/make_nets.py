"""Regenerates the committed nets and solvers under prototxt/, or writes one set for another dataset.

    python tools/make_nets.py                                   # prototxt/ (CNN-M-2048, VGG19, tiny)
    python tools/make_nets.py --out prototxt/hmdb51_split2 --backbone cnn_m_2048 --num-classes 51 \
        --source data/hmdb51 --split 2
"""
from __future__ import annotations

import argparse

from mfuse.conventions import SPLITS, STORAGES
from mfuse.nets.build_all import COMMITTED, custom_set, write_all


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="prototxt",
                        help="output directory, relative to the repository root (default: prototxt)")
    parser.add_argument("--backbone", choices=sorted(COMMITTED),
                        help="write one set of this backbone instead of the committed sets")
    parser.add_argument("--num-classes", type=int, help="with --backbone: the classes of the split lists")
    parser.add_argument("--source", help="with --backbone: the prepared-data folder (tools/prepare.py --out)")
    parser.add_argument("--split", type=int, default=1, choices=SPLITS, help="with --backbone")
    parser.add_argument("--storage", choices=STORAGES, default="lmdb", help="with --backbone")
    parser.add_argument("--fusion-activation", choices=("NONE", "RELU"), default="NONE",
                        help="with --backbone: NONE is the paper's formula, RELU the authors' code")
    parser.add_argument("--runs-dir", help="with --backbone: snapshot root (default runs/<backbone>_<dataset>_split<k>)")
    return parser.parse_args()


def main():
    args = parse_args()
    net_sets = None
    if args.backbone:
        if args.num_classes is None or args.source is None:
            raise SystemExit("error: --backbone needs --num-classes and --source")
        net_sets = [custom_set(args.backbone, args.num_classes, args.source, split=args.split,
                               storage=args.storage, fusion_activation=args.fusion_activation,
                               runs_dir=args.runs_dir)]
    for path in write_all(args.out, net_sets):
        print(path)


if __name__ == "__main__":
    main()
