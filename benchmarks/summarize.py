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

#: The issue's goals.
FLOOR_GOAL = 1.3          # layer fwd+bwd time <= 1.3 x the ideal GEMM floor
SPEEDUP_GOAL = 2.0        # composition time / layer time >= 2
MEMORY_GOAL = 0.5         # layer memory <= 0.5 x the composition's
BANDWIDTH_GOAL = 0.70     # FlowAmplify GB/s >= 70 % of a device-to-device copy's
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
            rows.append([size, activation, fmt(layer["total_ms"], 3), fmt(get(comp, "total_ms"), 3),
                         fmt(get(ideal, "total_ms"), 3), fmt(get(calls, "total_ms"), 3),
                         fmt(layer["tflops"], 2) + " / " + fmt(get(ideal, "tflops"), 2),
                         fmt(over_floor) + "×" + mark(over_floor, FLOOR_GOAL, False),
                         fmt(speedup) + "×" + mark(speedup, SPEEDUP_GOAL, True),
                         f"{fmt(layer['mem_mb'], 0)} / {fmt(get(comp, 'mem_mb'), 0)}",
                         fmt(memory) + "×" + mark(memory, MEMORY_GOAL, False) + f" ({fmt(internal)}×)"])
    header = ["shape", "act", "layer ms", "composition ms", "floor ms", "floor (layer's calls) ms",
              "TFLOP/s layer / floor", f"layer / floor (≤ {FLOOR_GOAL})", f"speed-up (≥ {SPEEDUP_GOAL:g})",
              "MiB layer / comp.", f"memory ratio (≤ {MEMORY_GOAL:g}; internal)"]
    title = "GPU" if mode == "gpu" else "CPU"
    note = "" if mode == "gpu" else " The goals are the GPU's (issue 9), marked here for reference."
    text = [f"## MultiplicativeFusion ({title}): forward + backward",
            table(header, rows), "",
            "Times: medians of forward + backward (ms). Floor: the bare GEMMs of the layer (per stream Z = W X, "
            "dW = dZ Xᵀ, dX = Wᵀ dZ) as single GEMMs over all N·H·W columns; \"layer's calls\": the same FLOPs "
            "as the layer issues them on NCHW data (strided-batched forward and dX, dW as N per-image GEMMs). "
            "Memory: what the net allocated (inputs, weights, top and every buffer, data + diff); in brackets "
            "the ratio without the inputs and the top, which both variants hold alike. Composition: 2× 1×1 "
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
        rows.append([f"N={record['n']} {record['c']}×{record['h']}×{record['w']}, source "
                     f"{record['src_h']}×{record['src_w']}", record["variant"], fmt(record["fwd_ms"], 3),
                     fmt(record["bwd_ms"], 3), fmt(record["total_ms"], 3), fmt(record["bytes"] / 1e6, 1),
                     fmt(record["gbps"], 0), fmt(get(copy, "gbps"), 0),
                     (fmt(100 * share, 0) + " %" + mark(share, BANDWIDTH_GOAL, True)) if share else "–"])
    header = ["shape", "backward to", "fwd ms", "bwd ms", "total ms", "MB moved", "GB/s", "memcpy GB/s",
              f"of memcpy (≥ {100 * BANDWIDTH_GOAL:.0f} %)"]
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


def summary(records) -> str:
    sections = [environment_section(records), fusion_section(records, "gpu"), amplify_section(records, "gpu"),
                parity_section(records), nets_section(records), memcheck_section(records),
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
    return parser.parse_args()


def main():
    args = parse_args()
    if not args.run_dir.is_dir():
        sys.exit(f"summarize: {args.run_dir} is not a folder")
    records = load_records(args.run_dir)
    if not records:
        sys.exit(f"summarize: no records in {args.run_dir}")
    text = summary(records)
    print(text)
    if args.markdown:
        write_atomic(args.markdown, text)
    if args.write:
        name = run_name(records)
        write_atomic(args.write / f"{name}.md", text)
        write_atomic(args.write / f"{name}.json", json.dumps({"records": records}, indent=1) + "\n")
        print(f"summarize: wrote {args.write / name}.md and .json", file=sys.stderr)


if __name__ == "__main__":
    main()
