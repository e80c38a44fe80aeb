#!/usr/bin/env bash
# The data path on the GPU machine (issue 19 items 4 and 5), all in one call:
#   1. the loader's samples/s against workers (CPU only);
#   2. a training pass of VGG19 spatial, temporal and m-fuse conv5 with the real data layer against DummyData,
#      fp32 and TF32 (MFUSE_TF32), with Caffe's im2col convolutions and, in a cuDNN build, with cuDNN;
#   3. the 25 x 10 test of VGG19 spatial in Caffe (the same engines and math modes) and in PyTorch (fp32, TF32),
#      data loading included.
#
#   bash benchmarks/run_data_path_gpu.sh REPO DATA OUT [OLD_PYTHON]
#
# REPO: a checkout of this branch (python/, benchmarks/); DATA: a prepared dataset (split-1 LMDBs of
# 340x256 frames: tools/make_synthetic.py --size 340 256 + tools/prepare.py); OUT: where the results go
# (log.txt, environment.txt and results.tar.gz with every JSON, refreshed after each step).
# The device bundle's env.sh must be sourced first (MFUSE_REPO=REPO). Each step runs on when another fails.
set -u
REPO="$(cd "$1" && pwd)"
DATA="$(cd "$2" && pwd)"
OUT="$3"
RESULTS="$(mktemp -d)/results"
mkdir -p "$OUT" "$RESULTS"
cd "$REPO"
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/log.txt"; }
step() {
  log "$*"
  "$@" >>"$OUT/log.txt" 2>&1 || log "FAILED (exit $?): $*"
  tar -czf "$OUT/results.tar.gz" -C "$(dirname "$RESULTS")" results
}

{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  echo "cores: $(nproc); $(grep -m1 'model name' /proc/cpuinfo)"
  df -h /dev/shm | tail -1
  python3 -c 'import sys, numpy, cv2; print("python", sys.version.split()[0], "numpy", numpy.__version__, "opencv", cv2.__version__)'
  python3 -c 'import torch; print("torch", torch.__version__, "cuDNN", torch.backends.cudnn.version())'
} >"$OUT/environment.txt" 2>&1

export GLOG_minloglevel=2
NETS="$(dirname "$RESULTS")/nets"
# cuDNN only when the build has it (a CUDNN engine layer is fatal in a build without it).
ENGINES="caffe"
if grep -q libcudnn "${MFUSE_BUNDLE:-/nonexistent}"/lib/libcaffe.so* 2>/dev/null; then ENGINES="caffe cudnn"; fi
log "convolution engines: $ENGINES"
for engine in $ENGINES; do
  python3 benchmarks/net_variants.py --engine "${engine^^}" --constant-fillers --out "$NETS/$engine" >/dev/null
done

step python3 benchmarks/data_layer_speed.py --data "$DATA" --workers 0 1 4 8 15 --nets spatial temporal fusion \
  --batches 20 --out "$RESULTS/data_layer.json"
for engine in $ENGINES; do
  for tf32 in 0 1; do
    step env MFUSE_TF32=$tf32 python3 benchmarks/train_pass_speed.py --data "$DATA" --gpu 0 \
      --manifest "$NETS/$engine/manifest.json" --nets spatial temporal mfuse_conv5 --iters 20 \
      --out "$RESULTS/train_pass_${engine}_tf32_$tf32.json"
  done
done
# Before: the same passes with the mfuse of OLD_PYTHON (optional 4th argument: the python/ of the base commit).
if [ -n "${4:-}" ]; then
  step env PYTHONPATH="$(cd "$4" && pwd):$PYTHONPATH" python3 benchmarks/train_pass_speed.py --data "$DATA" --gpu 0 \
    --manifest "$NETS/caffe/manifest.json" --nets spatial temporal --iters 20 --out "$RESULTS/train_pass_before.json"
fi
for engine in $ENGINES; do
  for tf32 in 0 1; do
    step env MFUSE_TF32=$tf32 python3 benchmarks/eval_speed.py --deploy "$NETS/$engine/vgg19_spatial_deploy.prototxt" \
      --data "$DATA" --gpu 0 --videos 3 --pipeline-videos 20 --out "$RESULTS/eval_caffe_${engine}_tf32_$tf32.json"
  done
done
# Without the bundle's library path: it holds the toolkit's cuDNN, older than the one PyTorch bundles.
step env -u LD_LIBRARY_PATH python3 benchmarks/eval_speed_torch.py --data "$DATA" --videos 20 \
  --out "$RESULTS/eval_torch.json"
log "done"
grep -h "^|" "$OUT/log.txt" | tail -40
