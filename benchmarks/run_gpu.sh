#!/usr/bin/env bash
# The single GPU-machine entry point of the benchmarks (issues 9 and 19): layers, GEMM floor, FlowAmplify
# bandwidth, CPU/GPU parity, whole nets in Caffe and PyTorch, memcheck of the layer tests; for a cuDNN bundle also
# the cuDNN gtests, the bad-settings checks and the TF32 accuracy check. Writes its results under OUT and prints the
# summary table last.
#
#   bash benchmarks/run_gpu.sh [OUT]      (default: $OUT, else build/bench-gpu)
#
# Needs the bundle of tools/device/gpu_bundle.sh with bin/layer_bench (and bin/math_check) added by
# benchmarks/build_layer_bench.sh (default .carry/gpu; BUNDLE=... overrides), python3 with torch, and optionally
# compute-sanitizer (PATH, /usr/local/cuda*/bin, .carry/sanitizer/bin from benchmarks/fetch_sanitizer.sh, or an
# nvidia pip wheel).
# STEPS (comma-separated; default layers,nets,torch,memcheck; also gtests, bad, accuracy) picks the steps, NETS
# (comma-separated manifest names, default all) the nets, BEFORE_BUNDLE a second bundle (e.g. the build without
# cuDNN) whose nets are timed too (strict FP32), as the "before" of a comparison. A cuDNN bundle's nets run in
# strict FP32 and TF32 with the algorithms found (the default) and by heuristic, temporal also with two backward
# streams. Files under OUT (flat; 8 at most come back from a lent machine): env.json, layers_gpu.jsonl,
# checks.jsonl (gtests, bad settings), gtest.log, nets_caffe.jsonl, nets_torch.jsonl, accuracy.jsonl,
# memcheck.jsonl, memcheck.txt, summary.md, run.log. REPS / WARMUP (default 20 / 5) set the repetitions.
# Every step has a time cap; a failing step is reported and the rest go on.
#
# Layer work (issue 18): STEPS=layers,layerchecks,memcheck (what LAYERS_ONLY=1 selects) runs the layers' gtests
# (gtest.jsonl, the log in gtest.txt) and, when the bundle has bin/fusion_gemm_variants, the GEMM variants of
# MultiplicativeFusion (variants.jsonl). BEFORE=DIR (a folder with lib/libcaffe.so* of an earlier build and
# bin/layer_bench built against it) also runs that layer_bench, in the same run, into
# OUT/before/layers_gpu.jsonl for `summarize.py OUT --before OUT/before`.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-${OUT:-$REPO/build/bench-gpu}}"
BUNDLE="${BUNDLE:-$REPO/.carry/gpu}"
REPS="${REPS:-20}"
WARMUP="${WARMUP:-5}"
DEFAULT_STEPS=layers,nets,torch,memcheck
[ "${LAYERS_ONLY:-0}" = 1 ] && DEFAULT_STEPS=layers,layerchecks,memcheck
STEPS=",${STEPS:-$DEFAULT_STEPS},"
BEFORE_BUNDLE="${BEFORE_BUNDLE:-}"
ONLY=()
[ -n "${NETS:-}" ] && ONLY=(--only "$NETS")
PLAN_S="${PLAN_S:-450}"  # memcheck only starts while the run is inside this many seconds
STARTED=$(date +%s)

elapsed() { echo $(( $(date +%s) - STARTED )); }
step() { echo; echo "=== [$(elapsed) s] $*"; }
wanted() { [[ "$STEPS" == *",$1,"* ]]; }
variant_of() { cat "$1/VARIANT" 2>/dev/null || echo cuda; }
# Whether a bundle's build links cuDNN (its env.sh lists it; bundles older than the cuda = cuDNN default say cudnn).
has_cudnn() { grep -q '^mfuse_nvidia_libs=".*cudnn' "$1/env.sh" 2>/dev/null || [ "$(variant_of "$1")" = cudnn ]; }

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

# run_gtest SECONDS LABEL FILTER [KEY=VALUE...]: the bundle's caffe-gtest on FILTER with the environment switches
# given, for at most SECONDS; a record in checks.jsonl, the summary lines of its log appended to gtest.log.
run_gtest() {
  local limit="$1" label="$2" filter="$3" log code began passed failed
  shift 3
  log="$(mktemp)"
  began=$(date +%s)
  # gtest death tests re-execute argv[0]: the binary must be called by its path; test_data is relative.
  (cd "$BUNDLE" && env "$@" timeout "$limit" "$PWD/bin/caffe-gtest" --gtest_filter="$filter" >"$log" 2>&1)
  code=$?
  passed=$(grep -oE '\[  PASSED  \] [0-9]+' "$log" | grep -oE '[0-9]+$')
  failed=$(grep -cE '^\[  FAILED  \] [A-Za-z]' "$log")
  echo "{\"bench\": \"gtest\", \"label\": \"$label\", \"filter\": \"$filter\", \"env\": \"$*\"," \
    "\"passed\": ${passed:-0}, \"failed\": $failed, \"exit_code\": $code, \"seconds\": $(( $(date +%s) - began ))}" \
    >>"$OUT_DIR/checks.jsonl"
  { echo "=== $label ($*): exit $code"
    grep -E '^\[ *(FAILED|PASSED|==========) *\]|Failure|rror' "$log" | head -60
    grep -oE '(cuDNN [0-9.]+ \(built.*|none of the .*|no device memory.*)' "$log" | sort | uniq -c | head -20
  } >>"$OUT_DIR/gtest.log"
  echo "gtest $label ($*): ${passed:-0} passed, $failed failed, exit $code"
  rm -f "$log"
}

run_gtests() {
  local ours='*FlowAmplify*/2.*:*FlowAmplify*/3.*:*MultiplicativeFusion*/2.*:*MultiplicativeFusion*/3.*'
  : >"$OUT_DIR/gtest.log"
  if has_cudnn "$BUNDLE"; then
    run_gtest 150 cudnn "CuDNN*:NetTest/2.*:NetTest/3.*:$ours"
    run_gtest 90 cudnn_heuristic_2streams "CuDNN*" MFUSE_CUDNN_ALGO=heuristic MFUSE_CUDNN_STREAMS=2
  else
    run_gtest 240 gpu "NetTest/2.*:NetTest/3.*:ConvolutionLayerTest/2.*:ConvolutionLayerTest/3.*:$ours"
  fi
}

# Each bad setting must stop `caffe time` with a non-zero exit and one error line naming it.
run_bad_settings() {
  local net setting log code lines message
  net="$(mktemp --suffix=.prototxt)"
  cat >"$net" <<'NET'
layer { name: "data" type: "DummyData" top: "data"
  dummy_data_param { shape { dim: 4 dim: 3 dim: 16 dim: 16 } data_filler { type: "constant" value: 1 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 8 kernel_size: 3 weight_filler { type: "xavier" } } }
NET
  for setting in MFUSE_CUDNN_WORKSPACE_MB=lots MFUSE_CUDNN_WORKSPACE_MB=99999999 MFUSE_CUDNN_ALGO=fastest \
      MFUSE_CUDNN_STREAMS=3 MFUSE_TF32=2; do
    log="$(mktemp)"
    env "$setting" timeout 60 "$BUNDLE/bin/caffe" time -model "$net" -gpu 0 -iterations 1 >"$log" 2>&1
    code=$?
    # glog's prefix is E/F + MMDD (glog < 0.6) or YYYYMMDD (Debian 12's glog 0.6) + a space.
    lines=$(grep -cE '^[EF]([0-9]{4}|[0-9]{8}) |Check failure|^\*\*\*' "$log")
    message=$(grep -E '^[EF]([0-9]{4}|[0-9]{8}) ' "$log" | head -1 | sed -e 's/^[^]]*\] //' -e 's/["\\]/ /g')
    echo "{\"bench\": \"bad_input\", \"setting\": \"$setting\", \"exit_code\": $code, \"lines\": $lines," \
      "\"message\": \"$message\"}" >>"$OUT_DIR/checks.jsonl"
    echo "bad setting $setting: exit $code, $lines error line(s): $message"
    rm -f "$log"
  done
  rm -f "$net"
}

# caffe_nets BUNDLE_DIR CONFIG [caffe_nets.py arguments...]
caffe_nets() {
  local bundle="$1" config="$2"
  shift 2
  timeout 200 python3 benchmarks/caffe_nets.py --bin "$bundle/bin" --out "$OUT_DIR/nets_caffe.jsonl" \
    --reps "$REPS" --warmup "$WARMUP" --timeout 100 --config "$config" "$@" \
    || echo "run_gpu: caffe_nets $config exited $?"
}

# CNN-M-2048 (LRN, 7x7 and 5x5 convolutions), spatial and temporal: strict FP32 with caffe time's per-layer means.
CNN_M=(--manifest benchmarks/nets/cnn_m_2048/manifest.json --name-prefix cnn_m_2048/ --only spatial,temporal)

run_caffe_nets() {
  if [ -n "$BEFORE_BUNDLE" ]; then
    # In a subshell: that bundle's env.sh puts its own lib/ first.
    (source "$BEFORE_BUNDLE/env.sh" && caffe_nets "$BEFORE_BUNDLE" fp32 --no-caffe-time "${ONLY[@]}" &&
      caffe_nets "$BEFORE_BUNDLE" fp32 "${CNN_M[@]}")
  fi
  caffe_nets "$BUNDLE" fp32 "${ONLY[@]}" --env MFUSE_TF32=0
  caffe_nets "$BUNDLE" tf32 "${ONLY[@]}" --env MFUSE_TF32=1
  if has_cudnn "$BUNDLE"; then
    caffe_nets "$BUNDLE" fp32_heuristic --no-caffe-time "${ONLY[@]}" --env MFUSE_CUDNN_ALGO=heuristic
    caffe_nets "$BUNDLE" tf32_heuristic --no-caffe-time "${ONLY[@]}" --env MFUSE_TF32=1 \
      --env MFUSE_CUDNN_ALGO=heuristic
    # Only the temporal net back-propagates through its convolutions.
    caffe_nets "$BUNDLE" fp32_streams2 --no-caffe-time --only temporal --env MFUSE_CUDNN_STREAMS=2
    caffe_nets "$BUNDLE" fp32 "${CNN_M[@]}" --env MFUSE_TF32=0
  fi
}

main() {
  if [ ! -x "$BUNDLE/bin/layer_bench" ]; then
    echo "run_gpu: no $BUNDLE/bin/layer_bench: run benchmarks/build_layer_bench.sh where the fork was built"
    return 1
  fi
  # shellcheck disable=SC1091
  source "$BUNDLE/env.sh"
  cd "$REPO" || return 1

  step "environment (bundle $BUNDLE: $(variant_of "$BUNDLE"); steps ${STEPS//,/ })"
  write_env

  if wanted gtests; then
    step "gtests on the GPU"
    run_gtests
  fi

  if wanted bad && has_cudnn "$BUNDLE"; then
    step "bad settings"
    run_bad_settings
  fi

  if wanted layers; then
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
  fi

  if wanted layerchecks; then
    run_layer_checks
  fi

  if wanted nets; then
    step "whole nets in Caffe (layer_bench --net, caffe time)"
    run_caffe_nets
  fi

  if wanted torch; then
    step "whole nets in PyTorch (fp32, TF32, fp32 without cuDNN; cudnn.benchmark off and on)"
    timeout 200 python3 benchmarks/torch_nets.py --out "$OUT_DIR/nets_torch.jsonl" --reps "$REPS" \
      --warmup "$WARMUP" "${ONLY[@]}" || echo "run_gpu: torch_nets exited $?"
  fi

  if wanted accuracy && [ -x "$BUNDLE/bin/math_check" ]; then
    step "TF32 and algorithm choice: accuracy against strict FP32 (temporal and m-fuse conv5 nets)"
    timeout 100 python3 benchmarks/tf32_accuracy.py --bin "$BUNDLE/bin" --out "$OUT_DIR/accuracy.jsonl" \
      || echo "run_gpu: tf32_accuracy (temporal) exited $?"
    # MultiplicativeFusion's GEMMs go through Caffe's cuBLAS handle: TF32 reaches them too.
    timeout 60 python3 benchmarks/tf32_accuracy.py --bin "$BUNDLE/bin" --out "$OUT_DIR/accuracy.jsonl" \
      --net benchmarks/nets/vgg19_mfuse_conv5_dummy_train.prototxt --name mfuse_conv5 --runs fp32,tf32 \
      --blobs mfuse,cons_fc8 --param-diffs mfuse,cons_fc6 || echo "run_gpu: tf32_accuracy (mfuse_conv5) exited $?"
  fi

  if wanted memcheck; then
    step "compute-sanitizer memcheck on the layers' GPU tests"
    run_memcheck
  fi

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


mkdir -p "$OUT_DIR"
main 2>&1 | tee -a "$OUT_DIR/run.log"
