#!/usr/bin/env bash
# On the GPU machine, from the checkout's root: the recipe of runs/gpu-recipe/exp.toml on GPU 0, then (2 GPUs or
# more) on GPUs 0,1.
export MFUSE_REPO="$PWD"
source .carry/device/env.sh || exit 1
python3 -c "import matplotlib, tqdm, cv2, lmdb, caffe; print('imports ok', caffe.__file__)" || exit 3
nvidia-smi -L
runs="0"
[ "$(nvidia-smi -L | grep -c '^GPU ')" -ge 2 ] && runs="0 0,1"
for gpus in $runs; do
  tag="gpus${gpus/,/-}"
  echo "=== reproduce.py --gpus $gpus"
  start=$(date +%s)
  python3 tools/reproduce.py runs/gpu-recipe/exp.toml --gpus "$gpus" > "$OUT/reproduce-$tag.log" 2>&1
  echo "rc=$? in $(( $(date +%s) - start )) s"
  grep -E "^\[|error|Error" "$OUT/reproduce-$tag.log" | grep -v "it/s" | tail -45
  cp runs/gpu-recipe/run/results/results.md "$OUT/results-$tag.md" 2>/dev/null
  cp runs/gpu-recipe/run/split1/seed1/runs/spatial/*.run.json "$OUT/run-spatial-$tag.json" 2>/dev/null
done
