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
    if device:
        lines.append("- Caffe: the fork built without cuDNN (convolutions are im2col + cuBLAS SGEMM), fp32.")
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


def nets_section(records):
    caffe = pick(records, bench="net", framework="caffe")
    torch = pick(records, bench="net", framework="torch")
    if not caffe and not torch:
        return ""
    names = list(dict.fromkeys([r["name"] for r in caffe + torch]))
    train_rows, test_rows = [], []
    for name in names:
        c = one(caffe, name=name)
        t32 = one(torch, name=name, precision="fp32")
        ttf = one(torch, name=name, precision="tf32")
        tnc = one(torch, name=name, precision="fp32_nocudnn")
        ct = one(records, bench="caffe_time", name=name)
        any_record = c or t32 or ttf or tnc
        if any_record.get("unit") == "videos" or any_record.get("forward_only"):
            videos = any_record["batch"] / CROPS_PER_VIDEO  # per pass
            per_s = lambda r: videos / (r["total_ms"] * 1e-3) if r else None  # noqa: E731
            test_rows.append([name, any_record["batch"], fmt(get(c, "total_ms")), fmt(per_s(c)), fmt(per_s(t32)),
                              fmt(per_s(ttf)), fmt(ratio(per_s(t32), per_s(c))) + "×",
                              f"{fmt(get(c, 'mem_mb'), 0)} / {fmt(get(t32, 'mem_mb'), 0)}"])
            continue
        iter_size = any_record.get("iter_size", 1)
        paper = lambda r: get(r, "total_ms") * iter_size if get(r, "total_ms") is not None else None  # noqa: E731
        train_rows.append([name, f"{any_record['batch']} × {iter_size}",
                           f"{fmt(get(c, 'fwd_ms'))} + {fmt(get(c, 'bwd_ms'))} = {fmt(get(c, 'total_ms'))}",
                           fmt(get(ct, "total_ms")), fmt(paper(c), 0), fmt(get(t32, "total_ms")),
                           fmt(get(ttf, "total_ms")), fmt(get(tnc, "total_ms")),
                           fmt(ratio(get(c, "total_ms"), get(t32, "total_ms"))) + "×",
                           f"{fmt(get(c, 'mem_mb'), 0)} / {fmt(get(t32, 'mem_mb'), 0)}"])
    text = ["## Whole nets (VGG19): Caffe fork vs PyTorch, same run"]
    if train_rows:
        text += [table(["net", "batch × iter_size", "Caffe fwd + bwd ms (median)", "caffe time ms (mean)",
                        "Caffe ms per paper batch", "PyTorch fp32 ms", "PyTorch TF32 ms",
                        "PyTorch fp32 no cuDNN ms", "Caffe / PyTorch fp32", "MiB Caffe / PyTorch fp32"],
                       train_rows), "",
                 "Per pass of `batch` samples: forward + loss + backward, no solver update (Caffe's "
                 "Forward-Backward). Per paper batch: × iter_size. Frozen layers do no backward on either side. "
                 "Caffe memory: device memory the net allocated; PyTorch: the caching allocator's peak."]
    if test_rows:
        text += ["", "### 25 × 10 test protocol (250 crops per video, forward only)",
                 table(["net", "crops per pass", "Caffe ms per pass", "Caffe videos/s", "PyTorch fp32 videos/s",
                        "PyTorch TF32 videos/s", "PyTorch fp32 / Caffe", "MiB Caffe / PyTorch fp32"], test_rows)]
    errors = [r for r in records if r.get("bench") == "error"]
    if errors:
        text += ["", "Errors:"] + [f"- {r.get('framework')} {r.get('tool', r.get('precision', ''))} "
                                   f"{r['name']}: {r['error'].splitlines()[0][:300]}" for r in errors]
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
    runs = pick(records, bench="gtest")
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
                parity_section(records), gtest_section(records), nets_section(records), memcheck_section(records),
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
