#!/usr/bin/env bash
# Puts NVIDIA's compute-sanitizer (PyPI wheel nvidia-cuda-sanitizer-api, CUDA 13.0) into .carry/sanitizer/bin/
# (the binary beside its libraries, as the CUDA toolkit lays them out; about 28 MB), for a GPU machine whose CUDA
# runtime has no sanitizer; run_gpu.sh finds it there.
#
#   bash benchmarks/fetch_sanitizer.sh [OUT_DIR]       (default .carry/sanitizer)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$REPO/.carry/sanitizer}"
VERSION="${SANITIZER_VERSION:-13.0.*}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps "nvidia-cuda-sanitizer-api==$VERSION" -d "$work"
wheel="$(ls "$work"/nvidia_cuda_sanitizer_api-*.whl)"
python3 - "$wheel" "$work/unpacked" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
src="$(dirname "$(find "$work/unpacked" -path '*/bin/compute-sanitizer' | head -1)")/.."
rm -rf "$OUT"
mkdir -p "$OUT/bin"
cp "$src"/lib/*.so "$OUT/bin/"
cp "$src"/bin/* "$OUT/bin/"
chmod +x "$OUT/bin/compute-sanitizer"
du -sh "$OUT"
"$OUT/bin/compute-sanitizer" --version | tail -1
