#!/usr/bin/env bash
# Packs the CUDA build of the fork into a self-contained folder for a GPU machine that has the CUDA
# runtime, cuBLAS/cuRAND and OpenBLAS but none of Caffe's other dependencies (the lent H100/H200 image:
# Ubuntu 24.04, no glog/gflags/lmdb/compiled boost). Run tools/setup.sh first (it builds the CUDA variant).
#
#   bash tools/gpu_bundle.sh [OUT_DIR]      (default: .carry/gpu, git-ignored)
#
# The bundle: bin/ (caffe, caffe-gtest), lib/ (libcaffe + the Debian libraries it needs), test_data/ (what
# the gtests read), env.sh (source it: sets LD_LIBRARY_PATH) and run_gpu_checks.sh (device_query, the GPU
# gtests, a `caffe train -gpu 0` smoke run).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$REPO/.carry/gpu}"
FORK="$REPO/.venv/mfuse-fork-cuda"
[ -f "$FORK/COMPLETE" ] || { echo "gpu_bundle: no complete CUDA build at $FORK; run tools/setup.sh on a machine with nvcc" >&2; exit 1; }

# Libraries the GPU machine provides itself (base system, CUDA, BLAS): never packed.
PROVIDED='^(linux-vdso|ld-linux|libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|libz|libcuda|libcudart|libcublas|libcublasLt|libcurand|libnvidia|libopenblas|libblas|liblapack|libgfortran|libquadmath|libgomp)\.'

rm -rf "$OUT"
mkdir -p "$OUT/bin" "$OUT/lib"
cp "$FORK/install/bin/caffe" "$FORK/install/bin/caffe-gtest" "$OUT/bin/"
cp -P "$FORK"/install/lib/libcaffe.so* "$OUT/lib/"
for exe in "$OUT/bin/caffe" "$OUT/bin/caffe-gtest" "$OUT"/lib/libcaffe.so.*; do
  ldd "$exe" | awk '/=> \// {print $1, $3}'
done | sort -u | while read -r name path; do
  if ! [[ "$name" =~ $PROVIDED ]] && [ ! -e "$OUT/lib/$name" ]; then
    cp -L "$path" "$OUT/lib/$name"
  fi
done
strip --strip-unneeded "$OUT"/lib/*.so* "$OUT"/bin/* 2>/dev/null || true
mkdir -p "$OUT/src/caffe/test"
cp -r "$FORK/caffe-src/src/caffe/test/test_data" "$OUT/src/caffe/test/"
cp "$REPO/tools/gpu_checks.sh" "$OUT/run_gpu_checks.sh"
cat >"$OUT/env.sh" <<'EOF'
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export LD_LIBRARY_PATH="$here/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$here/bin:$PATH"
EOF
du -sh "$OUT"
ls "$OUT/lib"
