#!/usr/bin/env bash
# Developer tool, not part of the README's setup: builds the *device variant* of the fork — CUDA (+ cuDNN and
# NCCL when the toolkit has them, as the default CUDA variant of tools/setup.sh) + Python 3.12 — for the lent
# GPU machine (Ubuntu 24.04, Python 3.12, none of Caffe's dependencies). Debian 12 has no Python 3.12, so this
# needs one with a shared libpython and headers (a pyenv 3.12 built with --enable-shared has both). Then
# `bash tools/device/device_bundle.sh` packs the build for the device; docs/gpu.md explains the whole route.
#
#   MFUSE_DEVICE_PYTHON=/path/to/python3.12 bash tools/device/device_build.sh
#
# Steps (each reused when its inputs are unchanged):
#   1. .venv-device/: a venv of that Python with requirements.txt (numpy's headers build pycaffe; the tests
#      and data tools run in it here);
#   2. Boost.Python 1.74 for 3.12: Debian bookworm's boost1.74 source package (apt-get source with a private
#      configuration; sums in tools/device/boost1.74.sha256), Debian's Python patches, libs/python/src
#      compiled against the system's Boost 1.74 headers -> <cache>/boost-python312-<key>/;
#   3. the fork through tools/lib/build.sh (as tools/setup.sh builds it) with CUDA, cuDNN, NCCL and
#      MFUSE_EXTRA_CAFFE_ARGS naming that Python and Boost.Python -> <cache>/fork-device-<key>/;
#      .venv-device/mfuse-fork-device links to it.
# Environment: MFUSE_DEVICE_PYTHON (default: python3.12 on PATH, else the newest pyenv 3.12), MFUSE_CACHE_DIR
# (default ~/.cache/mfuse), MFUSE_JOBS (default: number of cores), CUDNN_ROOT, NCCL_ROOT (as for setup.sh).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${MFUSE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mfuse}"
JOBS="${MFUSE_JOBS:-$(nproc)}"
LOG_TAG=device-build
VENV="$REPO/.venv-device"
SUMS="$REPO/tools/device/boost1.74.sha256"
BOOST_VERSION="1.74.0+ds1-21"  # Debian 12's boost1.74: its headers are in /usr/include
BOOST_ORIG="boost1.74_1.74.0+ds1.orig.tar.xz"
BOOST_DEBIAN="boost1.74_${BOOST_VERSION}.debian.tar.xz"
# shellcheck source=tools/lib/build.sh
source "$REPO/tools/lib/build.sh"

find_python() {
  local py="${MFUSE_DEVICE_PYTHON:-}"
  if [ -z "$py" ]; then
    py="$(command -v python3.12 || true)"
  fi
  if [ -z "$py" ] && command -v pyenv >/dev/null; then
    py="$(ls -d "$(pyenv root)"/versions/3.12.*/bin/python3.12 2>/dev/null | sort -V | tail -1 || true)"
  fi
  [ -n "$py" ] && [ -x "$py" ] || die "no Python 3.12 found: set MFUSE_DEVICE_PYTHON (e.g. a pyenv 3.12 built with --enable-shared)"
  "$py" - <<'EOF' || die "$py is not a usable Python 3.12 (see above)"
import os, sys, sysconfig
v = sysconfig.get_config_var
problems = []
if sys.version_info[:2] != (3, 12):
    problems.append(f"version {sys.version.split()[0]}, need 3.12")
if not v("Py_ENABLE_SHARED") or not os.path.exists(os.path.join(v("LIBDIR"), v("LDLIBRARY"))):
    problems.append("no shared libpython (build it with --enable-shared)")
if not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")):
    problems.append("no Python.h")
if problems:
    sys.exit(f"device-build: {sys.executable}: " + "; ".join(problems))
EOF
  PY="$py"
  PY_LIBDIR="$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')"
  PY_LIBRARY="$PY_LIBDIR/$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LDLIBRARY"))')"
  PY_INCLUDE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  stage 0/3 "Python: $PY ($PY_LIBRARY)"
}

# Debian's source package through apt's own client (signature-checked), with a private configuration: the
# system's sources are never touched. Then the sums committed in tools/device/boost1.74.sha256.
boost_sources() {
  local dl="$CACHE/downloads" apt_dir="$CACHE/downloads/apt-bookworm"
  mkdir -p "$dl"
  if [ ! -f "$dl/$BOOST_ORIG" ] || [ ! -f "$dl/$BOOST_DEBIAN" ]; then
    mkdir -p "$apt_dir/lists/partial"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main" \
      >"$apt_dir/sources.list"
    local opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
                -o "Dir::State::Lists=$apt_dir/lists" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
    apt-get "${opts[@]}" -q update >/dev/null || die "apt-get update of the private bookworm deb-src list failed (network?)"
    (cd "$dl" && apt-get "${opts[@]}" -q source --download-only "boost1.74=$BOOST_VERSION" >/dev/null) \
      || die "apt-get source boost1.74=$BOOST_VERSION failed"
  fi
  (cd "$dl" && sha256sum --quiet -c "$SUMS") || {
    rm -f "$dl/$BOOST_ORIG" "$dl/$BOOST_DEBIAN"
    die "checksum mismatch for the boost1.74 tarballs (tools/device/boost1.74.sha256); deleted, run again to re-download"
  }
}

build_boost_python() {
  local key work src obj
  key="$( { cat "$SUMS" "$REPO/tools/device/boost_python-config.cmake"; sed -n '/^build_boost_python()/,/^}/p' "$REPO/tools/device/device_build.sh";
            g++ --version | head -1; "$PY" --version; } | sha256sum | cut -c1-16)"
  BOOST_PY="$CACHE/boost-python312-$key"
  if [ -f "$BOOST_PY/COMPLETE" ]; then
    stage 2/3 "Boost.Python 3.12: cached build $BOOST_PY"
    return
  fi
  rm -rf "$BOOST_PY"
  boost_sources
  stage 2/3 "Boost.Python 3.12: building into $BOOST_PY"
  work="$BOOST_PY/work"
  mkdir -p "$work" "$BOOST_PY/lib/cmake/boost_python-1.74.0"
  tar xJf "$CACHE/downloads/$BOOST_DEBIAN" -C "$work" debian/patches
  tar xJf "$CACHE/downloads/$BOOST_ORIG" -C "$work" boost/libs/python
  src="$work/boost"
  # Debian's patches that touch Boost.Python, in series order (the others are for other libraries).
  grep -v '^#' "$work/debian/patches/series" | while read -r name; do
    [ -n "$name" ] && grep -q '^+++ .*libs/python/' "$work/debian/patches/$name" || continue
    patch -d "$src" -p1 --forward --batch --quiet -i "$work/debian/patches/$name" \
      || die "Debian patch $name does not apply to libs/python"
  done
  # The library is compiled against /usr/include: its patched headers must be the ones shipped there.
  diff -r "$src/libs/python/include/boost/python" /usr/include/boost/python >/dev/null \
    || die "Boost.Python headers of $BOOST_ORIG + Debian patches differ from /usr/include/boost/python (libboost-python1.74-dev $BOOST_VERSION?)"
  obj="$work/obj"
  mkdir -p "$obj"
  (cd "$src/libs/python/src" && ls *.cpp converter/*.cpp object/*.cpp) | \
    xargs -P "$JOBS" -I{} sh -c 'g++ -O2 -fPIC -DNDEBUG -DBOOST_PYTHON_SOURCE -DBOOST_PYTHON_DYN_LINK=1 \
      -DBOOST_ALL_NO_LIB=1 -I"$1" -c "$2/{}" -o "$3/$(echo {} | tr / _).o"' _ "$PY_INCLUDE" "$src/libs/python/src" "$obj" \
    || die "compiling Boost.Python for Python 3.12 failed"
  # Like Debian's libboost_python311: libpython is not linked (the interpreter or libcaffe provides it).
  g++ -shared -Wl,-soname,libboost_python312.so.1.74.0 -Wl,-O1 -o "$BOOST_PY/lib/libboost_python312.so.1.74.0" \
    "$obj"/*.o || die "linking libboost_python312.so failed"
  ln -s libboost_python312.so.1.74.0 "$BOOST_PY/lib/libboost_python312.so"
  cp "$REPO/tools/device/boost_python-config.cmake" "$BOOST_PY/lib/cmake/boost_python-1.74.0/"
  cp /usr/lib/x86_64-linux-gnu/cmake/boost_python-1.74.0/boost_python-config-version.cmake \
    "$BOOST_PY/lib/cmake/boost_python-1.74.0/"
  rm -rf "$work"
  touch "$BOOST_PY/COMPLETE"
}

# The build must link the Boost.Python of step 2, not Debian's for 3.11.
check_device_build() {
  readelf -d "$1/install/lib/libcaffe.so" | grep -q "libboost_python312" \
    || die "libcaffe.so does not link Boost.Python 3.12 (Caffe's CMake took another; see $1.log)"
}

find_cuda || die "no CUDA toolkit (nvcc and cuBLAS on PATH or in /usr/local/cuda): the device variant is a CUDA build"
mkdir -p "$CACHE"
find_python
make_venv "$VENV" "$PY" 1/3
build_boost_python
cuda_features device
stage 3/3 "fork (device): $CUDA_SUMMARY"
# Caffe's own CMake: python_version=3.12 makes it ask Boost for component python312, which Debian's
# BoostConfig looks up as boost_python_DIR; FindPythonLibs would find Debian's 3.11, so name 3.12's.
extra="-Dpython_version=3.12;-Dboost_python_DIR=$BOOST_PY/lib/cmake/boost_python-1.74.0"
extra+=";-DPYTHON_LIBRARY=$PY_LIBRARY;-DPYTHON_INCLUDE_DIR=$PY_INCLUDE"
FORK_CHECK=check_device_build build_fork device 3/3 "$VENV/mfuse-fork-device" 2 "$("$PY" --version) $BOOST_PY $CUDA_KEY" \
  -DMFUSE_PYTHON="$VENV/bin/python" "${CUDA_ARGS[@]}" "-DMFUSE_EXTRA_CAFFE_ARGS=$extra"
stage done "device build ready: $VENV/mfuse-fork-device; now bash tools/device/device_bundle.sh"
