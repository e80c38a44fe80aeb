#!/usr/bin/env bash
# Issue 17's multi-GPU checks on a lent machine with two or more GPUs, one command from the repository root:
#
#   MFUSE_SCALING_DATA=<dir> MFUSE_FUSION_INIT=<caffemodel> bash tools/device/multigpu_checks.sh [OUT [ARGS...]]
#
# Needs, made on a machine with the project's venv:
# - the device bundle with NCCL (tools/device/device_bundle.sh; $MFUSE_BUNDLE, default .carry/device; its data/
#   is the tiny dataset of the agreement runs);
# - the 340x256 dataset of the scaling runs: `python benchmarks/multigpu.py --prepare-data DIR`
#   ($MFUSE_SCALING_DATA = DIR/data; its lmdb/ folder is all the runs read, about 9 MiB);
# - the tiny m-fuse conv5 net's initial weights: tools/train.py of prototxt/tiny/spatial_solver.prototxt and
#   temporal_solver.prototxt, then tools/surgery.py fusion-init prototxt/tiny/mfuse_conv5_deploy.prototxt
#   ($MFUSE_FUSION_INIT).
# Runs benchmarks/multigpu.py on every GPU the machine shows (1 GPU against all; ARGS are passed on, e.g.
# --iters 30): writes OUT/multigpu.json and OUT/multigpu.md, prints the tables last.
set -euo pipefail
REPO="$(pwd)"
OUT="${1:-${OUT:-/tmp/multigpu}}"
shift || true
BUNDLE="${MFUSE_BUNDLE:-$REPO/.carry/device}"
DATA="${MFUSE_SCALING_DATA:?set MFUSE_SCALING_DATA to the prepared 340x256 dataset (see the header)}"
INIT="${MFUSE_FUSION_INIT:?set MFUSE_FUSION_INIT to the tiny m-fuse conv5 initial weights (see the header)}"
export NCCL_NVLS_ENABLE=0   # NCCL's NVLink multicast stays off (docs/gpu.md); env.sh and every rank keep it so
# shellcheck source=/dev/null
source "$BUNDLE/env.sh"
gpus="$(nvidia-smi -L | grep -c '^GPU ')"
[ "$gpus" -ge 2 ] || { echo "multigpu_checks: needs 2 GPUs, this machine shows $gpus" >&2; exit 1; }
nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader
python3 -c "import caffe; assert caffe.has_nccl(), 'this pycaffe was built without NCCL'; print('pycaffe with NCCL')"
python3 "$REPO/benchmarks/multigpu.py" --tiny-data "$BUNDLE/data" --data "$DATA" --fusion-init "$INIT" \
  --out "$OUT" --gpus "$gpus" "$@"
