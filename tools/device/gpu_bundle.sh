#!/usr/bin/env bash
# Packs the CUDA build of the fork into a self-contained folder for a GPU machine that has the CUDA
# runtime, cuBLAS/cuRAND, OpenBLAS, and cuDNN and NCCL as pip wheels, but none of Caffe's other dependencies
# (the lent H100/H200 image: Ubuntu 24.04, no glog/gflags/lmdb/compiled boost). Run tools/setup.sh first (it
# builds the CUDA variant: with cuDNN and NCCL when the toolkit has them; cuda-nocudnn with --no-cudnn).
#
#   bash tools/device/gpu_bundle.sh [--variant cuda|cuda-nocudnn] [OUT_DIR]      (default: cuda, .carry/gpu)
#
# The bundle: bin/ (caffe, caffe-gtest), lib/ (libcaffe + the Debian libraries it needs), test_data/ (what
# the gtests read), env.sh (source it: LD_LIBRARY_PATH, PATH, NCCL_NVLS_ENABLE=0) and run_gpu_checks.sh
# (device_query, the GPU gtests, `caffe train -gpu 0` smoke runs). cuDNN and NCCL are not packed: env.sh finds
# the machine's own (tools/device/nvidia_libs.sh: MFUSE_CUDNN_LIB / MFUSE_NCCL_LIB, else the pip packages
# nvidia.cudnn / nvidia.nccl that python3 imports).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOG_TAG=gpu_bundle
# shellcheck source=tools/lib/build.sh
source "$REPO/tools/lib/build.sh"
VARIANT=cuda
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --variant) VARIANT="${2:-}"; shift; shift || true ;;
    --variant=*) VARIANT="${1#--variant=}"; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    -*) echo "gpu_bundle: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) OUT="$1"; shift ;;
  esac
done
case "$VARIANT" in
  cuda|cuda-nocudnn) ;;
  cudnn) die "the cuDNN build is the default variant 'cuda' now (tools/setup.sh)" ;;
  *) die "--variant must be cuda or cuda-nocudnn, got '$VARIANT'" ;;
esac
OUT="${OUT:-$REPO/.carry/gpu}"
FORK="$REPO/.venv/mfuse-fork-$VARIANT"
setup_cmd="tools/setup.sh"
[ "$VARIANT" = cuda-nocudnn ] && setup_cmd="tools/setup.sh --no-cudnn"
[ -f "$FORK/COMPLETE" ] || die "no complete $VARIANT build at $FORK; run $setup_cmd on a machine with nvcc"

# Libraries the GPU machine provides itself (base system, CUDA, BLAS, cuDNN, NCCL): never packed.
PROVIDED='^(linux-vdso|ld-linux|libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|libz|libcuda|libcudart|libcublas|libcublasLt|libcurand|libnvidia|libopenblas|libblas|liblapack|libgfortran|libquadmath|libgomp|libcudnn[a-z_]*|libnccl)\.'

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
cp "$REPO/tools/device/gpu_checks.sh" "$OUT/run_gpu_checks.sh"
cp "$REPO/tools/device/nvidia_libs.sh" "$OUT/"
nvidia_libs="$(nvidia_libs_of "$OUT/lib/libcaffe.so")"
cat >"$OUT/env.sh" <<EOF
here="\$(cd "\$(dirname "\${BASH_SOURCE[0]}")" && pwd)"
export LD_LIBRARY_PATH="\$here/lib:/usr/local/cuda/lib64\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export PATH="\$here/bin:\$PATH"
mfuse_nvidia_libs="$nvidia_libs"
source "\$here/nvidia_libs.sh"
EOF
echo "$VARIANT" >"$OUT/VARIANT"
du -sh "$OUT"
ls "$OUT/lib"
