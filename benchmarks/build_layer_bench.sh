#!/usr/bin/env bash
# Compiles benchmarks/layer_bench.cpp against the fork's builds (tools/setup.sh makes them):
#   CUDA: .venv/mfuse-fork-cuda -> .carry/gpu/bin/layer_bench  (for the GPU bundle of tools/gpu_bundle.sh,
#         whose env.sh puts the bundle's lib/ — libcaffe and the Debian libraries — on LD_LIBRARY_PATH)
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
CXXFLAGS=(-std=c++17 -O2 -Wall -Wno-sign-compare -DUSE_HDF5 -DUSE_LMDB -isystem /usr/include/hdf5/serial)
LIBS=(-lcaffe -lglog -lgflags -lprotobuf -lboost_system)

build_cuda() {
  local fork="${MFUSE_FORK_CUDA:-$(fork_dir cuda)}" || true
  if [ -z "$fork" ] || [ ! -f "$fork/COMPLETE" ]; then
    echo "build_layer_bench: no complete CUDA build of the fork (.venv/mfuse-fork-cuda); run tools/setup.sh" >&2
    return 1
  fi
  mkdir -p "$BUNDLE/bin"
  g++ "${CXXFLAGS[@]}" -I"$fork/caffe-build/include" -I"$fork/caffe-src/include" -I"$CUDA_HOME/include" \
    "$SRC" -o "$BUNDLE/bin/layer_bench.tmp" -L"$fork/install/lib" -L"$CUDA_HOME/lib64" "${LIBS[@]}" \
    -lcublas -lcudart
  mv "$BUNDLE/bin/layer_bench.tmp" "$BUNDLE/bin/layer_bench"
  echo "build_layer_bench: $BUNDLE/bin/layer_bench (against $fork)"
}

build_cpu() {
  local fork="${MFUSE_FORK_CPU:-$(fork_dir cpu)}" || true
  if [ -z "$fork" ] || [ ! -f "$fork/COMPLETE" ]; then
    echo "build_layer_bench: no complete CPU build of the fork (.venv/mfuse-fork-cpu); run tools/setup.sh" >&2
    return 1
  fi
  mkdir -p "$REPO/build/bench"
  g++ "${CXXFLAGS[@]}" -DCPU_ONLY -I"$fork/caffe-build/include" -I"$fork/caffe-src/include" \
    "$SRC" -o "$REPO/build/bench/layer_bench_cpu.tmp" -L"$fork/install/lib" -Wl,-rpath,"$fork/install/lib" \
    "${LIBS[@]}"
  mv "$REPO/build/bench/layer_bench_cpu.tmp" "$REPO/build/bench/layer_bench_cpu"
  echo "build_layer_bench: $REPO/build/bench/layer_bench_cpu (against $fork)"
}

case "$WHAT" in
  cuda) build_cuda ;;
  cpu) build_cpu ;;
  all)
    built=0
    build_cuda && built=1 || true
    build_cpu && built=1 || true
    [ "$built" = 1 ] || { echo "build_layer_bench: nothing built" >&2; exit 1; }
    ;;
  *) echo "usage: bash benchmarks/build_layer_bench.sh [cuda|cpu|all]" >&2; exit 2 ;;
esac
