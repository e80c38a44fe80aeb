"""Net surgery: initial caffemodels for fusion / stream nets, FlowAmplify insertion. Prints what was copied;
writes nothing (exit 1) when a source does not fit, or when nothing of it does.

    python tools/surgery.py fusion-init prototxt/mfuse_conv5_deploy.prototxt \\
        --spatial runs/spatial/snap_iter_20000.caffemodel --temporal runs/temporal/snap_iter_80000.caffemodel \\
        --out runs/mfuse_conv5/init.caffemodel
    python tools/surgery.py imagenet-init prototxt/temporal_deploy.prototxt --imagenet VGG_CNN_M_2048.caffemodel \\
        --cross-modality --out runs/temporal/init.caffemodel
    python tools/surgery.py insert-amplify my_deploy.prototxt my.caffemodel --after conv5 \\
        --out-prototxt my_amp_deploy.prototxt --out-caffemodel my_amp.caffemodel
"""
from __future__ import annotations

import argparse
import sys

from mfuse.conventions import FLOW_AMPLIFY_DEFAULTS, INPUT_BLOBS
from mfuse.surgery import SurgeryError, format_report, init_fusion, init_from_imagenet, insert_flow_amplify


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    fusion = commands.add_parser("fusion-init", help="fusion net init from trained spatial + temporal nets")
    fusion.add_argument("prototxt", help="the fusion net's deploy prototxt")
    fusion.add_argument("--spatial", required=True, help="trained spatial (or spatial_amp) caffemodel")
    fusion.add_argument("--temporal", required=True, help="trained temporal caffemodel")
    fusion.add_argument("--out", required=True, help="output caffemodel")
    imagenet = commands.add_parser("imagenet-init", help="stream net init from an ImageNet caffemodel")
    imagenet.add_argument("prototxt", help="the stream net's deploy prototxt")
    imagenet.add_argument("--imagenet", required=True, help="ImageNet caffemodel (same layer names)")
    imagenet.add_argument("--cross-modality", action="store_true",
                          help="average the first conv's RGB filters and replicate them to the flow channels")
    imagenet.add_argument("--allow-partial", action="store_true",
                          help="accept an ImageNet model that lacks layers besides the classifier (they keep "
                               "their fillers)")
    imagenet.add_argument("--out", required=True, help="output caffemodel")
    amplify = commands.add_parser("insert-amplify", help="add FlowAmplify after a layer of any deploy net")
    amplify.add_argument("prototxt", help="deploy prototxt")
    amplify.add_argument("caffemodel", help="its weights")
    amplify.add_argument("--after", required=True, help="layer whose output is amplified (e.g. conv5)")
    amplify.add_argument("--out-prototxt", required=True)
    amplify.add_argument("--out-caffemodel", required=True)
    amplify.add_argument("--magnitude-shape", type=int, nargs=4, metavar=("N", "C", "H", "W"),
                         help="shape of the magnitude input (default: N, 1, H, W of the first input)")
    amplify.add_argument("--magnitude-top", default=INPUT_BLOBS["mag"], help="name of the magnitude input blob")
    amplify.add_argument("--offset", type=float, default=FLOW_AMPLIFY_DEFAULTS["offset"],
                         help="gate offset (1: the paper)")
    amplify.add_argument("--scale", type=float, default=FLOW_AMPLIFY_DEFAULTS["scale"], help="gate scale")
    return parser.parse_args()


def main():
    args = parse_args()
    try:
        if args.command == "fusion-init":
            records = init_fusion(args.prototxt, args.spatial, args.temporal, args.out)
        elif args.command == "imagenet-init":
            records = init_from_imagenet(args.prototxt, args.imagenet, args.out, args.cross_modality,
                                         args.allow_partial)
        else:
            records = insert_flow_amplify(args.prototxt, args.caffemodel, args.after, args.out_prototxt,
                                          args.out_caffemodel, args.magnitude_shape, args.magnitude_top,
                                          dict(offset=args.offset, scale=args.scale))
    except SurgeryError as err:
        sys.exit(f"surgery failed: {err}")
    print(format_report(records))


if __name__ == "__main__":
    main()
