"""The paper on any dataset in one command: data preparation, ImageNet init, the streams, fusion, the 25x10
tests, late fusion and Tables 1-3 (see docs/reproducing.md).

    .venv/bin/python tools/reproduce.py experiments/ucf101_vgg19.toml [--dry-run]
    .venv/bin/python tools/reproduce.py --dataset ucf101 --videos UCF-101 --splits ucfTrainTestlist \\
        --backbone vgg19 --imagenet VGG_ILSVRC_19_layers.caffemodel --split-ids 1 2 3 --gpus 0 --out runs/ucf101_vgg19

Flags given beside an experiment file override its keys. Rerunning skips every stage whose outputs are
complete and recorded with the same inputs; a killed run resumes mid-training from its last snapshot.
Exit status: 0 done, 1 a stage failed, 2 bad input.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mfuse.conventions import GLOG_LEVEL_ENV, SPLITS
from mfuse.prep.flow import ALGORITHMS


def gpu_ids(text: str) -> list[int]:
    """``"0,1"`` -> ``[0, 1]``; ``"0"`` -> ``[0]``."""
    try:
        return [int(item) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a GPU id or a comma-separated list of them") from None


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", nargs="?", type=Path, help="experiment file (TOML), e.g. experiments/demo.toml")
    parser.add_argument("--dry-run", action="store_true", help="check every input and print the plan; run nothing")
    parser.add_argument("--out", type=Path, help="run folder")
    parser.add_argument("--dataset", choices=("ucf101", "hmdb51", "synthetic"), help="list format")
    parser.add_argument("--videos", type=Path, help="video folder (<class>/<video>.avi)")
    parser.add_argument("--splits", type=Path, help="folder of the split lists")
    parser.add_argument("--split-ids", type=int, nargs="+", choices=SPLITS, help="splits to run (default 1 2 3)")
    parser.add_argument("--data", type=Path, help="prepared-data folder (default <out>/data)")
    parser.add_argument("--workers", type=int, help="processes for data preparation")
    parser.add_argument("--flow", choices=ALGORITHMS, help="optical flow algorithm (default tvl1)")
    parser.add_argument("--backbone", help="cnn_m_2048, vgg19 or tiny")
    parser.add_argument("--imagenet", help="ImageNet caffemodel of the backbone ('none': from scratch)")
    parser.add_argument("--fusion-activation", help="NONE (the paper's formula) or RELU (the authors' code)")
    parser.add_argument("--gpus", type=gpu_ids, nargs="*", metavar="IDS",
                        help="GPU ids, as 0,1 (tools/train.py's form) or 0 1 (none given: CPU)")
    parser.add_argument("--seeds", type=int, nargs="+", help="training seeds")
    parser.add_argument("--heldout-fraction", type=float, help="share of each train list held out for the fusion "
                                                               "weight search (0: none, as the paper)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.gpus is not None:
        args.gpus = [gpu for ids in args.gpus for gpu in ids]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    # pycaffe logs every net it builds (one per tested net); keep warnings and errors only.
    os.environ.setdefault(GLOG_LEVEL_ENV, "1")
    from mfuse.recipe import ExperimentError, InputError, dry_run, load_experiment, reproduce
    from mfuse.recipe.experiment import FLAGS
    from mfuse.recipe.stages import STAGE_ERRORS

    flags = {name: getattr(args, name) for name in FLAGS}
    try:
        experiment = load_experiment(args.experiment, flags)
        if args.dry_run:
            print(dry_run(experiment), end="")
            return 0
        report = reproduce(experiment, progress=not args.quiet)
    except (ExperimentError, InputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except STAGE_ERRORS as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(report.read_text())
    print(f"Results, pictures and score files: {report.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
