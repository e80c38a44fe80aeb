#!/usr/bin/env bash
# Packs the device variant of the fork (CUDA + Python 3.12, made by tools/device/device_build.sh) into a folder for
# the lent GPU machine: Ubuntu 24.04 with the CUDA runtime, cuBLAS/cuRAND, OpenBLAS and a Python 3.12 with
# numpy, OpenCV, protobuf, scikit-image, PyYAML, tqdm and pytest, but none of Caffe's other dependencies.
# cuDNN and NCCL are not packed: the device has them as pip wheels (tools/device/nvidia_libs.sh finds them).
# A developer tool (see docs/gpu.md); the plain CUDA bundle is tools/device/gpu_bundle.sh.
#
#   bash tools/device/device_bundle.sh [OUT_DIR]      (default: .carry/device, git-ignored)
#
# The bundle:
#   bin/caffe        the fork's binary (its Python layers run in the device's Python 3.12)
#   lib/             libcaffe, libboost_python312 and the Debian libraries the device lacks (not libpython:
#                    the device's own libpython3.12 is used)
#   python/          pycaffe (caffe/, with _caffe.so and proto/caffe_pb2.py) and the pure wheels mfuse needs
#                    that the device lacks (lmdb, six), unpacked
#   data/            a tiny prepared synthetic dataset (4 groups x 1 clip, DIS flow, LMDB) for a training run
#   env.sh           source it: LD_LIBRARY_PATH (with the device's cuDNN and NCCL), PATH, PYTHONPATH (bundle
#                    python/, the repo's python/, and the device Python's site-packages for the caffe binary's
#                    embedded interpreter), NCCL_NVLS_ENABLE=0
#   run_device_checks.sh   pycaffe on GPU (caffe.NCCL), device_query, the GPU pytests of mfuse's layers, a
#                    `caffe train -gpu 0` run with the Python data layer, the 25 x 10 test
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOG_TAG=device-bundle
# shellcheck source=tools/lib/build.sh
source "$REPO/tools/lib/build.sh"
OUT="${1:-$REPO/.carry/device}"
VENV="$REPO/.venv-device"
FORK="$VENV/mfuse-fork-device"
[ -f "$FORK/COMPLETE" ] || die "no complete device build at $FORK; run tools/device/device_build.sh first"

# Wheels of packages mfuse imports on the device that its Python lacks (pins from requirements.txt).
WHEELS=(lmdb six)
# Libraries the device provides itself (base system, CUDA, cuDNN, NCCL, BLAS, its Python, and the protobuf 3.21 and HDF5
# 1.10 serial libraries of Ubuntu 24.04, same sonames as Debian 12's): never packed, nor what only they need
# (HDF5's libcurl and its TLS/Kerberos/LDAP tree). env.sh checks on the device that all of them resolve.
PROVIDED='^(linux-vdso|ld-linux|ld-linux-x86-64|libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|libz|libcuda|libcudart|libcublas|libcublasLt|libcurand|libnvidia|libopenblas|libblas|liblapack|libgfortran|libquadmath|libgomp|libpython3\.12|libprotobuf|libhdf5_serial|libhdf5_serial_hl|libcudnn[a-z_]*|libnccl)\.'

PY_LIBDIR="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')"
BOOST_PY_LIBDIR="$(sed -n 's|^boost_python_DIR:[A-Z]*=\(.*\)/cmake/boost_python-1.74.0$|\1|p' "$FORK/caffe-build/CMakeCache.txt")"
[ -f "$BOOST_PY_LIBDIR/libboost_python312.so.1.74.0" ] || die "libboost_python312 not found via $FORK/caffe-build/CMakeCache.txt"
export LD_LIBRARY_PATH="$FORK/install/lib:$BOOST_PY_LIBDIR:$PY_LIBDIR:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
SITE="$FORK/install/lib/python3/dist-packages"

rm -rf "$OUT"
mkdir -p "$OUT/bin" "$OUT/lib" "$OUT/python"
cp "$FORK/install/bin/caffe" "$OUT/bin/"
cp -P "$FORK"/install/lib/libcaffe.so* "$OUT/lib/"
# The NEEDED closure of the binary, libcaffe and _caffe.so, not descending into provided libraries.
roots=("$OUT/bin/caffe" "$OUT/lib/libcaffe.so" "$SITE/caffe/_caffe.so")
for exe in "${roots[@]}"; do
  if ldd "$exe" | grep 'not found'; then die "$exe: libraries not found here (above)"; fi
done
declare -A where
while read -r name path; do where[$name]="$path"; done < <(
  for exe in "${roots[@]}"; do ldd "$exe" | awk '/=> \// {print $1, $3}'; done | sort -u)
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
queue=($(for exe in "${roots[@]}"; do needed "$exe"; done))
while [ ${#queue[@]} -gt 0 ]; do
  name="${queue[0]}"
  queue=("${queue[@]:1}")
  [[ "$name" =~ $PROVIDED ]] || [ -e "$OUT/lib/$name" ] && continue
  [ -n "${where[$name]:-}" ] || die "cannot resolve $name"
  cp -L "${where[$name]}" "$OUT/lib/$name"
  queue+=($(needed "${where[$name]}"))
done
[ -f "$OUT/lib/libboost_python312.so.1.74.0" ] || die "libcaffe does not link libboost_python312 (not a device build?)"

# pycaffe without its tests; _caffe.so is a real file (the install tree has it, not the source-tree link).
cp -rL "$SITE/caffe" "$OUT/python/"
rm -rf "$OUT/python/caffe/test"
find "$OUT/python" -name __pycache__ -prune -exec rm -rf {} +
strip --strip-unneeded "$OUT"/lib/*.so* "$OUT/bin/caffe" "$OUT/python/caffe/_caffe.so" 2>/dev/null || true

# Wheels for CPython 3.12 on manylinux x86-64, whatever this machine's Python is.
wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
pins=()
for name in "${WHEELS[@]}"; do
  pin="$(grep -iE "^$name==" "$REPO/requirements.txt")" || die "requirements.txt pins no $name"
  pins+=("$pin")
done
"$VENV/bin/python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --abi cp312 --abi abi3 --abi none --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
  --platform any -d "$wheels" "${pins[@]}" || die "pip download of ${pins[*]} failed (PyPI reachable?)"
for wheel in "$wheels"/*.whl; do
  "$VENV/bin/python" -m zipfile -e "$wheel" "$OUT/python/"
done

cat >"$OUT/env.sh" <<'EOF'
# Source me (bash) on the device: the mfuse fork's device variant (tools/device/device_bundle.sh, docs/gpu.md).
# MFUSE_PYTHON picks the Python 3.12 (default python3); MFUSE_REPO the mfuse checkout (default: the bundle's
# grandparent, as in <repo>/.carry/device).
mfuse_bundle="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mfuse_repo="${MFUSE_REPO:-$(cd "$mfuse_bundle/../.." && pwd)}"
if ! mfuse_py_env="$("${MFUSE_PYTHON:-python3}" - <<'PY'
import os, site, sys, sysconfig
if sys.version_info[:2] != (3, 12):
    sys.exit(f"env.sh: this bundle is for Python 3.12, {sys.executable} is {sys.version.split()[0]}")
soname = sysconfig.get_config_var("INSTSONAME") or "libpython3.12.so.1.0"
dirs = [sysconfig.get_config_var("LIBDIR"), "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"]
libdir = next((d for d in dirs if d and os.path.exists(os.path.join(d, soname))), None)
if libdir is None:
    sys.exit(f"env.sh: no {soname} for {sys.executable} in {dirs}: libcaffe needs a shared libpython 3.12")
print(f"mfuse_py_libdir='{libdir}'")
print(f"mfuse_py_home='{sys.base_prefix}'")
print(f"mfuse_py_site='{os.pathsep.join(site.getsitepackages())}'")
PY
)"; then
  echo "env.sh: the device Python is not usable (see above)" >&2
  return 1 2>/dev/null || exit 1
fi
eval "$mfuse_py_env"
export LD_LIBRARY_PATH="$mfuse_bundle/lib:$mfuse_py_libdir:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$mfuse_bundle/bin:$PATH"
export PYTHONPATH="$mfuse_bundle/python:$mfuse_repo/python${PYTHONPATH:+:$PYTHONPATH}"
mfuse_nvidia_libs="@NVIDIA_LIBS@"
source "$mfuse_bundle/nvidia_libs.sh"
# For bin/caffe, whose embedded interpreter knows neither the device Python's home nor its (venv's) packages.
export MFUSE_PYTHONHOME="$mfuse_py_home" MFUSE_PYTHON_SITE="$mfuse_py_site" MFUSE_BUNDLE="$mfuse_bundle" \
  MFUSE_REPO="$mfuse_repo"
unset mfuse_py_env mfuse_py_libdir mfuse_py_home mfuse_py_site
if ldd "$mfuse_bundle/lib/libcaffe.so" "$mfuse_bundle/python/caffe/_caffe.so" | grep "not found" >&2; then
  echo "env.sh: libraries of libcaffe are missing on this machine (above); the bundle expects the machine's own" \
    "CUDA, cuDNN, NCCL, OpenBLAS, libprotobuf.so.32 (3.21), libhdf5_serial.so.103 (1.10) and libpython3.12" >&2
  return 1 2>/dev/null || exit 1
fi
EOF
mv "$OUT/bin/caffe" "$OUT/bin/caffe.bin"
cat >"$OUT/bin/caffe" <<'EOF'
#!/usr/bin/env bash
# The fork's caffe; its embedded Python 3.12 gets the device Python's home and packages (source env.sh first).
: "${MFUSE_PYTHONHOME:?source the bundle env.sh first}"
export PYTHONHOME="$MFUSE_PYTHONHOME" PYTHONPATH="$PYTHONPATH:$MFUSE_PYTHON_SITE"
exec "$(dirname "${BASH_SOURCE[0]}")/caffe.bin" "$@"
EOF
chmod +x "$OUT/bin/caffe"
sed -i "s/@NVIDIA_LIBS@/$(nvidia_libs_of "$OUT/lib/libcaffe.so")/" "$OUT/env.sh"
cp "$REPO/tools/device/nvidia_libs.sh" "$OUT/"
cp "$REPO/tools/device/device_checks.sh" "$OUT/run_device_checks.sh"

# A tiny prepared dataset for the training run (written with this bundle's pycaffe: LMDB datums; one
# process: spawned pool workers cannot re-run a main script read from stdin).
data_tmp="$(mktemp -d)"
trap 'rm -rf "$wheels" "$data_tmp"' EXIT
PYTHONPATH="$OUT/python:$REPO/python" LD_LIBRARY_PATH="$OUT/lib:$LD_LIBRARY_PATH" "$VENV/bin/python" - "$data_tmp" <<'EOF'
import sys
from pathlib import Path

from mfuse.prep.frames import ExtractSettings
from mfuse.prep.pipeline import prepare_dataset
from mfuse.synthetic.generator import SyntheticConfig, generate
from mfuse.synthetic.layout import UCF101_LIST_DIR

root = Path(sys.argv[1])
generate(root / "dataset", SyntheticConfig(num_groups=4, clips_per_group=1, num_frames=14), progress=False)
summary = prepare_dataset("ucf101", root / "dataset", root / "dataset" / UCF101_LIST_DIR, root / "data",
                          ExtractSettings(short_side=None, flow_algorithm="dis"), splits=(1,), workers=1,
                          progress=False)
if summary.failures:
    sys.exit(f"device-bundle: preparing the tiny dataset failed for {len(summary.failures)} videos")
EOF
mkdir -p "$OUT/data"
cp -r "$data_tmp/data/lmdb" "$data_tmp/data/summary.json" "$OUT/data/"

du -sh "$OUT"
ls "$OUT/lib" "$OUT/python"
