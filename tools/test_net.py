"""The paper's test protocol (25 frames x 10 crops) for one net on a prepared dataset; writes a score file.

    .venv/bin/python tools/test_net.py --deploy prototxt/spatial_deploy.prototxt \\
        --weights runs/spatial/snap_iter_20000.caffemodel --data data/ucf101 --split 1 \\
        --out scores/split1_spatial.npz [--gpu 0]

Prints top-1 and mean class accuracy. An interrupted run resumes from ``<out>.partial.npz``.
"""
import argparse
import json
import os
from pathlib import Path


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deploy", type=Path, required=True, help="deploy prototxt (inputs data_rgb/flow/mag)")
    parser.add_argument("--weights", type=Path, required=True, help="caffemodel")
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset folder (tools/prepare.py --out)")
    parser.add_argument("--split", type=int, choices=(1, 2, 3), default=1)
    parser.add_argument("--subset", choices=("test", "train"), default="test")
    parser.add_argument("--storage", choices=("lmdb", "folder"), default="lmdb")
    parser.add_argument("--out", type=Path, required=True, help="score file (.npz)")
    parser.add_argument("--frames", type=int, default=25, help="sampled frames per video (25)")
    parser.add_argument("--crops", choices=("ten", "center"), default="ten", help="10 crops or the centre one")
    parser.add_argument("--crop-size", type=int, default=224)
    parser.add_argument("--rgb-at-stack-centre", action="store_true",
                        help="pair the RGB frame with the middle of the flow stack (the authors' fusion test)")
    parser.add_argument("--max-batch", type=int, default=250, help="crops per forward pass")
    parser.add_argument("--gpu", type=int, help="GPU id (default: CPU)")
    parser.add_argument("--workers", type=int, default=2, help="decoding threads")
    return parser.parse_args()


def main():
    args = parse_args()
    os.environ.setdefault("GLOG_minloglevel", "1")
    from mfuse.evaluation import evaluate
    from mfuse.evaluation.testing import Protocol, evaluate_net, load_test_net, net_modalities
    from mfuse.prep.lmdb_store import open_frame_store

    net = load_test_net(args.deploy, args.weights, args.gpu)
    stores = {m: open_frame_store(args.data, args.split, args.subset, m, args.storage) for m in net_modalities(net)}
    protocol = Protocol(frames=args.frames, crop_mode=args.crops, crop_size=args.crop_size,
                        rgb_at_stack_centre=args.rgb_at_stack_centre, max_batch=args.max_batch)
    meta = {"dataset": str(args.data), "split": args.split, "subset": args.subset, "net": str(args.deploy),
            "weights": str(args.weights)}
    scores = evaluate_net(net, stores, args.out, meta, protocol, workers=args.workers)
    result = evaluate(scores)
    print(json.dumps({"videos": result.num_videos, "accuracy": result.accuracy,
                      "mean_class_accuracy": result.mean_class_accuracy, "scores": str(args.out)}))


if __name__ == "__main__":
    main()
