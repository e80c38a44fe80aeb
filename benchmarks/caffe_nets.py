"""Times the Caffe nets of ``benchmarks/nets/manifest.json`` with the fork's binaries (no pycaffe needed).

Per net:

- ``layer_bench --net``: ``Net::Forward`` + ``Net::Backward`` per iteration (Caffe's Forward-Backward), medians
  of ``--reps`` after ``--warmup`` with CUDA events, and the device memory the net allocated;
- ``caffe time -gpu 0 -iterations N`` (TRAIN nets only): the stock tool's mean over N iterations after its one
  initial pass, as a cross-check of the timer.

Both are written as JSON lines with the manifest's ``iter_size`` and ``unit`` (the paper's batch is
``batch * iter_size``; the test-protocol net has one video, 250 crops, per pass). ``caffe time`` records also
hold its per-layer means (``layers``: name -> [forward ms, backward ms]) and the cuDNN build's log lines that
say which convolution algorithm each layer chose and why (``cudnn_choices``).

A run is one configuration: ``--env KEY=VALUE`` (repeatable) sets the fork's environment switches for it
(``MFUSE_TF32``, ``MFUSE_CUDNN_ALGO``, ``MFUSE_CUDNN_WORKSPACE_MB``, ``MFUSE_CUDNN_STREAMS``), ``--config`` names
it in the records (default: ``tf32`` with ``MFUSE_TF32=1``, else ``fp32``), beside ``build`` (the bundle's
``VARIANT`` file: ``cuda`` or ``cudnn``) and ``precision``.

    python3 benchmarks/caffe_nets.py --bin DIR --out FILE.jsonl [--reps 20] [--warmup 5] [--gpu 0]
                                     [--only spatial,temporal] [--no-caffe-time] [--cpu]
                                     [--env MFUSE_TF32=1 ...] [--config NAME]

``DIR`` holds ``layer_bench`` and ``caffe`` (the GPU bundle's ``bin/``: source its ``env.sh`` first). Stdlib only.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CAFFE_TIME_LINES = {"fwd_ms": r"Average Forward pass: ([0-9.eE+-]+) ms",
                    "bwd_ms": r"Average Backward pass: ([0-9.eE+-]+) ms",
                    "total_ms": r"Average Forward-Backward: ([0-9.eE+-]+) ms"}


#: ``caffe time``'s per-layer lines, e.g. ``conv1_1\tforward: 1.234 ms.``
LAYER_TIME_LINE = re.compile(r"\]\s+(\S+)\s+(forward|backward): ([0-9.eE+-]+) ms\.")
#: The cuDNN build's log line of a convolution algorithm choice, and its line of versions and settings.
CUDNN_CHOICE_LINE = re.compile(r"\] (cuDNN convolution '.*)$")
CUDNN_CONTEXT_LINE = re.compile(r"\] (cuDNN [0-9.]+ \(built against .*)$", re.M)


def run(command, timeout, env=None):
    """Runs ``command`` (with ``env`` added to the environment); returns (exit code, stdout, stderr), exit code
    None on a timeout."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, **(env or {})))
        return done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as expired:
        return None, expired.stdout or "", f"timed out after {timeout} s"


def error_message(stderr):
    """glog's fatal line (``F<date> ... Check failed: ...``) when there is one, else the last lines."""
    lines = stderr.strip().splitlines()
    fatal = [line for line in lines if re.match(r"^F\d{8} ", line) or "Check failed" in line]
    return (fatal[0] if fatal else "\n".join(lines[-4:]))[-800:]


def config_fields(args):
    """The fields that name a run's configuration in every record."""
    return {"config": args.config, "build": args.build, "precision": args.precision, "env": args.env}


def error_record(bench, tool, code, stderr, args):
    record = {"bench": "error", "framework": "caffe", "tool": tool, "name": bench["name"], "exit_code": code,
              "error": error_message(stderr)}
    record.update(config_fields(args))
    return record


def net_file(bench, args):
    """The prototxt of a manifest entry: beside the manifest."""
    return str(Path(args.manifest).parent / bench["file"])


def layer_bench_record(bench, args):
    """layer_bench --net on one manifest entry: its record with the manifest's fields added."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "net.jsonl"
        command = [str(Path(args.bin) / "layer_bench"), "--out", str(out), "--net", net_file(bench, args),
                   "--name", bench["name"], "--phase", bench["phase"], "--batch", str(bench["batch"]),
                   "--reps", str(args.reps), "--warmup", str(args.warmup)]
        command += ["--cpu"] if args.cpu else ["--gpu", str(args.gpu)]
        if bench["forward_only"]:
            command.append("--forward-only")
        code, stdout, stderr = run(command, args.timeout, args.env)
        records = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    nets = [record for record in records if record.get("bench") == "net"]
    if code != 0 or not nets:
        return error_record(bench, "layer_bench", code, stderr, args)
    record = nets[0]
    record.update(framework="caffe", iter_size=bench["iter_size"], unit=bench["unit"], **config_fields(args))
    return record


def caffe_time_record(bench, args):
    """``caffe time`` on one TRAIN manifest entry: its averages."""
    command = [str(Path(args.bin) / "caffe"), "time", "-model", net_file(bench, args), "-phase", bench["phase"],
               "-iterations", str(args.reps)]
    if not args.cpu:
        command += ["-gpu", str(args.gpu)]
    code, stdout, stderr = run(command, args.timeout, args.env)
    values = {}
    for key, pattern in CAFFE_TIME_LINES.items():
        match = re.search(pattern, stderr + stdout)
        if match:
            values[key] = float(match.group(1))
    if code != 0 or len(values) != len(CAFFE_TIME_LINES):
        return error_record(bench, "caffe time", code, stderr, args)
    layers = {}
    for name, direction, ms in LAYER_TIME_LINE.findall(stderr):
        layers.setdefault(name, [None, None])[0 if direction == "forward" else 1] = float(ms)
    choices = [match.group(1) for match in map(CUDNN_CHOICE_LINE.search, stderr.splitlines()) if match]
    context = CUDNN_CONTEXT_LINE.search(stderr)
    record = {"bench": "caffe_time", "framework": "caffe", "mode": "cpu" if args.cpu else "gpu",
              "name": bench["name"], "phase": bench["phase"], "batch": bench["batch"],
              "iter_size": bench["iter_size"], "iterations": args.reps, "statistic": "mean", "layers": layers,
              "cudnn_choices": choices, "cudnn_context": context.group(1) if context else None}
    record.update(values)
    record.update(config_fields(args))
    return record


def table_row(record):
    head = f"caffe   {record['config']:<15} {record['name']:<18}"
    if record["bench"] == "error":
        return f"{head} {record['tool']:<11} ERROR ({record['exit_code']}): {record['error']}"
    if record["bench"] == "caffe_time":
        return (f"{head} caffe time  batch {record['batch']:4d} fwd {record['fwd_ms']:8.2f}  "
                f"bwd {record['bwd_ms']:8.2f}  total {record['total_ms']:8.2f} ms (mean of {record['iterations']})")
    return (f"{head} layer_bench batch {record['batch']:4d} fwd {record['fwd_ms']:8.2f}  "
            f"bwd {record['bwd_ms']:8.2f}  total {record['total_ms']:8.2f} ms  {record['samples_per_s']:8.1f} "
            f"samples/s  mem {record['mem_mb']:8.0f} MiB")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True, help="folder with layer_bench and caffe")
    parser.add_argument("--out", required=True, help="JSON lines file to append to")
    parser.add_argument("--manifest", default=str(Path(__file__).resolve().parent / "nets" / "manifest.json"),
                        help="the nets' files are read from its folder")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--gpu", type=int, default=0)
    parser.add_argument("--cpu", action="store_true", help="CPU mode (a CPU build's binaries)")
    parser.add_argument("--only", help="comma-separated benchmark names of the manifest (default: all)")
    parser.add_argument("--no-caffe-time", action="store_true", help="skip the caffe time cross-check")
    parser.add_argument("--timeout", type=int, default=240, help="seconds per command")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="an environment switch of the fork for this run (repeatable)")
    parser.add_argument("--config", help="the run's name in the records (default: fp32 or tf32)")
    parser.add_argument("--name-prefix", default="",
                        help="put before the manifest's names in the records (e.g. cnn_m_2048/ for another backbone)")
    args = parser.parse_args()
    pairs = [item.partition("=") for item in args.env]
    bad = [item for item, (key, sep, _) in zip(args.env, pairs) if not sep or not key]
    if bad:
        parser.error(f"--env takes KEY=VALUE, got {bad[0]!r}")
    args.env = {key: value for key, _, value in pairs}
    args.precision = "tf32" if args.env.get("MFUSE_TF32") == "1" else "fp32"
    args.config = args.config or args.precision
    variant = Path(args.bin).parent / "VARIANT"
    args.build = "cpu" if args.cpu else (variant.read_text().strip() if variant.exists() else "cuda")
    return args


def main():
    args = parse_args()
    benches = json.loads(Path(args.manifest).read_text())["nets"]
    if args.only:
        wanted = set(args.only.split(","))
        benches = [bench for bench in benches if bench["name"] in wanted]
    benches = [dict(bench, name=args.name_prefix + bench["name"]) for bench in benches]
    failed = False
    with open(args.out, "a") as out:
        for bench in benches:
            tools = [layer_bench_record]
            if bench["phase"] == "TRAIN" and not args.no_caffe_time:
                tools.append(caffe_time_record)
            for tool in tools:
                began = time.time()
                record = tool(bench, args)
                record["wall_s"] = round(time.time() - began, 1)
                failed |= record["bench"] == "error"
                out.write(json.dumps(record) + "\n")
                out.flush()
                print(table_row(record), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
