#!/usr/bin/env bash
# Compiles benchmarks/layer_bench.cpp against the fork's builds (tools/setup.sh makes them):
#   CUDA: .venv/mfuse-fork-cuda -> .carry/gpu/bin/layer_bench and bin/math_check (benchmarks/math_check.cpp)
#         (for the GPU bundle of tools/device/gpu_bundle.sh, whose env.sh puts the bundle's lib/ — libcaffe
#         and the Debian libraries — on LD_LIBRARY_PATH), and .carry/gpu/bin/fusion_gemm_variants
#         (benchmarks/fusion_gemm_variants.cu, sm_90)
#   CPU:  .venv/mfuse-fork-cpu  -> build/bench/layer_bench_cpu  (runs here; rpath to the CPU build)
#
#   bash benchmarks/build_layer_bench.sh [cuda|cpu|all]      (default all: each variant whose build exists)
#
# Environment: MFUSE_FORK_CUDA / MFUSE_FORK_CPU override the build folders; CUDA_HOME (default
# /usr/local/cuda); BUNDLE (default .carry/gpu).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WHAT="${1:-all}"
SRC="$REPO/benchmarks/layer_bench.cpp"
CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
BUNDLE="${BUNDLE:-$REPO/.carry/gpu}"
# The fork's folders under .venv of this checkout, else of the main checkout beside it (a worktree has none).
fork_dir() {
  local variant="$1" candidate
  for candidate in "$REPO/.venv/mfuse-fork-$variant" "$(git -C "$REPO" worktree list --porcelain 2>/dev/null \
      | awk 'NR==1 && /^worktree /{print $2}')/.venv/mfuse-fork-$variant"; do
    if [ -f "$candidate/COMPLETE" ]; then (cd "$candidate" && pwd -P); return; fi
  done
  return 1
}
CXXFLAGS=(-std=c++17 -O2 -Wall -Wno-sign-compare)
LIBS=(-lcaffe -lglog -lgflags -lprotobuf -lboost_system)

# The compile definitions and include folders the fork's own `caffe` tool was built with (CPU_ONLY, USE_CUDNN,
# USE_HDF5, ... must match the library's), from CMake's flags.make.
fork_flags() {
  local flags="$1/caffe-build/tools/CMakeFiles/caffe.bin.dir/flags.make"
  [ -f "$flags" ] || { echo "build_layer_bench: no $flags" >&2; return 1; }
  sed -n -e 's/^CXX_DEFINES = //p' -e 's/^CXX_INCLUDES = //p' "$flags"
}

# compile VARIANT OUTPUT [extra g++ arguments]: $SRC (layer_bench) against the fork's VARIANT (cpu or cuda) build.
compile() {
  local variant="$1" output="$2" fork flags
  shift 2
  fork="$(fork_dir "$variant")" || true
  [ "$variant" = cuda ] && fork="${MFUSE_FORK_CUDA:-$fork}"
  [ "$variant" = cpu ] && fork="${MFUSE_FORK_CPU:-$fork}"
  if [ -z "$fork" ] || [ ! -f "$fork/COMPLETE" ]; then
    echo "build_layer_bench: no complete $variant build of the fork (.venv/mfuse-fork-$variant); run tools/setup.sh" >&2
    return 1
  fi
  flags="$(fork_flags "$fork")" || return 1
  case " ${flags//$'\n'/ } " in
    *" -DCPU_ONLY "*) [ "$variant" = cpu ] || { echo "build_layer_bench: $fork is a CPU_ONLY build" >&2; return 1; } ;;
    *) [ "$variant" = cuda ] || { echo "build_layer_bench: $fork is not a CPU_ONLY build" >&2; return 1; } ;;
  esac
  mkdir -p "$(dirname "$output")"
  # shellcheck disable=SC2046,SC2086  # the fork's flags are words
  g++ "${CXXFLAGS[@]}" $flags "$SRC" -o "$output.tmp" -L"$fork/install/lib" "$@" "${LIBS[@]}"
  mv "$output.tmp" "$output"
  echo "build_layer_bench: $output (against $fork)"
}

build_cuda() {
  if [ ! -f "$BUNDLE/env.sh" ]; then
    echo "build_layer_bench: note: $BUNDLE has no env.sh yet; run tools/device/gpu_bundle.sh BEFORE this script" \
      "(it empties the folder), from the same fork build" >&2
  fi
  compile cuda "$BUNDLE/bin/layer_bench" -I"$CUDA_HOME/include" -L"$CUDA_HOME/lib64" -lcublas -lcudart
  SRC="$REPO/benchmarks/math_check.cpp" compile cuda "$BUNDLE/bin/math_check" -I"$CUDA_HOME/include" \
    -L"$CUDA_HOME/lib64" -lcudart
  # The GEMM variants of MultiplicativeFusion: CUDA and cuBLAS only, no Caffe.
  "$CUDA_HOME/bin/nvcc" -O3 -std=c++17 -arch=sm_90 "$REPO/benchmarks/fusion_gemm_variants.cu" \
    -o "$BUNDLE/bin/fusion_gemm_variants.tmp" -lcublas -lcublasLt
  mv "$BUNDLE/bin/fusion_gemm_variants.tmp" "$BUNDLE/bin/fusion_gemm_variants"
  echo "build_layer_bench: $BUNDLE/bin/fusion_gemm_variants"
}

build_cpu() {
  local fork
  fork="$(fork_dir cpu)" || true
  compile cpu "$REPO/build/bench/layer_bench_cpu" -Wl,-rpath,"${MFUSE_FORK_CPU:-$fork}/install/lib"
}

case "$WHAT" in
  cuda) build_cuda ;;
  cpu) build_cpu ;;
  all)
    built=0
    if build_cuda; then built=1; fi
    if build_cpu; then built=1; fi
    [ "$built" = 1 ] || { echo "build_layer_bench: nothing built" >&2; exit 1; }
    ;;
  *) echo "usage: bash benchmarks/build_layer_bench.sh [cuda|cpu|all]" >&2; exit 2 ;;
esac
