"""The paper's test protocol (25 frames x 10 crops) for one net on a prepared dataset; writes a score file.

    .venv/bin/python tools/test_net.py --deploy prototxt/spatial_deploy.prototxt \\
        --weights runs/spatial/snap_iter_20000.caffemodel --data data/ucf101 --split 1 \\
        --out scores/split1_spatial.npz [--gpu 0]

The crop size and the flow stack length are the deploy net's (its input blobs); a --crop-size that disagrees
is refused, and so are weights that lack a layer of the deploy net with parameters. Prints top-1 and mean class
accuracy. An interrupted run resumes from ``<out>.partial.npz`` when net, weights, data and protocol are the
same (it says so); a partial file of another run is refused (--restart discards it).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from mfuse.conventions import CROP_MODES, GLOG_LEVEL_ENV, SPLITS, STORAGES, SUBSETS


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deploy", type=Path, required=True, help="deploy prototxt (inputs data_rgb/flow/mag)")
    parser.add_argument("--weights", type=Path, required=True, help="caffemodel")
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset folder (tools/prepare.py --out)")
    parser.add_argument("--split", type=int, choices=SPLITS, default=1)
    parser.add_argument("--subset", choices=SUBSETS, default="test")
    parser.add_argument("--storage", choices=STORAGES, default="lmdb")
    parser.add_argument("--out", type=Path, required=True, help="score file (.npz)")
    parser.add_argument("--frames", type=positive_int, default=25, help="sampled frames per video (25)")
    parser.add_argument("--crops", choices=CROP_MODES, default="ten", help="10 crops or the centre one")
    parser.add_argument("--crop-size", type=int, help="crop side (default: the deploy net's input size)")
    parser.add_argument("--rgb-at-stack-centre", action="store_true",
                        help="pair the RGB frame with the middle of the flow stack (the authors' fusion test)")
    parser.add_argument("--max-batch", type=positive_int, default=250, help="crops per forward pass")
    parser.add_argument("--gpu", type=int, help="GPU id (default: CPU)")
    parser.add_argument("--workers", type=positive_int,
                        help="decoding processes (default: the usable cores but one)")
    parser.add_argument("--restart", action="store_true",
                        help="discard the progress of an interrupted run (<out>.partial.npz) and start over")
    return parser.parse_args()


def main():
    args = parse_args()
    os.environ.setdefault(GLOG_LEVEL_ENV, "1")
    from mfuse.evaluation import (PartialMismatchError, Protocol, evaluate, evaluate_net, file_digest, load_test_net,
                                  partial_path, protocol_for)
    from mfuse.nets.inputs import read_input_geometry
    from mfuse.stores.reader import open_frame_stores

    protocol = Protocol(frames=args.frames, crop_mode=args.crops, crop_size=args.crop_size,
                        rgb_at_stack_centre=args.rgb_at_stack_centre, max_batch=args.max_batch)
    try:
        geometry = read_input_geometry(args.deploy)
        protocol = protocol_for(protocol, geometry, str(args.deploy))
        net = load_test_net(args.deploy, args.weights, args.gpu)
    except ValueError as error:  # includes mfuse.surgery.SurgeryError: weights that do not fit the net
        raise SystemExit(f"error: {error}") from None
    stores = open_frame_stores(args.data, args.split, args.subset, geometry.modalities, args.storage)
    meta = {"dataset": str(args.data), "split": args.split, "subset": args.subset, "net": str(args.deploy),
            "weights": str(args.weights), "deploy_sha256": file_digest(args.deploy),
            "weights_sha256": file_digest(args.weights)}
    if args.restart:
        partial_path(args.out).unlink(missing_ok=True)
    try:
        scores = evaluate_net(net, stores, args.out, meta, protocol, workers=args.workers)
    except PartialMismatchError as error:
        raise SystemExit(f"error: {error}") from None
    result = evaluate(scores)
    print(json.dumps({"videos": result.num_videos, "accuracy": result.accuracy,
                      "mean_class_accuracy": result.mean_class_accuracy, "scores": str(args.out)}))


if __name__ == "__main__":
    main()
