#!/usr/bin/env bash
# CPU numbers of the layers (issue 9, item 4): MultiplicativeFusion vs the stock composition vs the GEMM floor,
# FlowAmplify, on THREADS cores (default 2) at the CPU shapes of layer_bench (smaller batches than the GPU's).
#
#   bash benchmarks/run_cpu.sh [OUT_DIR]        (default build/bench-cpu)
#   python3 benchmarks/summarize.py OUT_DIR --write benchmarks/results     (to commit the table)
#
# Builds build/bench/layer_bench_cpu first when it is missing (benchmarks/build_layer_bench.sh cpu).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-$REPO/build/bench-cpu}"
THREADS="${THREADS:-2}"
REPS="${REPS:-20}"
WARMUP="${WARMUP:-3}"
BIN="$REPO/build/bench/layer_bench_cpu"
[ -x "$BIN" ] || bash "$REPO/benchmarks/build_layer_bench.sh" cpu
mkdir -p "$OUT_DIR"
rm -f "$OUT_DIR/layers_cpu.jsonl"
python3 - "$OUT_DIR/env.json" "$THREADS" <<'EOF'
import datetime, json, os, subprocess, sys
cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
env = {"bench": "env", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
       "cpu": cpu, "nproc": os.cpu_count(), "threads": int(sys.argv[2]),
       "note": f"OpenBLAS on {sys.argv[2]} threads; the machine's cores are shared with other jobs, so times are noisy."}
open(sys.argv[1], "w").write(json.dumps(env) + "\n")
EOF
OPENBLAS_NUM_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS" \
  "$BIN" --cpu --out "$OUT_DIR/layers_cpu.jsonl" --reps "$REPS" --warmup "$WARMUP" --suites fusion,floor,amplify,memcpy
python3 "$REPO/benchmarks/summarize.py" "$OUT_DIR" --markdown "$OUT_DIR/summary.md"
