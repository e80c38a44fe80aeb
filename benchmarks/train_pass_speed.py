"""A training pass with the real data layer against the same net with DummyData (issue 19 item 4), in pycaffe.

    python benchmarks/train_pass_speed.py --data DATA --gpu 0 --out results.json [--nets spatial temporal]
                                          [--workers -1] [--iters 40]

For each net of ``benchmarks/nets/manifest.json`` named by ``--nets`` (TRAIN nets at the committed batch): the
net as committed (``DummyData`` inputs, constant, on the device after the first pass) and the same net whose
``DummyData`` layer is replaced by ``mfuse.layers.video_data.VideoDataLayer`` reading the prepared dataset
``DATA`` (LMDB, split 1 train, the net's input blobs as modalities, its batch and crop size, stack length 10,
``--workers`` processes). One iteration is ``net.forward()`` + ``net.backward()`` (Caffe's Forward-Backward,
no solver update); the time is the wall time of ``--iters`` iterations (the last one waited for) divided by
their number, after ``--warmup`` iterations and, for the real data, as many more as the loader holds ready
(workers x slots), so that no batch made before the timing is counted. ``ratio`` = real / DummyData.
Runs with an older mfuse too (without ``workers``), for a before/after on the same machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from mfuse.conventions import GLOG_LEVEL_ENV, INPUT_BLOBS, STACK_LENGTH
from mfuse.fileio import write_atomic

MANIFEST = Path(__file__).resolve().parent / "nets" / "manifest.json"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset folder (split 1 train LMDBs)")
    parser.add_argument("--nets", nargs="+", default=["spatial", "temporal", "mfuse_conv5"])
    parser.add_argument("--gpu", type=int, help="GPU id (default: CPU mode)")
    parser.add_argument("--workers", type=int, default=-1, help="the data layer's workers (-1: its default)")
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--manifest", type=Path, default=MANIFEST, help="nets to time (benchmarks/make_bench_nets.py)")
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args()


def real_data_net(dummy_path: Path, data: Path, workers: int, out_path: Path) -> Path:
    """The net of ``dummy_path`` with its DummyData layer replaced by the video data layer (same tops)."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    net = text_format.Merge(dummy_path.read_text(), caffe_pb2.NetParameter())
    layer = next(layer for layer in net.layer if layer.type == "DummyData")
    blobs = {blob: modality for modality, blob in INPUT_BLOBS.items()}
    tops = list(layer.top)
    modalities = [blobs[top] for top in tops[:-1]]
    shape = layer.dummy_data_param.shape[0].dim
    param_str = {"source": str(data), "split": 1, "subset": "train", "modalities": modalities,
                 "batch_size": int(shape[0]), "crop_size": int(shape[-1]), "new_length": STACK_LENGTH}
    if workers != -1:              # left to the layer's default otherwise (also: layers without the key)
        param_str["workers"] = workers
    layer.Clear()
    layer.name, layer.type = "data", "Python"
    layer.top.extend(tops)
    layer.python_param.module, layer.python_param.layer = "mfuse.layers.video_data", "VideoDataLayer"
    layer.python_param.param_str = json.dumps(param_str)
    out_path.write_text(text_format.MessageToString(net))
    return out_path


def time_net(path: Path, iters: int, warmup: int) -> dict:
    import caffe

    net = caffe.Net(str(path), caffe.TRAIN)
    data = net.layers[0]
    loader = getattr(data, "loader", None)
    if loader is not None:
        warmup += getattr(loader, "workers", 0) * getattr(loader, "depth", 0)
    for _ in range(warmup):
        net.forward()
        net.backward()
    last_param = next(reversed(net.params.values()))[0]
    last_param.diff.sum()
    start = time.perf_counter()
    for _ in range(iters):
        net.forward()
        net.backward()
    last_param.diff.sum()                       # reading a diff waits for the last backward
    seconds = (time.perf_counter() - start) / iters
    record = {"ms_per_iter": seconds * 1000, "iters": iters, "warmup": warmup}
    if loader is not None:
        record.update(workers=getattr(loader, "workers", None), slots_per_worker=getattr(loader, "depth", None),
                      convert_threads=getattr(loader, "threads", None))
        getattr(loader, "close", lambda: None)()
    del net
    return record


def main():
    args = parse_args()
    os.environ.setdefault(GLOG_LEVEL_ENV, "2")
    import caffe

    if args.gpu is None:
        caffe.set_mode_cpu()
    else:
        caffe.set_device(args.gpu)
        caffe.set_mode_gpu()
    manifest = {entry["name"]: entry for entry in json.loads(args.manifest.read_text())["nets"]}
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.nets:
            dummy = args.manifest.parent / manifest[name]["file"]
            real = real_data_net(dummy, args.data, args.workers, Path(tmp) / f"{name}_real.prototxt")
            record = {"net": name, "batch": manifest[name]["batch"],
                      "dummy": time_net(dummy, args.iters, args.warmup),
                      "real": time_net(real, args.iters, args.warmup)}
            record["ratio"] = record["real"]["ms_per_iter"] / record["dummy"]["ms_per_iter"]
            records.append(record)
            print(json.dumps(record), flush=True)
    write_atomic(args.out, json.dumps({"bench": "train_pass_speed", "data": str(args.data), "gpu": args.gpu,
                                       "tf32": os.environ.get("MFUSE_TF32", "0"), "cores": len(os.sched_getaffinity(0)),
                                       "cpu": platform.processor() or platform.machine(), "records": records},
                                      indent=1))
    print("| net | batch | DummyData ms | real data ms | real / DummyData | workers |\n|---|---|---|---|---|---|")
    for r in records:
        print(f"| {r['net']} | {r['batch']} | {r['dummy']['ms_per_iter']:.1f} | {r['real']['ms_per_iter']:.1f} | "
              f"{r['ratio']:.3f} | {r['real']['workers']} |")


if __name__ == "__main__":
    main()
