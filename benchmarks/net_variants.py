"""Copies of benchmark nets for timing: every convolution's engine set (Caffe's own im2col convolutions,
``CAFFE``, or ``CUDNN``, the default of a cuDNN build), and optionally constant fillers (a VGG19 net then
builds in a second instead of drawing its ~140-550 M Gaussian weights on the CPU; no kernel's speed depends on
the values).

    python benchmarks/net_variants.py --engine CAFFE [--constant-fillers] --out DIR [NET.prototxt ...]

Without nets: every file of ``benchmarks/nets/manifest.json``, with the manifest copied beside them (for
``train_pass_speed.py --manifest DIR/manifest.json``).
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

NETS = Path(__file__).resolve().parent / "nets"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=["CAFFE", "CUDNN"], required=True)
    parser.add_argument("--constant-fillers", action="store_true", help="every filler constant 0")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("nets", type=Path, nargs="*", help="prototxt files (default: the manifest's nets)")
    return parser.parse_args()


def constant_fillers(message, caffe_pb2) -> None:
    """Every ``FillerParameter`` inside ``message`` becomes constant 0 (in place)."""
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        for item in (value if field.is_repeated else [value]):
            if isinstance(item, caffe_pb2.FillerParameter):
                item.Clear()
                item.type = "constant"
            else:
                constant_fillers(item, caffe_pb2)


def variant(path: Path, engine: str, constant: bool, out: Path) -> Path:
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    net = text_format.Merge(path.read_text(), caffe_pb2.NetParameter())
    for layer in net.layer:
        if layer.type == "Convolution":
            layer.convolution_param.engine = getattr(caffe_pb2.ConvolutionParameter, engine)
        if constant and layer.type != "DummyData":
            constant_fillers(layer, caffe_pb2)
    target = out / path.name
    target.write_text(text_format.MessageToString(net))
    return target


def main():
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    nets = args.nets
    if not nets:
        manifest = json.loads((NETS / "manifest.json").read_text())
        nets = sorted({NETS / entry["file"] for entry in manifest["nets"]})
        shutil.copy(NETS / "manifest.json", args.out / "manifest.json")
    for path in nets:
        print(variant(path, args.engine, args.constant_fillers, args.out))


if __name__ == "__main__":
    main()
