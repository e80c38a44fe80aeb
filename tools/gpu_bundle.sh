#!/usr/bin/env bash
# Packs the CUDA build of the fork into a self-contained folder for a GPU machine that has the CUDA
# runtime, cuBLAS/cuRAND and OpenBLAS but none of Caffe's other dependencies (the lent H100/H200 image:
# Ubuntu 24.04, no glog/gflags/lmdb/compiled boost). Run tools/setup.sh first (it builds the CUDA variant).
#
#   bash tools/gpu_bundle.sh [--variant cuda|cudnn] [OUT_DIR]      (default: cuda, .carry/gpu, git-ignored)
#
# The bundle: bin/ (caffe, caffe-gtest), lib/ (libcaffe + the Debian libraries it needs), test_data/ (what
# the gtests read), env.sh (source it: sets LD_LIBRARY_PATH) and run_gpu_checks.sh (device_query, the GPU
# gtests, a `caffe train -gpu 0` smoke run).
# The cudnn variant (tools/setup.sh --cudnn) packs no cuDNN: the GPU machine has its own (cuDNN 9 from
# the pip wheel nvidia-cudnn-cu13). Its env.sh adds $MFUSE_CUDNN_LIB to LD_LIBRARY_PATH, or, unset, the
# lib/ folder of the `nvidia.cudnn` package that python3 imports.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VARIANT=cuda
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --variant) VARIANT="${2:-}"; shift; shift || true ;;
    --variant=*) VARIANT="${1#--variant=}"; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) echo "gpu_bundle: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) OUT="$1"; shift ;;
  esac
done
case "$VARIANT" in
  cuda|cudnn) ;;
  *) echo "gpu_bundle: --variant must be cuda or cudnn, got '$VARIANT'" >&2; exit 2 ;;
esac
OUT="${OUT:-$REPO/.carry/gpu}"
FORK="$REPO/.venv/mfuse-fork-$VARIANT"
setup_cmd="tools/setup.sh"
[ "$VARIANT" = cudnn ] && setup_cmd="tools/setup.sh --cudnn"
[ -f "$FORK/COMPLETE" ] || { echo "gpu_bundle: no complete $VARIANT build at $FORK; run $setup_cmd on a machine with nvcc" >&2; exit 1; }

# Libraries the GPU machine provides itself (base system, CUDA, BLAS, cuDNN): never packed.
PROVIDED='^(linux-vdso|ld-linux|libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|libz|libcuda|libcudart|libcublas|libcublasLt|libcurand|libnvidia|libopenblas|libblas|liblapack|libgfortran|libquadmath|libgomp|libcudnn[a-z_]*)\.'

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
echo "$VARIANT" >"$OUT/VARIANT"
if [ "$VARIANT" = cudnn ]; then
  cat >>"$OUT/env.sh" <<'EOF'
# cuDNN is not packed: the machine's own, from MFUSE_CUDNN_LIB or the nvidia.cudnn package python3 sees.
if [ -z "${MFUSE_CUDNN_LIB:-}" ]; then
  MFUSE_CUDNN_LIB="$(python3 -c 'import nvidia.cudnn, os; print(os.path.join(list(nvidia.cudnn.__path__)[0], "lib"))' 2>/dev/null || true)"
fi
if [ -n "$MFUSE_CUDNN_LIB" ] && compgen -G "$MFUSE_CUDNN_LIB/libcudnn.so*" >/dev/null; then
  export LD_LIBRARY_PATH="$MFUSE_CUDNN_LIB:$LD_LIBRARY_PATH"
else
  echo "env.sh: no cuDNN found (set MFUSE_CUDNN_LIB to the folder with libcudnn.so.9)" >&2
fi
EOF
fi
du -sh "$OUT"
ls "$OUT/lib"
