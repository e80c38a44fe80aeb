#!/usr/bin/env bash
# Runs inside a bundle made by tools/device/device_bundle.sh (as its run_device_checks.sh), on the GPU machine,
# with the bundle at <repo>/.carry/device (or MFUSE_REPO set) and a Python 3.12 as python3 (or MFUSE_PYTHON):
#   1. pycaffe in that Python: import, the layer list (mfuse's C++ layers and Python), GPU mode, NCCL
#      (caffe.has_nccl(), a full 128-byte caffe.NCCL.new_uid(), a one-rank communicator driving 5 solver
#      steps), and `caffe device_query`;
#   2. the GPU pytests of mfuse's layers (C++ layer on GPU against CPU and the Python twins); a skip fails;
#   3. `caffe train -gpu 0` of the tiny spatial net with mfuse's Python data layer on the bundle's data;
#   4. the 25-frame x 10-crop test of the trained net, pycaffe on GPU.
#   bash run_device_checks.sh
set -uo pipefail
bundle="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=/dev/null
source "$bundle/env.sh" || exit 1
cd "$MFUSE_REPO" || exit 1
export GLOG_minloglevel=2  # pycaffe: errors only (caffe train below logs at INFO for its progress lines)
py="${MFUSE_PYTHON:-python3}"
work="$(mktemp -d)"
status=0
fail() { echo "FAILED: $*"; status=1; }

echo "=== pycaffe in $("$py" --version) ($(command -v "$py"))"
"$py" - <<'EOF' || fail "pycaffe"
import caffe
names = caffe.layer_type_list()
print(len(names), "layer types:", " ".join(names))
missing = {"FlowAmplify", "MultiplicativeFusion", "Python"} - set(names)
assert not missing, f"layer types missing: {sorted(missing)}"
caffe.set_device(0)
caffe.set_mode_gpu()
print("GPU mode: ok, device 0")
assert caffe.has_nccl(), "this pycaffe was built without NCCL"
uid = caffe.NCCL.new_uid()
assert isinstance(uid, bytes) and len(uid) == 128, f"NCCL unique id of {len(uid)} bytes, expected 128"
print(f"NCCL: caffe.NCCL present, new_uid() gives {len(uid)} bytes")
EOF
echo "=== NCCL through pycaffe: a one-rank communicator, broadcast, 5 solver steps with all-reduce"
"$py" - "$work" <<'EOF' || fail "pycaffe NCCL"
import sys
from pathlib import Path

import caffe

work = Path(sys.argv[1])
(work / "nccl_net.prototxt").write_text("""
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 8 dim: 4 } shape { dim: 8 }
    data_filler { type: "gaussian" } data_filler { type: "constant" value: 1 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
  inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
""")
(work / "nccl_solver.prototxt").write_text(f"""
net: "{work / 'nccl_net.prototxt'}"
base_lr: 0.1
lr_policy: "fixed"
max_iter: 5
snapshot_after_train: false
solver_mode: GPU
""")
caffe.set_device(0)
caffe.set_mode_gpu()
caffe.set_solver_count(1)
caffe.set_solver_rank(0)
caffe.set_multiprocess(True)
solver = caffe.get_solver(str(work / "nccl_solver.prototxt"))
nccl = caffe.NCCL(solver, caffe.NCCL.new_uid())
nccl.bcast()
solver.add_callback(nccl)
if solver.param.layer_wise_reduce:
    solver.net.after_backward(nccl)
solver.step(5)
print(f"5 steps, loss {float(solver.net.blobs['loss'].data):.4f}, NCCL_NVLS_ENABLE={__import__('os').environ.get('NCCL_NVLS_ENABLE')}")
EOF
GLOG_minloglevel=0 caffe device_query -gpu 0 2>&1 | sed 's/^.*\] //' | grep -E "Device id|Major|Minor|Name|Total global" \
  || fail "caffe device_query"

echo "=== GPU pytests of mfuse's layers"
"$py" -m pytest -q -rs -p no:cacheprovider tests/test_layers_flow_amplify.py \
  tests/test_layers_multiplicative_fusion.py -k gpu >"$work/pytest.log" 2>&1 || fail "pytest (log below)"
tail -15 "$work/pytest.log"
grep -q "skipped" "$work/pytest.log" && fail "GPU tests were skipped"

echo "=== caffe train -gpu 0: tiny spatial net, Python data layer (20 iterations)"
"$py" tools/make_nets.py --out "$work/nets" --backbone tiny --num-classes 8 --source "$MFUSE_BUNDLE/data" \
  --runs-dir "$work/runs" >/dev/null || fail "make_nets.py"
mkdir -p "$work/runs/spatial"
sed -i -e 's/^max_iter: .*/max_iter: 20/' -e 's/^test_interval: .*/test_interval: 10/' -e 's/^test_iter: .*/test_iter: 2/' \
  -e 's/^display: .*/display: 5/' -e 's/^snapshot: .*/snapshot: 20/' "$work/nets/spatial_solver.prototxt"
GLOG_minloglevel=0 caffe train -solver "$work/nets/spatial_solver.prototxt" -gpu 0 >"$work/train.log" 2>&1 || fail "caffe train"
grep -E "Using GPUs|Iteration [0-9]+.*loss|Test net output|Optimization Done|Error|Check failed" "$work/train.log" \
  | sed 's/^.*\] //'
[ -f "$work/runs/spatial/snap_iter_20.caffemodel" ] || { fail "no final snapshot"; tail -30 "$work/train.log"; }

echo "=== 25 x 10 test of the trained net on GPU (pycaffe)"
if [ "$status" = 0 ]; then "$py" - "$work" <<'EOF' || fail "25 x 10 test"
import os
import sys
from pathlib import Path

import caffe
from mfuse.evaluation import evaluate
from mfuse.evaluation.testing import Protocol, evaluate_net
from mfuse.stores.reader import open_frame_store

work, data = Path(sys.argv[1]), Path(os.environ["MFUSE_BUNDLE"]) / "data"
caffe.set_device(0)
caffe.set_mode_gpu()
net = caffe.Net(str(work / "nets/spatial_deploy.prototxt"), str(work / "runs/spatial/snap_iter_20.caffemodel"),
                caffe.TEST)
stores = {"rgb": open_frame_store(data, 1, "test", "rgb")}
meta = {"dataset": "synthetic", "split": 1, "subset": "test", "net": "spatial"}
scores = evaluate_net(net, stores, work / "scores.npz", meta, Protocol(frames=25, crop_mode="ten"),
                      workers=2, progress=False)
result = evaluate(scores)
print(f"{len(stores['rgb'].index.videos)} test videos, top-1 accuracy {result.accuracy:.3f} (20 iterations: any value)")
EOF
else
  echo "skipped: an earlier check failed"
fi

rm -rf "$work"
echo "=== device checks: $([ "$status" = 0 ] && echo all passed || echo FAILED)"
exit $status
