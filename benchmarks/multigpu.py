"""Multi-GPU training checks and scaling (issue 17): one command on a machine with two or more GPUs.

    python benchmarks/multigpu.py --tiny-data DIR --data DIR --out DIR [--gpus 2]

(a) **Agreement.** The committed tiny m-fuse conv5 net and solver (``prototxt/tiny/mfuse_conv5_*``), started
    from ``--fusion-init`` (``tools/surgery.py fusion-init`` of tiny spatial and temporal nets trained with the
    committed tiny solvers: from random towers its loss stays at chance for hundreds of iterations, which would
    compare nothing), for ``--agreement-iters`` (500) iterations at the same total batch 32 through
    :func:`mfuse.training.run_training` (pycaffe ranks for both): one GPU (batch 32), N GPUs (``--batch
    split``: 32 / N each), and one GPU with another data seed as the noise reference. Loss curves are rank 0's
    per-iteration losses (``average_loss 1``), compared as means over windows; every learnable parameter of
    every rank is compared bit for bit at the end.
(b) **Scaling.** VGG19 spatial and m-fuse conv5 (``prototxt/vgg19/``) with the real data layer on a prepared
    340x256 synthetic dataset (``--data``, crops 224), on 1 and N GPUs, every GPU the committed batch 32 per
    pass (Caffe's convention) and ``iter_size`` 1: samples/s after ``--warmup`` iterations, from rank 0's
    iteration times. Where the time goes: the share of each iteration rank 0 spends in its data layer's
    forward (waiting for the prefetch), and the same nets with ``DummyData`` inputs (the compute and the
    all-reduce without the data path). The scaling nets' fillers are constants (setup of 411M parameters in
    seconds; the speed does not depend on the values) and they have no test net.

Writes ``<out>/multigpu.json`` (records ``{"bench": "scaling", "name": "spatial" | "mfuse_conv5", "gpus": N,
"samples_per_s": X, ...}`` and ``{"bench": "agreement", ...}``) and ``<out>/multigpu.md`` (the tables); a step
that fails is recorded with its error and the others still run.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import time
import traceback
from pathlib import Path

import numpy as np
import yaml
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from mfuse.conventions import LABEL_BLOB, input_channels
from mfuse.fileio import write_atomic
from mfuse.reports.train_log import read_train_log
from mfuse.training import run_training
from mfuse.training.solver import VIDEO_DATA_MODULE, in_phase, load_solver, train_data_layers
from net_variants import constant_fillers  # benchmarks/ is the script's folder

ROOT = Path(__file__).resolve().parents[1]
TINY_NET = "prototxt/tiny/mfuse_conv5"
SCALING_NETS = ("spatial", "mfuse_conv5")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepare-data", type=Path, metavar="DIR",
                        help="only prepare the 340x256 dataset of the scaling runs in DIR (rgb + flow LMDBs of split 1, "
                             "about 9 MiB) and exit")
    parser.add_argument("--tiny-data", type=Path, help="prepared synthetic dataset (64x48)")
    parser.add_argument("--data", type=Path, help="prepared synthetic dataset (340x256)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--gpus", type=int, default=2, help="GPUs of the multi-GPU runs")
    parser.add_argument("--agreement-iters", type=int, default=500)
    parser.add_argument("--fusion-init", type=Path, help="initial weights of the tiny m-fuse conv5 net")
    parser.add_argument("--window", type=int, default=50, help="iterations per loss-curve window")
    parser.add_argument("--iters", type=int, default=40, help="iterations of each scaling run")
    parser.add_argument("--warmup", type=int, default=10, help="scaling iterations left out of the rate")
    parser.add_argument("--nets", default="prototxt/vgg19", help="folder of the scaling nets (prototxt/tiny with "
                                                                 "--cpu to try the script on a CPU)")
    parser.add_argument("--cpu", action="store_true", help="CPU ranks without NCCL (to try the script here)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["agreement", "scaling", "data", "dummy"])
    parser.add_argument("--scaling-nets", nargs="+", default=list(SCALING_NETS), choices=SCALING_NETS)
    parser.add_argument("--whole-reduce", action="store_true",
                        help="scaling runs all-reduce once per iteration (layer_wise_reduce: false) instead of after "
                             "each layer's backward")
    args = parser.parse_args()
    if args.prepare_data is None and None in (args.tiny_data, args.data, args.out, args.fusion_init):
        parser.error("--tiny-data, --data, --fusion-init and --out are required (or --prepare-data alone)")
    return args


def prepare_scaling_data(root: Path) -> None:
    """32 synthetic 340x256 videos of 12 frames (4 groups x 1 clip x 8 classes), DIS flow, rgb + flow LMDBs of
    split 1, in ``root/data`` (what ``--data`` takes). Synthetic scenes are flat colours: their JPEGs are smaller
    and faster to decode than UCF101's at the same size."""
    from mfuse.prep.frames import ExtractSettings
    from mfuse.prep.pipeline import prepare_dataset
    from mfuse.synthetic.generator import SyntheticConfig, generate
    from mfuse.synthetic.layout import UCF101_LIST_DIR

    generate(root / "dataset", SyntheticConfig(num_groups=4, clips_per_group=1, num_frames=12, size=(340, 256)),
             progress=False)
    summary = prepare_dataset("ucf101", root / "dataset", root / "dataset" / UCF101_LIST_DIR, root / "data",
                              ExtractSettings(short_side=None, flow_algorithm="dis"), splits=(1,),
                              modalities=("rgb", "flow"), workers=2, progress=False)
    if summary.failures:
        raise SystemExit(f"preparing {root} failed for {len(summary.failures)} videos")


def load_net(path: Path) -> caffe_pb2.NetParameter:
    return text_format.Merge(path.read_text(), caffe_pb2.NetParameter())


def train_only(net: caffe_pb2.NetParameter, source: Path, seed: int | None = None) -> caffe_pb2.NetParameter:
    """The TRAIN net of a committed train_val net, its data layer reading ``source`` (and ``seed``)."""
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net)
    del out.layer[:]
    for layer in net.layer:
        if in_phase(layer):
            out.layer.add().CopyFrom(layer)
    (data,) = train_data_layers(out)
    params = yaml.safe_load(data.python_param.param_str)
    params.update(source=str(source), **({} if seed is None else {"seed": seed}))
    data.python_param.param_str = json.dumps(params)
    for layer in out.layer:
        layer.ClearField("include")
    return out


def dummy_inputs(net: caffe_pb2.NetParameter) -> caffe_pb2.NetParameter:
    """``net`` with its data layer replaced by ``DummyData`` of the same tops and shapes (constant 0)."""
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net)
    (data,) = train_data_layers(out)
    assert data.python_param.module == VIDEO_DATA_MODULE
    params = yaml.safe_load(data.python_param.param_str)
    batch, crop, length = params.get("batch_size", 32), params.get("crop_size", 224), params.get("new_length", 10)
    tops = list(data.top)
    data.Clear()
    data.name, data.type = "data", "DummyData"
    data.top.extend(tops)
    for top in tops:
        shape = data.dummy_data_param.shape.add()
        if top == LABEL_BLOB:
            shape.dim.append(batch)
        else:
            shape.dim.extend([batch, input_channels(top.removeprefix("data_"), length), crop, crop])
        data.dummy_data_param.data_filler.add().type = "constant"
    return out


def write_solver(out: Path, name: str, base: Path, net: caffe_pb2.NetParameter, max_iter: int,
                 display: int, final_snapshot: bool, layer_wise_reduce: bool = True) -> Path:
    """A solver with ``base``'s schedule training ``net`` (inline) for ``max_iter`` iterations, no test."""
    solver = load_solver(base)
    for field in ("net", "train_net", "net_param", "test_net", "test_net_param", "test_iter", "test_state",
                  "test_interval", "test_initialization"):
        solver.ClearField(field)
    solver.train_net_param.CopyFrom(net)
    solver.max_iter, solver.display, solver.average_loss, solver.iter_size = max_iter, display, 1, 1
    solver.snapshot, solver.snapshot_after_train = 0, final_snapshot
    solver.layer_wise_reduce = layer_wise_reduce
    solver.snapshot_prefix = str(out / name / "snap")
    path = out / name / "solver.prototxt"
    write_atomic(path, text_format.MessageToString(solver))
    return path


def gpu_list(count: int, cpu: bool):
    return None if cpu else list(range(count))


def train(solver: Path, gpus, cpu_ranks: int, **kwargs):
    return run_training(solver, solver.parent / "train.log", cwd=ROOT, gpus=gpus, engine="ranks",
                        cpu_ranks=cpu_ranks, progress=False, force=True, announce=print, **kwargs)


def blobs(caffemodel: Path) -> dict[str, list[np.ndarray]]:
    net = caffe_pb2.NetParameter()
    net.ParseFromString(caffemodel.read_bytes())
    return {layer.name: [np.array(blob.data, np.float32) for blob in layer.blobs] for layer in net.layer
            if layer.blobs}


def window_means(log: Path, window: int) -> list[float]:
    iterations, losses = read_train_log(log).series("train", "loss")
    losses = np.asarray(losses, np.float64)
    return [float(losses[i:i + window].mean()) for i in range(0, len(losses) - window + 1, window)]


def agreement(args) -> dict:
    """(a): returns the agreement record."""
    base = ROOT / f"{TINY_NET}_solver.prototxt"
    net = load_net(ROOT / f"{TINY_NET}_train_val.prototxt")
    runs = {"1gpu": (1, 1), f"{args.gpus}gpu": (args.gpus, 1), "1gpu_seed2": (1, 2)}
    logs, times = {}, {}
    for name, (count, seed) in runs.items():
        solver = write_solver(args.out / "agreement", name, base, train_only(net, args.tiny_data.resolve(), seed),
                              args.agreement_iters, display=1, final_snapshot=False)
        started = time.monotonic()
        train(solver, gpu_list(count, args.cpu), count, batch="split", weights=args.fusion_init.resolve(),
              rank_weights=solver.parent / "ranks")
        times[name] = time.monotonic() - started
        logs[name] = solver.parent / "train.log"
    curves = {name: window_means(log, args.window) for name, log in logs.items()}
    multi, one, other = curves[f"{args.gpus}gpu"], curves["1gpu"], curves["1gpu_seed2"]
    ranks = [blobs(args.out / "agreement" / f"{args.gpus}gpu" / "ranks" / f"rank{r}.caffemodel")
             for r in range(args.gpus)]
    compared = sum(blob.size for blobs_ in ranks[0].values() for blob in blobs_)
    mismatched = sorted({f"{name}[{i}]" for other_rank in ranks[1:] for name in ranks[0]
                         for i, (a, b) in enumerate(zip(ranks[0][name], other_rank[name]))
                         if not np.array_equal(a.view(np.uint32), b.view(np.uint32))})
    rms = lambda a, b: float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))  # noqa: E731
    return {"bench": "agreement", "name": "tiny_mfuse_conv5", "gpus": args.gpus, "total_batch": 32,
            "iterations": args.agreement_iters, "window": args.window, "loss_windows": curves,
            "rms_window_diff_1_vs_n": rms(one, multi), "rms_window_diff_1_vs_1_seed2": rms(one, other),
            "final_window": {name: curve[-1] for name, curve in curves.items()},
            "parameters_compared": int(compared), "ranks_bit_identical": not mismatched,
            "mismatched_blobs": mismatched, "seconds": times}


def scaling_run(args, name: str, dummy: bool, count: int) -> dict:
    base = ROOT / args.nets / f"{name}_solver.prototxt"
    net = train_only(load_net(ROOT / args.nets / f"{name}_train_val.prototxt"), args.data.resolve())
    constant_fillers(net, caffe_pb2)
    if dummy:
        net = dummy_inputs(net)
    tag = f"{name}_{'dummy' if dummy else 'data'}_{count}gpu"
    reduce = "whole" if args.whole_reduce else "layer-wise"
    solver = write_solver(args.out / "scaling", f"{tag}_{reduce}", base, net, args.iters, display=10,
                          final_snapshot=False, layer_wise_reduce=not args.whole_reduce)
    started = time.monotonic()
    result = train(solver, gpu_list(count, args.cpu), count, batch="per-gpu", timing=True)
    wall = time.monotonic() - started
    events = [event for event in result.timeline if event[0] >= args.warmup]
    (first_iter, first_t, first_data), (last_iter, last_t, last_data) = events[0], events[-1]
    seconds = last_t - first_t
    return {"bench": "scaling", "name": name, "gpus": count, "input": "dummy" if dummy else "data_layer",
            "reduce": reduce, "samples_per_s": result.plan.total * (last_iter - first_iter) / seconds,
            "batch_per_gpu": result.plan.batch_size, "iterations_timed": last_iter - first_iter,
            "seconds_timed": seconds, "data_wait_fraction": None if dummy else (last_data - first_data) / seconds,
            "run_seconds": wall}


def device_name(cpu: bool) -> str:
    if cpu:
        return "cpu"
    names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                           text=True, check=True).stdout.split("\n")
    return names[0].strip()


def markdown(records: list[dict], device: str, args) -> str:
    lines = [f"# Multi-GPU training (benchmarks/multigpu.py), {dt.date.today()}, {device}", ""]
    scaling = [r for r in records if r.get("bench") == "scaling" and "samples_per_s" in r]
    if scaling:
        lines += ["Every GPU runs the committed batch 32 per pass (iter_size 1); samples/s from rank 0's iteration "
                  f"times after {args.warmup} warm-up iterations ({args.iters} in all); constant fillers, no "
                  "test net. `data wait`: share of rank 0's time in its data layer's forward.", "",
                  "| net | input | all-reduce | GPUs | samples/s | scaling vs 1 GPU | data wait |",
                  "|---|---|---|---|---|---|---|"]
        for r in scaling:
            one = next((x for x in scaling if (x["name"], x["input"], x["gpus"]) == (r["name"], r["input"], 1)
                        and x.get("reduce") == r.get("reduce")), None)
            ratio = f"{r['samples_per_s'] / one['samples_per_s']:.2f}x" if one else "-"
            wait = "-" if r["data_wait_fraction"] is None else f"{100 * r['data_wait_fraction']:.0f}%"
            lines.append(f"| {r['name']} | {r['input']} | {r.get('reduce', 'layer-wise')} | {r['gpus']} | "
                         f"{r['samples_per_s']:.1f} | {ratio} | {wait} |")
        lines.append("")
    for r in records:
        if r.get("bench") == "agreement" and "loss_windows" in r:
            lines += [f"Agreement: tiny m-fuse conv5, total batch 32, {r['iterations']} iterations; rank 0's loss, "
                      f"means over {r['window']}-iteration windows.", "",
                      "| run | " + " | ".join(f"it {i * r['window']}-{(i + 1) * r['window'] - 1}"
                                              for i in range(len(r['loss_windows']['1gpu']))) + " |",
                      "|---|" + "---|" * len(r["loss_windows"]["1gpu"])]
            for name, curve in r["loss_windows"].items():
                lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in curve) + " |")
            lines += ["", f"RMS difference of the window means: 1 vs {r['gpus']} GPUs "
                          f"{r['rms_window_diff_1_vs_n']:.4f}; 1 GPU vs 1 GPU with another data seed "
                          f"{r['rms_window_diff_1_vs_1_seed2']:.4f} (the noise).",
                      f"Parameters of the {r['gpus']} ranks at the end: {r['parameters_compared']} values per rank, "
                      f"bit-identical: {r['ranks_bit_identical']}.", ""]
    for r in records:
        if "error" in r:
            lines.append(f"- FAILED {r.get('bench')} {r.get('name', '')} {r.get('gpus', '')}: {r['error']}")
    return "\n".join(lines) + "\n"


def main():
    args = parse_args()
    if args.prepare_data is not None:
        prepare_scaling_data(args.prepare_data)
        return
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    device = device_name(args.cpu)
    records = []

    def attempt(what: dict, step):
        try:
            record = step()
        except Exception as err:   # recorded; the other steps still run
            traceback.print_exc()
            record = {**what, "error": f"{type(err).__name__}: {err}"}
        record.update(device=device, date=str(dt.date.today()))
        records.append(record)
        print(json.dumps({k: v for k, v in record.items() if k != "loss_windows"}), flush=True)
        write_atomic(args.out / "multigpu.json", json.dumps(records, indent=1) + "\n")

    if "agreement" not in args.skip:
        attempt({"bench": "agreement", "name": "tiny_mfuse_conv5"}, lambda: agreement(args))
    if "scaling" not in args.skip:
        inputs = [dummy for dummy, skip in ((False, "data"), (True, "dummy")) if skip not in args.skip]
        for name in args.scaling_nets:
            for dummy in inputs:
                for count in (1, args.gpus):
                    attempt({"bench": "scaling", "name": name, "gpus": count, "input": "dummy" if dummy else
                             "data_layer"}, lambda: scaling_run(args, name, dummy, count))
    write_atomic(args.out / "multigpu.md", markdown(records, device, args))
    print((args.out / "multigpu.md").read_text())


if __name__ == "__main__":
    main()
