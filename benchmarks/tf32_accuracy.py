"""What TF32 and the choice of cuDNN algorithms do to a VGG19 net's numbers (issue 19), on the GPU machine.

Runs ``math_check`` (one forward + backward pass, same seed: same inputs, weights and dropout masks in every run)
under several environments of the fork's cuDNN build and compares each run with the reference run, strict FP32
with the default algorithm choice:

- ``fp32_repeat``: the reference settings again (the run-to-run spread: algorithms that add with atomics);
- ``fp32_heuristic``: strict FP32, ``MFUSE_CUDNN_ALGO=heuristic`` (other algorithms: the FP32 rounding scale);
- ``tf32``: ``MFUSE_TF32=1`` (TF32 tensor cores for convolutions and cuBLAS GEMMs).

Per blob (the net's scores and loss, the weight gradients of a few layers): ``max_rel`` = max |x - ref| / max |ref|
and ``norm_rel`` = ||x - ref|| / ||ref||. JSON lines to ``--out``, a table to stdout.

    python3 benchmarks/tf32_accuracy.py --bin DIR --out FILE.jsonl [--net NET.prototxt --name NAME] [--batch N]
                                        [--blobs a,b] [--param-diffs layer1,layer2] [--runs fp32,tf32]

``DIR`` holds ``math_check`` (the cudnn GPU bundle's ``bin/``: source its ``env.sh`` first). Needs numpy.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

NETS_DIR = Path(__file__).resolve().parent / "nets"
#: (label, environment added to the reference's); the first is the reference.
RUNS = (("fp32", {}), ("fp32_repeat", {}), ("fp32_heuristic", {"MFUSE_CUDNN_ALGO": "heuristic"}),
        ("tf32", {"MFUSE_TF32": "1"}))
#: The settings every run starts from: the defaults, explicitly.
BASE_ENV = {"MFUSE_TF32": "0", "MFUSE_CUDNN_ALGO": "find"}


def run_math_check(args, label: str, extra_env: dict, out_dir: Path) -> dict:
    """One math_check run; returns {blob name + kind: (array, kind)}."""
    env = {**os.environ, **BASE_ENV, **extra_env}
    command = [str(Path(args.bin) / "math_check"), "--gpu", str(args.gpu), "--net", args.net, "--out", str(out_dir),
               "--seed", str(args.seed), "--blobs", args.blobs, "--param-diffs", args.param_diffs]
    if args.batch:
        command += ["--batch", str(args.batch)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
    if done.returncode != 0:
        raise RuntimeError(f"math_check ({label}) exited {done.returncode}: {done.stderr.strip()[-600:]}")
    arrays = {}
    for entry in json.loads((out_dir / "index.json").read_text()):
        values = np.fromfile(out_dir / entry["file"], dtype="<f4").reshape(entry["shape"])
        arrays[(entry["name"], entry["kind"])] = values
    return arrays


def compare(values: np.ndarray, reference: np.ndarray) -> dict:
    ref = reference.astype(np.float64)
    delta = values.astype(np.float64) - ref
    scale = np.abs(ref).max()
    norm = np.linalg.norm(ref)
    return {"max_rel": float(np.abs(delta).max() / scale) if scale > 0 else None,
            "norm_rel": float(np.linalg.norm(delta) / norm) if norm > 0 else None,
            "finite": bool(np.isfinite(values).all())}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True, help="folder with math_check")
    parser.add_argument("--out", required=True, help="JSON lines file to append to")
    parser.add_argument("--net", default=str(NETS_DIR / "vgg19_temporal_dummy_train.prototxt"))
    parser.add_argument("--name", default="temporal", help="the net's name in the records")
    parser.add_argument("--batch", type=int, default=0, help="batch per pass (default: the net's)")
    parser.add_argument("--blobs", default="fc8_action,loss")
    parser.add_argument("--param-diffs", default="conv1_1,conv3_1,conv5_4,fc6,fc8_action")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", default=",".join(label for label, _ in RUNS),
                        help=f"comma-separated runs of {[label for label, _ in RUNS]}, the reference first")
    parser.add_argument("--gpu", type=int, default=0)
    parser.add_argument("--timeout", type=int, default=120, help="seconds per run")
    args = parser.parse_args()
    labels = args.runs.split(",")
    known = dict(RUNS)
    if labels[0] != RUNS[0][0] or any(label not in known for label in labels):
        parser.error(f"--runs: labels of {list(known)}, starting with {RUNS[0][0]}; got {args.runs!r}")
    args.runs = [(label, known[label]) for label in labels]
    return args


def main():
    args = parse_args()
    results = {}
    failed = False
    with tempfile.TemporaryDirectory() as tmp, open(args.out, "a") as out:
        for label, extra_env in args.runs:
            run_dir = Path(tmp) / label
            run_dir.mkdir()
            try:
                results[label] = run_math_check(args, label, extra_env, run_dir)
            except (OSError, RuntimeError, subprocess.TimeoutExpired) as error:
                failed = True
                record = {"bench": "error", "framework": "caffe", "name": args.name, "tool": "math_check",
                          "run": label, "error": str(error)[-800:]}
                out.write(json.dumps(record) + "\n")
                print(f"accuracy {args.name:<10} {label:<15} ERROR {record['error']}", flush=True)
        reference = results.get(RUNS[0][0])
        for label, extra_env in args.runs[1:]:
            if reference is None or label not in results:
                continue
            for (blob, kind), values in results[label].items():
                record = {"bench": "accuracy", "name": args.name, "run": label, "reference": RUNS[0][0],
                          "env": {**BASE_ENV, **extra_env}, "blob": blob, "kind": kind,
                          "shape": list(values.shape)}
                record.update(compare(values, reference[(blob, kind)]))
                failed |= not record["finite"]
                out.write(json.dumps(record) + "\n")
                max_rel = "–" if record["max_rel"] is None else f"{record['max_rel']:.1e}"
                norm_rel = "–" if record["norm_rel"] is None else f"{record['norm_rel']:.1e}"
                print(f"accuracy {args.name:<10} {label:<15} {blob:>11} {kind:<10} max_rel {max_rel}  "
                      f"norm_rel {norm_rel}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
