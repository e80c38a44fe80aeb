#!/usr/bin/env bash
# One-command setup of mfuse on Debian 12: apt packages, the project venv (.venv) with pinned PyPI
# packages, and the Caffe fork (CPU; plus CUDA when nvcc and cuBLAS are present), built into a cache
# directory outside the repo keyed by a hash of every build input and reused when the key matches.
# --cudnn also builds a third variant, CUDA + cuDNN (cuDNN 8 or newer; opt-in, see docs/fork-build.md).
#
#   bash tools/setup.sh [--no-cuda] [--cudnn] [--no-apt]
#
# Environment: MFUSE_CACHE_DIR (default ~/.cache/mfuse), CAFFE_SOURCE_DIR (offline: an unpacked Caffe
# orig tarball with Debian's debian/ folder), MFUSE_JOBS (compile jobs, default: number of cores),
# CUDNN_ROOT (for --cudnn: the folder with include/cudnn.h and lib/libcudnn.so*; default: the CUDA
# toolkit's, then /usr).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${MFUSE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mfuse}"
JOBS="${MFUSE_JOBS:-$(nproc)}"
WITH_CUDA=auto
WITH_CUDNN=0
WITH_APT=1
for arg in "$@"; do
  case "$arg" in
    --no-cuda) WITH_CUDA=0 ;;
    --cudnn) WITH_CUDNN=1 ;;
    --no-apt) WITH_APT=0 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "setup: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

APT_PACKAGES=(build-essential cmake ccache patch xz-utils ca-certificates debian-archive-keyring
  libgoogle-glog-dev libgflags-dev libprotobuf-dev protobuf-compiler
  libboost-system-dev libboost-thread-dev libboost-filesystem-dev libboost-python-dev
  libhdf5-dev liblmdb-dev libleveldb-dev libsnappy-dev libopenblas-dev libopencv-dev
  python3-dev python3-venv)

T0=$SECONDS
stage() { printf '[setup %s] %s (%ds)\n' "$1" "$2" "$((SECONDS - T0))"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

install_apt_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    stage 1/4 "apt packages: all ${#APT_PACKAGES[@]} present"
    return
  fi
  [ "$WITH_APT" = 1 ] || die "missing Debian packages (${missing[*]}) and --no-apt was given"
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "missing Debian packages (${missing[*]}); run as root or install sudo"
    sudo=sudo
  fi
  stage 1/4 "apt packages: installing ${missing[*]}"
  $sudo apt-get update -q >/dev/null || die "apt-get update failed (network or sources.list?)"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" \
    >"$CACHE/apt-install.log" 2>&1 || die "apt-get install failed; see $CACHE/apt-install.log"
}

# shellcheck source=tools/lib/venv.sh
source "$REPO/tools/lib/venv.sh"

# The key covers every input of the fork build: upstream sums, patches, overlay, CMake files, options,
# compilers, and the numpy whose headers pycaffe is compiled against.
build_key() {
  local variant="$1"
  {
    echo "variant=$variant"
    (cd "$REPO" && find CMakeLists.txt cmake patches layers -type f -print0 | sort -z | xargs -0 sha256sum)
    g++ --version | head -1
    cmake --version | head -1
    grep -E '^numpy==' "$REPO/requirements.txt"
    /usr/bin/python3 --version
    if [ "$variant" != cpu ]; then "$NVCC" --version | tail -2; fi
    if [ "$variant" = cudnn ]; then echo "cudnn=$CUDNN_ROOT $(cudnn_version "$CUDNN_ROOT")"; fi
  } | sha256sum | cut -c1-16
}

# cuDNN's version as MAJOR.MINOR.PATCH, from cudnn_version.h (cuDNN 8+) or cudnn.h under $1/include.
cudnn_version() {
  local header="$1/include/cudnn_version.h"
  [ -f "$header" ] || header="$1/include/cudnn.h"
  awk '/^#define CUDNN_(MAJOR|MINOR|PATCHLEVEL) / {v = v (v ? "." : "") $3} END {print v}' "$header"
}

# The cuDNN install for --cudnn: $CUDNN_ROOT, else the CUDA toolkit's, else /usr; symlinks resolved so
# that the build key and compiler flags do not depend on which link was used.
find_cudnn() {
  local root
  for root in ${CUDNN_ROOT:+"$CUDNN_ROOT"} "$(dirname "$(dirname "$NVCC")")" /usr; do
    if [ -f "$root/include/cudnn.h" ] && compgen -G "$root/lib*/libcudnn.so*" >/dev/null; then
      readlink -f "$root"
      return
    fi
    [ -n "${CUDNN_ROOT:-}" ] && [ "$root" = "$CUDNN_ROOT" ] && \
      die "CUDNN_ROOT=$CUDNN_ROOT has no include/cudnn.h and lib/libcudnn.so*"
  done
  die "--cudnn: no cuDNN found (include/cudnn.h + lib/libcudnn.so*) in the CUDA toolkit or /usr; set CUDNN_ROOT"
}

build_fork() {
  local variant="$1" key dir cuda_flag=OFF
  key="$(build_key "$variant")"
  dir="$CACHE/fork-$variant-$key"
  [ "$variant" != cpu ] && cuda_flag=ON
  # One build per key at a time: a second setup.sh (another checkout of the repo) waits for the first
  # instead of wiping its half-built tree.
  local lock_fd
  exec {lock_fd}>"$dir.lock"
  if ! flock -n "$lock_fd"; then
    stage "$2" "fork ($variant): another setup is building $dir; waiting for it"
    flock "$lock_fd"
  fi
  if [ -f "$dir/COMPLETE" ]; then
    stage "$2" "fork ($variant): cached build $dir"
  else
    # Anything without the COMPLETE stamp is half-built: never reuse it.
    rm -rf "$dir"
    stage "$2" "fork ($variant): building from nothing into $dir (log: $dir.log)"
    export CCACHE_DIR="$CACHE/ccache" CCACHE_BASEDIR="$CACHE" CCACHE_NOHASHDIR=true CCACHE_MAXSIZE=5G
    local cuda_args=()
    if [ "$variant" != cpu ]; then
      # FindCUDA calls nvcc itself; a wrapper puts ccache in front of it. FindCUDA drops a
      # -DCUDA_NVCC_EXECUTABLE on its first configure but reads the environment variable.
      mkdir -p "$CACHE/bin"
      printf '#!/bin/sh\nexec ccache "%s" "$@"\n' "$NVCC" >"$CACHE/bin/nvcc"
      chmod +x "$CACHE/bin/nvcc"
      export CUDA_NVCC_EXECUTABLE="$CACHE/bin/nvcc"
      cuda_args=(-DCUDA_TOOLKIT_ROOT_DIR="$(dirname "$(dirname "$NVCC")")")
    fi
    [ "$variant" = cudnn ] && cuda_args+=(-DMFUSE_WITH_CUDNN=ON -DCUDNN_ROOT="$CUDNN_ROOT")
    if ! { cmake -S "$REPO" -B "$dir" -DMFUSE_PYTHON="$REPO/.venv/bin/python" -DMFUSE_WITH_CUDA=$cuda_flag \
             -DMFUSE_DOWNLOAD_DIR="$CACHE/downloads" -DMFUSE_JOBS="$JOBS" "${cuda_args[@]}" \
           && cmake --build "$dir"; } >"$dir.log" 2>&1; then
      grep -E "mfuse: |error|Error" "$dir.log" | head -20 >&2 || true
      die "the $variant fork build failed; full log: $dir.log"
    fi
    touch "$dir/COMPLETE"
    stage "$2" "fork ($variant): built"
  fi
  ln -sfn "$dir" "$REPO/.venv/mfuse-fork-$variant"
  exec {lock_fd}>&-
  # Keep the eight newest builds of each variant; never one that another setup holds (its lock is taken).
  ls -dt "$CACHE"/fork-"$variant"-???????????????? 2>/dev/null | tail -n +9 | while read -r old; do
    if flock -n "$old.lock" true 2>/dev/null; then rm -rf "$old" "$old.log" "$old.lock"; fi
  done
}

link_fork_into_venv() {
  local prefix="$REPO/.venv/mfuse-fork-cpu/install" site
  site="$("$REPO/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "$prefix/lib/python3/dist-packages" >"$site/mfuse_caffe.pth"
  # The caffe binary embeds the system libpython: Python layers need pycaffe, mfuse and the venv's
  # packages on PYTHONPATH.
  cat >"$REPO/.venv/bin/caffe" <<EOF
#!/usr/bin/env bash
# mfuse launcher for the fork's caffe binary (written by tools/setup.sh).
export PYTHONPATH="$prefix/lib/python3/dist-packages:$REPO/python:$site\${PYTHONPATH:+:\$PYTHONPATH}"
exec "$prefix/bin/caffe" "\$@"
EOF
  chmod +x "$REPO/.venv/bin/caffe"
}

mkdir -p "$CACHE"
install_apt_packages
make_venv "$REPO/.venv" /usr/bin/python3 2/4

NVCC="$(command -v nvcc || true)"
[ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
have_cuda() { [ -n "$NVCC" ] && ls "$(dirname "$(dirname "$NVCC")")"/lib64/libcublas.so* >/dev/null 2>&1; }
if [ "$WITH_CUDA" = auto ]; then
  WITH_CUDA=0
  have_cuda && WITH_CUDA=1
fi
if [ "$WITH_CUDNN" = 1 ]; then
  have_cuda || die "--cudnn needs the CUDA toolkit (nvcc and cuBLAS on PATH or in /usr/local/cuda)"
  CUDNN_ROOT="$(find_cudnn)"
fi

build_fork cpu 3/4
link_fork_into_venv
if [ "$WITH_CUDA" = 1 ]; then
  build_fork cuda 4/4
else
  stage 4/4 "fork (cuda): skipped (no nvcc + cuBLAS, or --no-cuda)"
fi
if [ "$WITH_CUDNN" = 1 ]; then
  build_fork cudnn 4/4
fi
"$REPO/.venv/bin/python" -c "import caffe" || die "import caffe fails in .venv after the build"
stage done "ready: source .venv/bin/activate; caffe --version"
