"""The VGG19 nets of ``benchmarks/nets/manifest.json`` written in PyTorch, timed as ``caffe_nets.py`` times Caffe.

Mirrors of the Caffe nets built by ``mfuse.nets`` (``prototxt/vgg19/``):

- ``spatial``: VGG19 convs (frozen) -> fc6 4096 -> fc7 4096 -> 101, ReLU + dropout 0.7 after fc6 and fc7;
- ``spatial_amp``: the same with conv5_4 multiplied by ``1 + area_resize(magnitude 224 -> 14)`` before relu5_4
  (FlowAmplify, offset 1, scale 1, AREA);
- ``temporal``: VGG19 on a 20-channel flow stack, every layer trained;
- ``mfuse_conv5``: two frozen VGG19 towers (3 and 20 channels) -> MultiplicativeFusion of the pool5 maps
  (K = 2048, activation NONE, bias 1: ``(W_a a + 1) * (W_b b + 1)``) -> cons_fc6 4096 -> cons_fc7 4096 -> 101;
- ``spatial_test25x10``: the spatial net in eval mode, forward only, 250 crops (one video) per pass.

Frozen layers have ``requires_grad=False`` and their inputs need no gradient, so autograd skips their backward
exactly as Caffe does. One timed iteration is forward + softmax loss + backward (``caffe time``'s
Forward-Backward; no solver update), medians of ``--reps`` after ``--warmup``, with CUDA events. Memory:
``mem_mb`` is ``torch.cuda.max_memory_allocated`` (the caching allocator's peak, from a reset before the
warm-up, cuDNN's workspaces included), ``mem_reserved_mb`` the most the allocator held, ``mem_device_mb`` the
device memory in use after the timed passes minus before the model was built (``torch.cuda.mem_get_info``,
after emptying the cache: the same measure as Caffe's ``layer_bench``).

Precisions (``--precisions``): ``fp32`` (TF32 off for matmuls and cuDNN convolutions: what Caffe computes),
``tf32`` (TF32 on for both), ``fp32_nocudnn`` (cuDNN disabled: PyTorch's own im2col + cuBLAS convolutions,
the same method as the fork without cuDNN; the spatial training net only). cuDNN autotuning
(``--benchmark``): each net and precision is timed with ``cudnn.benchmark`` off (cuDNN's heuristics) and on
(every algorithm timed once per shape), ``cudnn_benchmark`` in the record.

    python3 benchmarks/torch_nets.py --out results/nets_torch.jsonl [--reps 20] [--warmup 5] [--benchmark off,on]

Needs only torch (on the GPU machine); writes one JSON object per line.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

#: VGG19 (configuration E): (width, convs) per block, a 2 x 2 max pooling after each block.
VGG19_BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))
NUM_CLASSES = 101
DROPOUT = 0.7
FLOW_CHANNELS = 20
CROP = 224


class VGG19Tower(nn.Module):
    """conv1_1 .. pool5 of VGG19 (3 x 3 convs, pad 1, ReLU; 2 x 2 max pooling, ceil mode as Caffe).

    ``forward(x, gate=None)``: x N x C x 224 x 224 -> N x 512 x 7 x 7; a gate (N x 1 x 14 x 14) multiplies
    conv5_4 before its ReLU (FlowAmplify's place in the amplified spatial net).
    """

    def __init__(self, in_channels: int):
        super().__init__()
        self.convs = nn.ModuleList()
        self.block_ends = []
        channels = in_channels
        for width, depth in VGG19_BLOCKS:
            for _ in range(depth):
                self.convs.append(nn.Conv2d(channels, width, 3, padding=1))
                channels = width
            self.block_ends.append(len(self.convs) - 1)

    def forward(self, x, gate=None):
        last = len(self.convs) - 1
        for index, conv in enumerate(self.convs):
            x = conv(x)
            if index == last and gate is not None:
                x = x * gate
            x = F.relu(x, inplace=True)
            if index in self.block_ends:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
        return x


class Head(nn.Module):
    """fc6 -> ReLU -> dropout -> fc7 -> ReLU -> dropout -> classifier (flattening the input first)."""

    def __init__(self, in_features: int, widths=(4096, 4096), num_classes: int = NUM_CLASSES):
        super().__init__()
        layers = []
        for width in widths:
            layers += [nn.Linear(in_features, width), nn.ReLU(inplace=True), nn.Dropout(DROPOUT)]
            in_features = width
        layers.append(nn.Linear(in_features, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(torch.flatten(x, 1))


def freeze(module: nn.Module) -> nn.Module:
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


class StreamNet(nn.Module):
    """Spatial (3 channels, frozen convs), amplified spatial (``amplify``) or temporal (20 channels, trained)."""

    def __init__(self, in_channels: int, frozen_convs: bool, amplify: bool = False):
        super().__init__()
        self.tower = VGG19Tower(in_channels)
        if frozen_convs:
            freeze(self.tower)
        self.amplify = amplify
        self.head = Head(512 * 7 * 7)

    def forward(self, x, magnitude=None):
        gate = None
        if self.amplify:
            # AREA resize 224 -> 14 is the 16 x 16 box average; gate = offset 1 + scale 1 * resized magnitude.
            gate = 1.0 + F.adaptive_avg_pool2d(magnitude, (14, 14))
        return self.head(self.tower(x, gate))


class MFuseConv5(nn.Module):
    """Two frozen VGG19 towers, MultiplicativeFusion of pool5 (K = 2048, activation NONE, fixed bias 1), head."""

    def __init__(self, k: int = 2048):
        super().__init__()
        self.rgb = freeze(VGG19Tower(3))
        self.flow = freeze(VGG19Tower(FLOW_CHANNELS))
        self.project_rgb = nn.Conv2d(512, k, 1, bias=False)
        self.project_flow = nn.Conv2d(512, k, 1, bias=False)
        self.head = Head(k * 7 * 7)

    def forward(self, rgb, flow):
        fused = (self.project_rgb(self.rgb(rgb)) + 1.0) * (self.project_flow(self.flow(flow)) + 1.0)
        return self.head(fused)


def build(name: str):
    """(model, input shapes) of a benchmark name of the manifest (per sample, without the batch)."""
    if name in ("spatial", "spatial_test25x10"):
        return StreamNet(3, frozen_convs=True), [(3, CROP, CROP)]
    if name == "spatial_amp":
        return StreamNet(3, frozen_convs=True, amplify=True), [(3, CROP, CROP), (1, CROP, CROP)]
    if name == "temporal":
        return StreamNet(FLOW_CHANNELS, frozen_convs=False), [(FLOW_CHANNELS, CROP, CROP)]
    if name == "mfuse_conv5":
        return MFuseConv5(), [(3, CROP, CROP), (FLOW_CHANNELS, CROP, CROP)]
    raise ValueError(f"no PyTorch mirror of benchmark net {name!r}")


def set_precision(precision: str, benchmark: bool) -> dict:
    """Sets TF32 and cuDNN use for ``precision`` (fp32, tf32, fp32_nocudnn) and cuDNN autotuning; returns the
    settings in force."""
    tf32 = precision == "tf32"
    matmul, cudnn_conv = torch.backends.cuda.matmul, getattr(torch.backends.cudnn, "conv", None)
    if hasattr(matmul, "fp32_precision") and cudnn_conv is not None and hasattr(cudnn_conv, "fp32_precision"):
        matmul.fp32_precision = "tf32" if tf32 else "ieee"
        cudnn_conv.fp32_precision = "tf32" if tf32 else "ieee"
        settings = {"matmul_fp32_precision": matmul.fp32_precision,
                    "cudnn_conv_fp32_precision": cudnn_conv.fp32_precision}
    else:  # before the fp32_precision API (torch < 2.9)
        matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        settings = {"matmul_allow_tf32": matmul.allow_tf32, "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32}
    torch.backends.cudnn.enabled = precision != "fp32_nocudnn"
    torch.backends.cudnn.benchmark = benchmark
    settings["cudnn_enabled"] = torch.backends.cudnn.enabled
    settings["cudnn_benchmark"] = torch.backends.cudnn.benchmark
    return settings


def median(values):
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])


def time_net(bench: dict, precision: str, benchmark: bool, reps: int, warmup: int, device) -> dict:
    """Times one manifest entry at one precision and autotuning setting; returns its record."""
    settings = set_precision(precision, benchmark)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    device_before = torch.cuda.mem_get_info(device)[0]
    torch.manual_seed(1)
    model, shapes = build(bench["name"])
    model = model.to(device)
    batch = bench["batch"]
    inputs = [torch.randn(batch, *shape, device=device) for shape in shapes]
    if bench["name"] == "spatial_amp":
        inputs[1] = torch.rand(batch, *shapes[1], device=device) * 20  # magnitudes in pixels
    labels = torch.randint(0, NUM_CLASSES, (batch,), device=device)
    forward_only = bench["forward_only"]
    model.train(bench["phase"] == "TRAIN")
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    start, middle, end = (torch.cuda.Event(enable_timing=True) for _ in range(3))
    forward_ms, backward_ms, total_ms = [], [], []
    for rep in range(warmup + reps):
        for parameter in model.parameters():
            parameter.grad = None
        start.record()
        if forward_only:
            with torch.no_grad():
                F.softmax(model(*inputs), dim=1)
            middle.record()
        else:
            loss = F.cross_entropy(model(*inputs), labels)
            middle.record()
            loss.backward()
        end.record()
        end.synchronize()
        if rep >= warmup:
            forward_ms.append(start.elapsed_time(middle))
            backward_ms.append(middle.elapsed_time(end))
            total_ms.append(start.elapsed_time(end))
    total = median(total_ms)
    torch.cuda.synchronize()
    device_used = device_before - torch.cuda.mem_get_info(device)[0]
    record = {"bench": "net", "framework": "torch", "mode": "gpu", "name": bench["name"], "precision": precision,
              "phase": bench["phase"], "batch": batch, "iter_size": bench["iter_size"], "unit": bench["unit"],
              "forward_only": forward_only, "fwd_ms": median(forward_ms), "bwd_ms": median(backward_ms),
              "total_ms": total, "total_min_ms": min(total_ms), "total_max_ms": max(total_ms), "reps": reps,
              "mem_mb": torch.cuda.max_memory_allocated() / 2 ** 20,
              "mem_reserved_mb": torch.cuda.max_memory_reserved() / 2 ** 20, "mem_device_mb": device_used / 2 ** 20,
              "samples_per_s": batch / (total * 1e-3)}
    record.update(settings)
    del model, inputs, labels
    torch.cuda.empty_cache()
    return record


def environment() -> dict:
    props = torch.cuda.get_device_properties(0)
    return {"bench": "torch_env", "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "device": props.name,
            "python": sys.version.split()[0]}


def table_row(record: dict) -> str:
    label = f"{record['precision']}{' bench' if record.get('cudnn_benchmark') else ''}"
    if record["bench"] == "error":
        return f"torch   {record['name']:<18} {label:<18} ERROR {record['error']}"
    return (f"torch   {record['name']:<18} {label:<18} batch {record['batch']:4d} "
            f"fwd {record['fwd_ms']:8.2f}  bwd {record['bwd_ms']:8.2f}  total {record['total_ms']:8.2f} ms  "
            f"{record['samples_per_s']:8.1f} samples/s  mem {record['mem_mb']:8.0f} MiB")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", default=str(Path(__file__).resolve().parent / "nets" / "manifest.json"))
    parser.add_argument("--out", required=True, help="JSON lines file to append to")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--precisions", default="fp32,tf32,fp32_nocudnn",
                        help="comma-separated: fp32, tf32, fp32_nocudnn (the last for the spatial net only)")
    parser.add_argument("--only", help="comma-separated benchmark names of the manifest (default: all)")
    parser.add_argument("--benchmark", default="off,on",
                        help="comma-separated cudnn.benchmark settings to time: off, on (fp32_nocudnn: off only)")
    args = parser.parse_args()
    settings = args.benchmark.split(",")
    if not settings or any(setting not in ("off", "on") for setting in settings):
        parser.error(f"--benchmark takes off and/or on, got {args.benchmark!r}")
    args.benchmark = [setting == "on" for setting in settings]
    return args


def main():
    args = parse_args()
    if not torch.cuda.is_available():
        sys.exit("torch_nets: no CUDA device")
    device = torch.device("cuda", 0)
    benches = json.loads(Path(args.manifest).read_text())["nets"]
    if args.only:
        wanted = set(args.only.split(","))
        benches = [bench for bench in benches if bench["name"] in wanted]
    precisions = args.precisions.split(",")
    with open(args.out, "a") as out:
        env = environment()
        out.write(json.dumps(env) + "\n")
        print(f"torch   {env['torch']} CUDA {env['cuda']} cuDNN {env['cudnn']} on {env['device']}", flush=True)
        for precision in precisions:
            for bench in benches:
                if precision == "fp32_nocudnn" and bench["name"] != "spatial":
                    continue
                for benchmark in ([False] if precision == "fp32_nocudnn" else args.benchmark):
                    began = time.time()
                    try:
                        record = time_net(bench, precision, benchmark, args.reps, args.warmup, device)
                    except Exception as error:  # one failing net must not cost the others' numbers
                        traceback.print_exc()
                        record = {"bench": "error", "framework": "torch", "name": bench["name"],
                                  "precision": precision, "cudnn_benchmark": benchmark,
                                  "error": f"{type(error).__name__}: {error}"[:500]}
                        torch.cuda.empty_cache()
                    record["wall_s"] = round(time.time() - began, 1)
                    out.write(json.dumps(record) + "\n")
                    out.flush()
                    print(table_row(record), flush=True)


if __name__ == "__main__":
    main()
