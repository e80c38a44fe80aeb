#!/usr/bin/env bash
# The single GPU-machine entry point of the benchmarks (issue 9): layers, GEMM floor, FlowAmplify bandwidth,
# CPU/GPU parity, whole nets in Caffe and PyTorch, memcheck of the layer tests. Writes its results under OUT and
# prints the summary table last.
#
#   bash benchmarks/run_gpu.sh [OUT]      (default: $OUT, else build/bench-gpu)
#
# Needs the bundle of tools/device/gpu_bundle.sh with bin/layer_bench added by benchmarks/build_layer_bench.sh (default
# .carry/gpu; BUNDLE=... overrides), python3 with torch, and optionally compute-sanitizer (PATH,
# /usr/local/cuda*/bin, .carry/sanitizer/bin from benchmarks/fetch_sanitizer.sh, or an nvidia pip wheel).
# Files under OUT (flat, 8 at most): env.json, layers_gpu.jsonl, nets_caffe.jsonl, nets_torch.jsonl,
# memcheck.jsonl, memcheck.txt, summary.md, run.log. REPS / WARMUP (default 20 / 5) set the repetitions.
# Every step has a time cap so the whole run stays under 8 minutes; a failing step is reported and the rest go on.
#
# Layer work (issue 18): LAYERS_ONLY=1 skips the whole nets and runs instead the layers' gtests (gtest.jsonl, the
# log in gtest.txt) and, when the bundle has bin/fusion_gemm_variants, the GEMM variants of MultiplicativeFusion
# (variants.jsonl). BEFORE=DIR (a folder with lib/libcaffe.so* of an earlier build and bin/layer_bench built
# against it) also runs that layer_bench, in the same run, into OUT/before/layers_gpu.jsonl for
# `summarize.py OUT --before OUT/before`.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-${OUT:-$REPO/build/bench-gpu}}"
BUNDLE="${BUNDLE:-$REPO/.carry/gpu}"
REPS="${REPS:-20}"
WARMUP="${WARMUP:-5}"
PLAN_S="${PLAN_S:-450}"  # memcheck only starts while the run is inside this many seconds
STARTED=$(date +%s)

elapsed() { echo $(( $(date +%s) - STARTED )); }
step() { echo; echo "=== [$(elapsed) s] $*"; }

write_env() {
  python3 - "$OUT_DIR/env.json" <<'EOF'
import datetime, json, subprocess, sys
def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception as error:
        return f"unavailable: {error}"
smi = sh("nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit",
         "--format=csv,noheader")
header = sh("nvidia-smi")
cuda = next((part.split("CUDA Version:")[1].split()[0] for part in header.split("|") if "CUDA Version:" in part), "")
env = {"bench": "env", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
       "nvidia_smi": smi, "driver_cuda_version": cuda, "kernel": sh("uname", "-r"),
       "cpu": sh("sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"), "nproc": sh("nproc")}
try:
    import torch
    env.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
except Exception as error:
    env["torch"] = f"unavailable: {error}"
open(sys.argv[1], "w").write(json.dumps(env) + "\n")
print(json.dumps(env, indent=1))
EOF
}

find_sanitizer() {
  local candidate
  for candidate in "$(command -v compute-sanitizer 2>/dev/null)" /usr/local/cuda*/bin/compute-sanitizer \
      "$REPO/.carry/sanitizer/bin/compute-sanitizer" \
      "$(python3 -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13/bin/compute-sanitizer"))' \
         2>/dev/null)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
  done
  return 1
}

# memcheck of the GPU instantiations (typed-test indices 2 and 3: GPUDevice<float>, GPUDevice<double>).
run_memcheck() {
  local sanitizer suite left log code errors passed failed
  if ! sanitizer="$(find_sanitizer)"; then
    echo "run_gpu: no compute-sanitizer found; memcheck skipped"
    echo '{"bench": "memcheck", "skipped": "no compute-sanitizer on this machine"}' >"$OUT_DIR/memcheck.jsonl"
    return
  fi
  : >"$OUT_DIR/memcheck.jsonl"
  # MEMCHECK_SUITES (space-separated) narrows the list, e.g. to the suites whose kernels changed.
  for suite in ${MEMCHECK_SUITES:-MultiplicativeFusionLayerTest/2 FlowAmplifyLayerTest/2 \
      MultiplicativeFusionLayerTest/3 FlowAmplifyLayerTest/3}; do
    left=$(( PLAN_S - $(elapsed) ))
    if [ "$left" -lt 20 ]; then
      echo "run_gpu: out of time before $suite"
      echo "{\"bench\": \"memcheck\", \"suite\": \"$suite\", \"skipped\": \"out of time\"}" >>"$OUT_DIR/memcheck.jsonl"
      continue
    fi
    log="$(mktemp)"
    (cd "$BUNDLE" && timeout "$left" "$sanitizer" --tool memcheck --error-exitcode 99 \
      bin/caffe-gtest --gtest_filter="$suite.*" >"$log" 2>&1)
    code=$?
    errors=$(grep -oE 'ERROR SUMMARY: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+$')
    passed=$(grep -oE '\[  PASSED  \] [0-9]+' "$log" | grep -oE '[0-9]+$')
    failed=$(grep -cE '^\[  FAILED  \] [A-Za-z]' "$log")
    echo "{\"bench\": \"memcheck\", \"suite\": \"$suite\", \"exit_code\": $code, \"errors\": ${errors:-null}," \
      "\"tests_passed\": ${passed:-0}, \"tests_failed\": ${failed:-0}, \"sanitizer\": \"$sanitizer\"}" \
      >>"$OUT_DIR/memcheck.jsonl"
    { echo "=== $suite (exit $code)"; tail -c 50000 "$log"; } >>"$OUT_DIR/memcheck.txt"
    tail -n 3 "$log"
    rm -f "$log"
  done
}

main() {
  if [ ! -x "$BUNDLE/bin/layer_bench" ]; then
    echo "run_gpu: no $BUNDLE/bin/layer_bench: run benchmarks/build_layer_bench.sh where the fork was built"
    return 1
  fi
  # shellcheck disable=SC1091
  source "$BUNDLE/env.sh"
  cd "$REPO" || return 1

  step "environment"
  write_env

  step "layers: MultiplicativeFusion vs composition vs GEMM floor, FlowAmplify vs memcpy, CPU/GPU parity"
  timeout 120 "$BUNDLE/bin/layer_bench" --gpu 0 --out "$OUT_DIR/layers_gpu.jsonl" --reps "$REPS" \
    --warmup "$WARMUP" || echo "run_gpu: layer_bench failed or timed out (exit $?)"

  if [ -n "${BEFORE:-}" ]; then
    step "layers, earlier build ($BEFORE), same run"
    mkdir -p "$OUT_DIR/before"
    cp "$OUT_DIR/env.json" "$OUT_DIR/before/"
    LD_LIBRARY_PATH="$BEFORE/lib:$LD_LIBRARY_PATH" timeout 120 "$BEFORE/bin/layer_bench" --gpu 0 \
      --out "$OUT_DIR/before/layers_gpu.jsonl" --reps "$REPS" --warmup "$WARMUP" \
      || echo "run_gpu: the earlier layer_bench failed or timed out (exit $?)"
  fi

  if [ "${LAYERS_ONLY:-0}" = 1 ]; then
    run_layer_checks
  else
    run_nets
  fi

  step "compute-sanitizer memcheck on the layers' GPU tests"
  run_memcheck

  step "summary"
  python3 benchmarks/summarize.py "$OUT_DIR" --markdown "$OUT_DIR/summary.md"
  echo "run_gpu: done in $(elapsed) s; files in $OUT_DIR"
}

# The layers' gtests (every instantiation) and the GEMM variants of MultiplicativeFusion.
run_layer_checks() {
  local log="$OUT_DIR/gtest.txt" code passed failed
  step "gtests of the layers (CPU and GPU, float and double)"
  (cd "$BUNDLE" && timeout 240 "$PWD/bin/caffe-gtest" --gtest_filter='*MultiplicativeFusion*:*FlowAmplify*' \
    >"$log" 2>&1)
  code=$?
  passed=$(grep -oE '\[  PASSED  \] [0-9]+' "$log" | grep -oE '[0-9]+$')
  failed=$(grep -cE '^\[  FAILED  \] [A-Za-z]' "$log")
  echo "{\"bench\": \"gtest\", \"filter\": \"*MultiplicativeFusion*:*FlowAmplify*\", \"exit_code\": $code," \
    "\"tests_passed\": ${passed:-0}, \"tests_failed\": $failed}" >"$OUT_DIR/gtest.jsonl"
  grep -E '^\[  (PASSED|FAILED)  \]|tests? ran' "$log" | head -30
  if [ -x "$BUNDLE/bin/fusion_gemm_variants" ]; then
    step "MultiplicativeFusion: the GEMM variants, one stream alone"
    timeout 120 "$BUNDLE/bin/fusion_gemm_variants" >"$OUT_DIR/variants.jsonl" \
      || echo "run_gpu: fusion_gemm_variants exited $?"
  fi
}

run_nets() {
  step "whole nets in Caffe (layer_bench --net, caffe time)"
  timeout 180 python3 benchmarks/caffe_nets.py --bin "$BUNDLE/bin" --out "$OUT_DIR/nets_caffe.jsonl" \
    --reps "$REPS" --warmup "$WARMUP" --timeout 100 || echo "run_gpu: caffe_nets exited $?"

  step "whole nets in PyTorch (fp32, TF32, fp32 without cuDNN)"
  timeout 150 python3 benchmarks/torch_nets.py --out "$OUT_DIR/nets_torch.jsonl" --reps "$REPS" \
    --warmup "$WARMUP" || echo "run_gpu: torch_nets exited $?"
}

mkdir -p "$OUT_DIR"
main 2>&1 | tee -a "$OUT_DIR/run.log"
