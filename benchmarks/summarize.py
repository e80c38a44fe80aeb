"""Summarises the JSON lines of a benchmark run (``run_gpu.sh`` or ``run_cpu.sh``) into Markdown tables.

    python3 benchmarks/summarize.py RUN_DIR [--markdown FILE]        # print (and write) the summary
    python3 benchmarks/summarize.py RUN_DIR --write benchmarks/results
        # also writes benchmarks/results/<date>-<device>.md and .json (every record of the run, merged)

RUN_DIR holds ``env.json`` and any of ``layers_gpu.jsonl``, ``layers_cpu.jsonl``, ``nets_caffe.jsonl``,
``nets_torch.jsonl``, ``memcheck.jsonl``. Every ratio compares numbers of the same run. Stdlib only.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

#: The issues' goals (9, then 18).
FLOOR_GOAL = 1.2          # layer fwd+bwd time <= 1.2 x the ideal GEMM floor
SPEEDUP_GOAL = 2.0        # composition time / layer time >= 2
MEMORY_GOAL = 0.5         # layer memory (internal) <= 0.5 x the composition's
#: FlowAmplify GB/s as a share of a device-to-device copy's, by what the backward pass reaches.
BANDWIDTH_GOALS = {"feat_only": 0.75, "feat_and_source": 0.60}
#: The 25 x 10 test protocol: crops per video.
CROPS_PER_VIDEO = 250


def load_records(run_dir: Path):
    """Every JSON record of the run's ``*.json`` / ``*.jsonl`` files, in file-name order."""
    records = []
    for path in sorted(run_dir.glob("*.json")) + sorted(run_dir.glob("*.jsonl")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise SystemExit(f"summarize: {path}:{number}: not JSON ({error})")
    return records


def pick(records, **fields):
    return [r for r in records if all(r.get(key) == value for key, value in fields.items())]


def one(records, **fields):
    found = pick(records, **fields)
    return found[0] if found else None


def fmt(value, digits=2, suffix=""):
    if value is None:
        return "–"
    return f"{value:.{digits}f}{suffix}"


def ratio(numerator, denominator):
    if numerator is None or denominator in (None, 0):
        return None
    return numerator / denominator


def mark(value, goal, at_least):
    if value is None:
        return ""
    return " ✓" if (value >= goal if at_least else value <= goal) else " ✗"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def get(record, key):
    return record.get(key) if record else None


def environment_section(records):
    env = one(records, bench="env") or {}
    device = one(records, bench="device") or {}
    lines = ["## Environment"]
    if env.get("date"):
        lines.append(f"- date: {env['date']}")
    if device:
        lines.append(f"- device: {device['name']} (sm_{device['compute_capability'].replace('.', '')}, "
                     f"{device['sm_count']} SMs, {device['memory_gib']:.1f} GiB); CUDA driver API "
                     f"{device['cuda_driver_api']}, runtime {device['cuda_runtime']}, cuBLAS {device['cublas']}")
    if env.get("nvidia_smi"):
        lines.append(f"- nvidia-smi: {env['nvidia_smi']} (driver's CUDA {env.get('driver_cuda_version', '?')})")
    if env.get("torch"):
        lines.append(f"- PyTorch {env['torch']} (CUDA {env.get('torch_cuda')}, cuDNN {env.get('cudnn')})")
    if env.get("cpu"):
        threads = f", {env['threads']} used" if env.get("threads") else ""
        lines.append(f"- CPU: {env['cpu'].strip()} ({env.get('nproc', '?')} cores{threads})")
    if env.get("note"):
        lines.append(f"- {env['note']}")
    builds = {r.get("build", "cuda") for r in pick(records, framework="caffe") if r.get("mode") != "cpu"}
    if device and "cuda" in builds:
        lines.append("- Caffe without cuDNN: convolutions are im2col + cuBLAS SGEMM.")
    if "cudnn" in builds:
        context = next((r["cudnn_context"] for r in pick(records, bench="caffe_time") if r.get("cudnn_context")), None)
        lines.append("- Caffe with cuDNN: the fork's cuDNN layers (patches 0009–0016)" +
                     (f"; its log: \"{context}\"" if context else "") + ".")
    return "\n".join(lines)


def fusion_section(records, mode):
    fusion = pick(records, bench="fusion", mode=mode)
    if not fusion:
        return ""
    rows = []
    for shape in dict.fromkeys(r["shape"] for r in fusion):
        ideal = one(records, bench="gemm_floor", mode=mode, shape=shape, variant="ideal")
        calls = one(records, bench="gemm_floor", mode=mode, shape=shape, variant="layer_calls")
        for activation in ("RELU", "NONE"):
            layer = one(fusion, shape=shape, activation=activation, variant="layer")
            comp = one(fusion, shape=shape, activation=activation, variant="composition")
            if not layer:
                continue
            size = f"{shape} N={layer['n']} {'+'.join(map(str, layer['c']))}→{layer['k']} {layer['h']}×{layer['w']}"
            over_floor = ratio(get(layer, "total_ms"), get(ideal, "total_ms"))
            speedup = ratio(get(comp, "total_ms"), get(layer, "total_ms"))
            memory = ratio(get(layer, "mem_mb"), get(comp, "mem_mb"))
            internal = ratio(get(layer, "mem_internal_mb"), get(comp, "mem_internal_mb"))
            buffers = ratio(get(layer, "mem_buffers_mb"), get(comp, "mem_buffers_mb"))
            rows.append([size, activation, fmt(layer["total_ms"], 3), fmt(get(comp, "total_ms"), 3),
                         fmt(get(ideal, "total_ms"), 3), fmt(get(calls, "total_ms"), 3),
                         fmt(layer["tflops"], 2) + " / " + fmt(get(ideal, "tflops"), 2),
                         fmt(over_floor, 3) + "×" + mark(over_floor, FLOOR_GOAL, False),
                         fmt(speedup) + "×" + mark(speedup, SPEEDUP_GOAL, True),
                         f"{fmt(layer['mem_mb'], 0)} / {fmt(get(comp, 'mem_mb'), 0)}",
                         f"{fmt(memory)}× ({fmt(internal)}×" + mark(internal, MEMORY_GOAL, False)
                         + (f"; {fmt(buffers)}×)" if buffers is not None else ")")])
    header = ["shape", "act", "layer ms", "composition ms", "floor ms", "floor (layer's calls) ms",
              "TFLOP/s layer / floor", f"layer / floor (≤ {FLOOR_GOAL})", f"speed-up (≥ {SPEEDUP_GOAL:g})",
              "MiB layer / comp.", f"memory ratio: all (internal ≤ {MEMORY_GOAL:g}; buffers)"]
    title = "GPU" if mode == "gpu" else "CPU"
    note = "" if mode == "gpu" else " The goals are the GPU's (issues 9, 18), marked here for reference."
    text = [f"## MultiplicativeFusion ({title}): forward + backward",
            table(header, rows), "",
            "Times: medians of forward + backward (ms). Floor: the bare GEMMs of the layer (per stream Z = W X, "
            "dW = dZ Xᵀ, dX = Wᵀ dZ) as single GEMMs over all N·H·W columns; \"layer's calls\": the GEMMs "
            "as the layer issues them on NCHW data, with its reorders of X and dX (N×C×HW ↔ C×N×HW). "
            "Memory: what the net allocated (inputs, weights, top and every buffer, data + diff); internal: "
            "without the inputs and the top (as allocated), which both variants hold alike; buffers: without "
            "the weights (data + diff) too, which both hold alike as well. Composition: 2× 1×1 "
            "Convolution (InnerProduct for fc7) with constant bias 1 (lr_mult 0) + 2× ReLU (RELU only) + "
            "Eltwise PROD." + note]
    return "\n".join(text)


def amplify_section(records, mode):
    amplify = pick(records, bench="flow_amplify", mode=mode)
    if not amplify:
        skipped = one(records, bench="skipped", what="FlowAmplify", mode=mode)
        return f"## FlowAmplify ({mode.upper()})\nSkipped: {skipped['why']}." if skipped else ""
    rows = []
    for record in amplify:
        copy = one(records, bench="memcpy", mode=mode, variant=f"amplify_{record['variant']}")
        share = ratio(record["gbps"], get(copy, "gbps"))
        goal = BANDWIDTH_GOALS.get(record["variant"])
        rows.append([f"N={record['n']} {record['c']}×{record['h']}×{record['w']}, source "
                     f"{record['src_h']}×{record['src_w']}", record["variant"], fmt(record["fwd_ms"], 3),
                     fmt(record["bwd_ms"], 3), fmt(record["total_ms"], 3), fmt(record["bytes"] / 1e6, 1),
                     fmt(record["gbps"], 0), fmt(get(copy, "gbps"), 0),
                     (fmt(100 * share, 0) + " %" + (f" (≥ {100 * goal:.0f} %)" + mark(share, goal, True)
                                                    if goal else "")) if share else "–"])
    header = ["shape", "backward to", "fwd ms", "bwd ms", "total ms", "MB moved", "GB/s", "memcpy GB/s",
              "of memcpy (goal)"]
    return "\n".join([f"## FlowAmplify ({mode.upper()}): forward + backward", table(header, rows), "",
                      "MB moved: the least an implementation must read and write (fp32): forward x, source, y; "
                      "backward dy, dx (and x, d source when the source gets a gradient). memcpy: a copy of half "
                      "those bytes (it reads and writes each byte once): cudaMemcpy device-to-device on the GPU, "
                      "memcpy on the CPU."])


def parity_section(records):
    parity = pick(records, bench="parity")
    if not parity:
        return ""
    rows = [[r["layer"], r["shape"], r.get("activation", "–"), r["n"], f"{r['top_rel']:.1e}",
             f"{r['bottom_diff_rel']:.1e}", f"{r['weight_diff_rel']:.1e}" if "weight_diff_rel" in r else "–"]
            for r in parity]
    return "\n".join(["## CPU/GPU parity (same layer, inputs and top diff in both modes)",
                      table(["layer", "shape", "act", "N", "top", "bottom diffs", "weight diffs"], rows), "",
                      "max |GPU − CPU| / max |CPU| per blob (the largest over the blobs of each kind)."])


#: The Caffe configurations of a run, in table order: (build, config) -> column name.
CAFFE_CONFIGS = {("cuda", "fp32"): "no cuDNN", ("cudnn", "fp32"): "cuDNN find", ("cudnn", "fp32_heuristic"): "heuristic",
                 ("cudnn", "fp32_streams2"): "2 streams", ("cudnn", "tf32"): "cuDNN TF32 find",
                 ("cudnn", "tf32_heuristic"): "TF32 heuristic"}
#: The issue's whole-net goals (issue 19): Caffe / PyTorch time and memory.
FP32_GOAL = 1.1
TF32_GOAL = 1.15
NET_MEMORY_GOAL = 1.2


def caffe_net(records, name, build, config):
    """Caffe's layer_bench record of a net in one configuration (records without ``config``: fp32, no cuDNN)."""
    for r in pick(records, bench="net", framework="caffe", name=name):
        if (r.get("build", "cuda"), r.get("config", "fp32")) == (build, config):
            return r
    return None


def torch_nets(records, name, precision):
    """PyTorch's records of a net at a precision: {cudnn.benchmark: record} (records without the field: on)."""
    return {r.get("cudnn_benchmark", True): r
            for r in pick(records, bench="net", framework="torch", name=name, precision=precision)}


def fastest(runs):
    timed = [r for r in runs.values() if r.get("total_ms") is not None]
    return min(timed, key=lambda r: r["total_ms"]) if timed else None


def pair(runs, key="total_ms", digits=2):
    """``off / on`` of a value over PyTorch's cudnn.benchmark settings."""
    return " / ".join(fmt(get(runs.get(setting), key), digits) for setting in (False, True))


def nets_section(records):
    caffe = pick(records, bench="net", framework="caffe")
    torch = pick(records, bench="net", framework="torch")
    if not caffe and not torch:
        return ""
    names = list(dict.fromkeys([r["name"] for r in caffe + torch]))
    configs = [key for key in CAFFE_CONFIGS if any(caffe_net(records, n, *key) for n in names)]
    fp32_key = ("cudnn", "fp32") if ("cudnn", "fp32") in configs else ("cuda", "fp32")
    train_rows, test_rows = [], []
    for name in names:
        runs = {key: caffe_net(records, name, *key) for key in configs}
        t32, ttf = torch_nets(records, name, "fp32"), torch_nets(records, name, "tf32")
        tnc = torch_nets(records, name, "fp32_nocudnn")
        best32, besttf = fastest(t32), fastest(ttf)
        c32, ctf = runs.get(fp32_key), runs.get(("cudnn", "tf32"))
        any_record = next((r for r in list(runs.values()) + list(t32.values()) if r), None)
        if any_record is None:
            continue
        fp32_ratio = ratio(get(c32, "total_ms"), get(best32, "total_ms"))
        tf32_ratio = ratio(get(ctf, "total_ms"), get(besttf, "total_ms"))
        torch_memory = min((r["mem_mb"] for r in t32.values() if r.get("mem_mb")), default=None)
        memory_ratio = ratio(get(c32, "mem_mb"), torch_memory)
        if any_record.get("unit") == "videos" or any_record.get("forward_only"):
            videos = any_record["batch"] / CROPS_PER_VIDEO  # per pass
            per_s = lambda r: videos / (r["total_ms"] * 1e-3) if r else None  # noqa: E731
            test_rows.append([name, any_record["batch"]] + [fmt(per_s(runs[key])) for key in configs] +
                             [" / ".join(fmt(per_s(t32.get(b))) for b in (False, True)),
                              " / ".join(fmt(per_s(ttf.get(b))) for b in (False, True)),
                              fmt(ratio(per_s(best32), per_s(c32))) + "×",
                              f"{fmt(get(c32, 'mem_mb'), 0)} / {fmt(torch_memory, 0)}"])
            continue
        train_rows.append([name, f"{any_record['batch']} × {any_record.get('iter_size', 1)}"] +
                          [fmt(get(runs[key], "total_ms")) for key in configs] +
                          [pair(t32), fmt(fp32_ratio) + "×" + mark(fp32_ratio, FP32_GOAL, False),
                           pair(ttf), fmt(tf32_ratio) + "×" + mark(tf32_ratio, TF32_GOAL, False),
                           fmt(get(fastest(tnc), "total_ms")),
                           f"{fmt(get(c32, 'mem_mb'), 0)} / {fmt(torch_memory, 0)}",
                           fmt(memory_ratio) + "×" + mark(memory_ratio, NET_MEMORY_GOAL, False)])
    columns = [f"Caffe {CAFFE_CONFIGS[key]} ms" for key in configs]
    main = CAFFE_CONFIGS[fp32_key]
    text = ["## Whole nets (VGG19; CNN-M-2048 in Caffe only): Caffe fork vs PyTorch, same run"]
    if train_rows:
        text += [table(["net", "batch × iter_size"] + columns +
                       ["PyTorch fp32 ms (benchmark off / on)", f"Caffe {main} / PyTorch fp32 (≤ {FP32_GOAL})",
                        "PyTorch TF32 ms (off / on)", f"Caffe TF32 / PyTorch TF32 (≤ {TF32_GOAL})",
                        "PyTorch fp32 no cuDNN ms", f"MiB Caffe {main} / PyTorch fp32",
                        f"memory ratio (≤ {NET_MEMORY_GOAL})"], train_rows), "",
                 "Medians of forward + loss + backward per pass of `batch` samples (no solver update; frozen layers "
                 "do no backward on either side); per paper batch multiply by iter_size. Caffe: `layer_bench --net`; "
                 "fp32 is strict FP32 on both sides (TF32 off for convolutions and GEMMs). PyTorch is timed with "
                 "`cudnn.benchmark` off and on; the ratios take the faster. Memory: Caffe, the device memory the net "
                 "allocated (cuDNN's shared workspace included); PyTorch, the caching allocator's peak, the smaller "
                 "of the two benchmark settings."]
    if test_rows:
        text += ["", "### 25 × 10 test protocol (250 crops per video, forward only): videos/s",
                 table(["net", "crops per pass"] + [f"Caffe {CAFFE_CONFIGS[key]}" for key in configs] +
                       ["PyTorch fp32 (off / on)", "PyTorch TF32 (off / on)", f"PyTorch fp32 / Caffe {main}",
                        f"MiB Caffe {main} / PyTorch fp32"], test_rows)]
    errors = [r for r in records if r.get("bench") == "error"]
    if errors:
        text += ["", "Errors:"] + [f"- {r.get('framework')} {r.get('config', '')} "
                                   f"{r.get('tool', r.get('precision', ''))} {r['name']}: "
                                   f"{r['error'].splitlines()[0][:300] if r['error'] else ''}" for r in errors]
    return "\n".join(text)


def variants_section(records):
    variants = pick(records, bench="fusion_gemm_variant")
    if not variants:
        return ""
    rows = [[r["shape"], r["pass"], r["variant"], fmt(r["ms"], 4), fmt(r["tflops"], 2), fmt(r["of_floor"], 2) + "×"]
            for r in variants]
    swaps = pick(records, bench="fusion_swap")
    notes = "; ".join(f"{r['shape']}: {fmt(r['ms'], 4)} ms ({fmt(r['gbps'], 0)} GB/s)" for r in swaps)
    tf32 = "TF32" if variants[0].get("tf32") else "strict FP32"
    return "\n".join([f"## MultiplicativeFusion: the ways to issue its GEMMs (one stream, {tf32})",
                      table(["shape", "pass", "variant", "ms", "TFLOP/s", "of the single GEMM"], rows), "",
                      "`benchmarks/fusion_gemm_variants.cu`, medians of 20 after 5 warm-up. single: one GEMM over "
                      "all N·H·W columns with X already C×(N·H·W) (the floor); swap: the layer's reorder of X "
                      "(N×C×HW → C×N×HW) or of dX back, included; batched: cublasSgemmStridedBatched over the N "
                      "images; parts + sum: N partial dW then their sum (N×K×C floats of scratch); cuBLASLt best: "
                      "the fastest of the heuristic's algorithms for the single GEMM. The reorder alone: "
                      + (notes or "–") + "."])


def gtest_section(records):
    runs = [r for r in pick(records, bench="gtest") if "tests_passed" in r]  # run_layer_checks' records
    return "\n".join(["## gtests of the layers (CPU and GPU, float and double)"]
                     + [f"- `{r['filter']}`: {r['tests_passed']} passed, {r['tests_failed']} failed, exit "
                        f"{r['exit_code']}" for r in runs]) if runs else ""


def before_after_section(before, after):
    """Layer times of an earlier build (``--before``) against this run's, both measured in this run."""
    rows = []
    for record in pick(after, bench="fusion", variant="layer"):
        old = one(before, bench="fusion", variant="layer", mode=record["mode"], shape=record["shape"],
                  activation=record["activation"])
        rows.append([f"MultiplicativeFusion {record['shape']} {record['activation']} ({record['mode']})",
                     fmt(get(old, "total_ms"), 3), fmt(record["total_ms"], 3),
                     fmt(ratio(get(old, "total_ms"), record["total_ms"])) + "×",
                     f"{fmt(get(old, 'mem_mb'), 0)} / {fmt(record['mem_mb'], 0)}"])
    for record in pick(after, bench="flow_amplify"):
        old = one(before, bench="flow_amplify", mode=record["mode"], variant=record["variant"])
        rows.append([f"FlowAmplify {record['variant']} ({record['mode']})", fmt(get(old, "total_ms"), 3),
                     fmt(record["total_ms"], 3), fmt(ratio(get(old, "total_ms"), record["total_ms"])) + "×", "–"])
    if not rows:
        return ""
    return "\n".join(["## Before / after (an earlier build's layer_bench, the records of --before)",
                      table(["layer", "before ms", "after ms", "speed-up", "MiB before / after"], rows), "",
                      "Forward + backward medians; memory: all the net allocated. run_gpu.sh (BEFORE=) runs both "
                      "builds in one call; a separate run of the earlier build is only as comparable as the two "
                      "machines' states were."])


#: caffe time's layer names -> kinds, by prefix.
LAYER_KINDS = (("conv", "Convolution"), ("relu", "ReLU"), ("pool", "Pooling"), ("fc", "InnerProduct"),
               ("cons_fc", "InnerProduct"), ("drop", "Dropout"), ("norm", "LRN"), ("mfuse", "MultiplicativeFusion"),
               ("flow_amplify", "FlowAmplify"), ("rgb_conv", "Convolution"), ("flow_conv", "Convolution"),
               ("rgb_relu", "ReLU"), ("flow_relu", "ReLU"), ("rgb_pool", "Pooling"), ("flow_pool", "Pooling"),
               ("rgb_norm", "LRN"), ("flow_norm", "LRN"))


def layer_kind(name):
    for prefix, kind in LAYER_KINDS:
        if name.startswith(prefix):
            return kind
    return "other"


def layers_section(records):
    """Per-layer-kind sums of ``caffe time``'s per-layer means (forward / backward ms), per Caffe config."""
    timed = [r for r in pick(records, bench="caffe_time") if r.get("layers")]
    if not timed:
        return ""
    kinds = [kind for _, kind in LAYER_KINDS] + ["other"]
    kinds = list(dict.fromkeys(kinds))
    rows = []
    for r in timed:
        sums = {}
        for name, (forward, backward) in r["layers"].items():
            total = sums.setdefault(layer_kind(name), [0.0, 0.0])
            total[0] += forward or 0.0
            total[1] += backward or 0.0
        rows.append([r["name"], f"{r.get('build', 'cuda')} {r.get('config', 'fp32')}"] +
                    [f"{fmt(sums[k][0])} / {fmt(sums[k][1])}" if k in sums else "–" for k in kinds] +
                    [fmt(r["total_ms"])])
    used = [i for i, k in enumerate(kinds) if any(row[2 + i] != "–" for row in rows)]
    header = ["net", "config"] + [kinds[i] + " fwd / bwd" for i in used] + ["caffe time total ms"]
    rows = [row[:2] + [row[2 + i] for i in used] + [row[-1]] for row in rows]
    return "\n".join(["## Where the time goes: `caffe time` per layer kind (ms per pass, means)", table(header, rows),
                      "", "Sums of `caffe time`'s per-layer means by layer name (conv*, relu*, pool*, fc*, drop*, ...); "
                      "`caffe time` synchronises after every layer, so its total is above layer_bench's median."])


CHOICE_LINE = re.compile(r"cuDNN convolution '([^']+)' .*? (forward|backward-filter|backward-data): (\S+) \((.*)\)$")


def choices_section(records):
    """The algorithms the cuDNN build chose per layer, from ``caffe time``'s log lines (strict FP32 and TF32)."""
    lines = []
    for r in pick(records, bench="caffe_time"):
        if not r.get("cudnn_choices") or r.get("name") != "temporal":
            continue
        chosen = {}
        for line in r["cudnn_choices"]:
            match = CHOICE_LINE.search(line)
            if match:
                layer, direction, algo, why = match.groups()
                ms = re.search(r": ([0-9.eE+-]+) ms", why)
                workspace = re.search(r"workspace ([0-9.]+ MiB)", why)
                cell = algo + (f" {float(ms.group(1)):.2f} ms" if ms else "") + \
                    (f", {workspace.group(1)}" if workspace else "")
                chosen.setdefault(layer, {})[direction] = cell
        rows = [[layer, d.get("forward", "–"), d.get("backward-filter", "–"), d.get("backward-data", "–")]
                for layer, d in chosen.items()]
        if rows:
            lines += [f"### temporal, {r.get('config')}", table(["layer", "forward", "backward-filter",
                                                                  "backward-data"], rows), ""]
    if not lines:
        return ""
    return "\n".join(["## cuDNN's choices (temporal net, from the log; find's measured time, workspace)", ""] +
                     lines).rstrip()


def accuracy_section(records):
    accuracy = pick(records, bench="accuracy")
    if not accuracy:
        return ""
    rows = [[r["name"], r["run"], r["blob"], r["kind"], "×".join(map(str, r["shape"])),
             "–" if r["max_rel"] is None else f"{r['max_rel']:.1e}",
             "–" if r["norm_rel"] is None else f"{r['norm_rel']:.1e}"] for r in accuracy]
    return "\n".join(["## Accuracy against strict FP32 (same inputs, weights and dropout masks)",
                      table(["net", "run", "blob", "kind", "shape", "max abs(x − ref) / max abs(ref)",
                             "‖x − ref‖ / ‖ref‖"], rows), "",
                      "ref: strict FP32, `MFUSE_CUDNN_ALGO=find`. fp32_repeat: the same settings again; "
                      "fp32_heuristic: other algorithms, same math; tf32: `MFUSE_TF32=1`. data: the blob's values "
                      "after the forward pass; param_diff: the layer's weight gradient after the backward pass."])


def checks_section(records):
    """gtest runs and bad-input checks written by the run script."""
    gtests = [r for r in pick(records, bench="gtest") if "passed" in r]  # run_gtests' records
    bad = pick(records, bench="bad_input")
    lines = []
    if gtests:
        lines += ["## gtests on the GPU"] + [
            f"- `{r['label']}` ({r.get('env') or 'defaults'}): {r['passed']} passed, {r['failed']} failed, "
            f"{fmt(r.get('seconds'), 0)} s, exit {r['exit_code']}; filter `{r['filter']}`" for r in gtests]
    if bad:
        lines += ["", "## Bad settings (each must stop with one line naming the setting and what it allows)"] + [
            f"- `{r['setting']}`: exit {r['exit_code']}, {r['lines']} line(s): `{r['message']}`" for r in bad]
    return "\n".join(lines).strip()


def memcheck_section(records):
    memcheck = pick(records, bench="memcheck")
    if not memcheck:
        return ""
    lines = ["## compute-sanitizer memcheck (GPU tests of both layers)"]
    for r in memcheck:
        if "skipped" in r:
            lines.append(f"- skipped: {r['skipped']}")
        else:
            verdict = "clean" if r.get("errors") == 0 and r.get("exit_code") == 0 else "NOT clean"
            lines.append(f"- `{r['suite']}.*`: {r['tests_passed']} passed, {r['tests_failed']} failed, "
                         f"{r['errors']} sanitizer errors, exit {r['exit_code']}: {verdict}")
    return "\n".join(lines)


def summary(records, before=None) -> str:
    sections = [environment_section(records), fusion_section(records, "gpu"), amplify_section(records, "gpu"),
                before_after_section(before, records) if before else "", variants_section(records),
                parity_section(records), gtest_section(records), nets_section(records), layers_section(records),
                choices_section(records), accuracy_section(records), checks_section(records),
                memcheck_section(records),
                fusion_section(records, "cpu"), amplify_section(records, "cpu")]
    return "# mfuse benchmarks\n\n" + "\n\n".join(section for section in sections if section) + "\n"


def run_name(records) -> str:
    """``<date>-<device>`` of a run: the env record's date and the GPU's (or the CPU's) name."""
    env = one(records, bench="env") or {}
    date = (env.get("date") or "undated")[:10]
    device = one(records, bench="device")
    name = device["name"] if device else ("cpu-" + env.get("cpu", "unknown").strip())
    return f"{date}-{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}"


def write_atomic(path: Path, text: str) -> None:
    """``mfuse.fileio.write_atomic`` for text: this script runs with a bare ``python3`` (no mfuse installed) on
    the GPU machine (benchmarks/run_gpu.sh), so it keeps its own copy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(text)
    os.replace(tmp.name, path)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="folder with the run's env.json and *.jsonl")
    parser.add_argument("--markdown", type=Path, help="also write the summary to this file")
    parser.add_argument("--write", type=Path, metavar="RESULTS_DIR",
                        help="write <date>-<device>.md and .json (all records) into this folder")
    parser.add_argument("--before", type=Path, metavar="BEFORE_DIR",
                        help="records of an earlier build measured in the same run: adds a before/after table")
    return parser.parse_args()


def main():
    args = parse_args()
    if not args.run_dir.is_dir():
        sys.exit(f"summarize: {args.run_dir} is not a folder")
    records = load_records(args.run_dir)
    if not records:
        sys.exit(f"summarize: no records in {args.run_dir}")
    before = None
    if args.before:
        before = load_records(args.before)
        if not before:
            sys.exit(f"summarize: no records in {args.before}")
    text = summary(records, before)
    print(text)
    if args.markdown:
        write_atomic(args.markdown, text)
    if args.write:
        name = run_name(records)
        write_atomic(args.write / f"{name}.md", text)
        everything = {"records": records}
        if before:
            everything["before"] = before
        write_atomic(args.write / f"{name}.json", json.dumps(everything, indent=1) + "\n")
        print(f"summarize: wrote {args.write / name}.md and .json", file=sys.stderr)


if __name__ == "__main__":
    main()
