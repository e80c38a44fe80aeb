#!/usr/bin/env bash
# Runs inside a bundle made by tools/device/gpu_bundle.sh, on a machine with an NVIDIA GPU:
# `caffe device_query`, the GPU gtests (upstream layers + mfuse layers) and a `caffe train -gpu 0` smoke run.
#   bash run_gpu_checks.sh [gtest filter]
# Default filter: the upstream suites and mfuse's layers, plus upstream's cuDNN layer suites (CuDNN*) when the
# build has cuDNN (the default cuda variant). MFUSE_TF32=1 in the environment allows TF32 math.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source ./env.sh
# gtest death tests re-execute argv[0]: the binary must be called by its path, not through PATH.
VARIANT="$(cat VARIANT 2>/dev/null || echo cuda)"
DEFAULT_FILTER="NetTest*:InnerProductLayerTest*:ConvolutionLayerTest*:EltwiseLayerTest*:PoolingLayerTest*:PowerLayerTest*:SGDSolverTest*:*FlowAmplify*:*MultiplicativeFusion*"
case " $mfuse_nvidia_libs " in *" cudnn "*) DEFAULT_FILTER="$DEFAULT_FILTER:CuDNN*" ;; esac
FILTER="${1:-$DEFAULT_FILTER}"
status=0
echo "=== bundle variant: $VARIANT (links: ${mfuse_nvidia_libs:-no cuDNN, no NCCL}), MFUSE_TF32=${MFUSE_TF32:-0}"

echo "=== caffe device_query -gpu 0"
caffe device_query -gpu 0 2>&1 | sed 's/^.*\] //' || status=1

echo "=== caffe-gtest (GPU and CPU instantiations): $FILTER"
gtest_log="${GTEST_LOG:-$(mktemp)}"
"$PWD/bin/caffe-gtest" --gtest_filter="$FILTER" >"$gtest_log" 2>&1 || status=1
grep -E '^\[ *(PASSED|FAILED|==========) *\]|tests? ran|FAILED' "$gtest_log" | sort -u | head -40
# TestDtypesAndDevices instantiates CPU float, CPU double, GPU float, GPU double as /0 /1 /2 /3.
echo "GPU instantiations passed: $(grep -cE '^\[       OK \] [A-Za-z]+/[23]\.' "$gtest_log")"

echo "=== caffe train -gpu 0 (DummyData smoke run, 50 iterations)"
work="$(mktemp -d)"
cat >"$work/net.prototxt" <<'EOF'
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 32 dim: 3 dim: 16 dim: 16 } shape { dim: 32 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 2 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 8 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc"
  inner_product_param { num_output: 4 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
EOF
cat >"$work/solver.prototxt" <<EOF
net: "$work/net.prototxt"
base_lr: 0.05
lr_policy: "fixed"
momentum: 0.9
max_iter: 50
display: 10
snapshot_prefix: "$work/snap"
solver_mode: GPU
EOF
caffe train -solver "$work/solver.prototxt" -gpu 0 2>&1 | grep -E "Using GPUs|Iteration [0-9]+ .*loss|Optimization Done" \
  | sed 's/^.*\] //' || status=1
exit $status
