#!/usr/bin/env bash
# One-command setup of mfuse on Debian 12: apt packages, the project venv (.venv) with pinned PyPI
# packages, and the Caffe fork: CPU, plus CUDA when nvcc and cuBLAS are present — with cuDNN and NCCL
# (multi-GPU) when the toolkit (or /usr, CUDNN_ROOT, NCCL_ROOT) has them. Each is built into a cache directory
# outside the repo keyed by a hash of every build input and reused when the key matches (docs/fork-build.md).
#
#   bash tools/setup.sh [--no-cuda] [--no-cudnn] [--no-apt]
#
#   --no-cuda    CPU variant only
#   --no-cudnn   the CUDA variant without cuDNN (variant cuda-nocudnn, .venv/mfuse-fork-cuda-nocudnn)
#                instead of the default one
#   --no-apt     fail instead of installing missing Debian packages
#
# Environment: MFUSE_CACHE_DIR (default ~/.cache/mfuse), CAFFE_SOURCE_DIR (offline: an unpacked Caffe
# orig tarball with Debian's debian/ folder), MFUSE_JOBS (compile jobs, default: number of cores),
# CUDNN_ROOT / NCCL_ROOT (the folders with include/ and lib/ of cuDNN / NCCL; default: the CUDA toolkit's,
# then /usr), MFUSE_VENV_FORK (cpu or cuda: the build the venv's pycaffe and caffe launcher use; default cuda
# when it is built and an NVIDIA driver is installed, else cpu).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${MFUSE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mfuse}"
JOBS="${MFUSE_JOBS:-$(nproc)}"
LOG_TAG=setup
CUDA_VARIANT=cuda
WITH_CUDA=auto
WITH_APT=1
for arg in "$@"; do
  case "$arg" in
    --no-cuda) WITH_CUDA=0 ;;
    --no-cudnn) CUDA_VARIANT=cuda-nocudnn ;;
    --cudnn) echo "setup: note: --cudnn is the default now (the CUDA variant has cuDNN when the toolkit does)" ;;
    --no-apt) WITH_APT=0 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "setup: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done
# shellcheck source=tools/lib/build.sh
source "$REPO/tools/lib/build.sh"

APT_PACKAGES=(build-essential cmake ccache patch xz-utils ca-certificates debian-archive-keyring
  libgoogle-glog-dev libgflags-dev libprotobuf-dev protobuf-compiler
  libboost-system-dev libboost-thread-dev libboost-filesystem-dev libboost-python-dev
  libhdf5-dev liblmdb-dev libleveldb-dev libsnappy-dev libopenblas-dev libopencv-dev
  python3-dev python3-venv)

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

# The build the venv uses (pycaffe, the caffe launcher): MFUSE_VENV_FORK, else the CUDA variant when it was
# built and the machine has an NVIDIA driver (libcuda.so.1 known to the loader), else the CPU variant.
venv_fork_variant() {
  case "${MFUSE_VENV_FORK:-}" in
    cpu) echo cpu; return ;;
    cuda) [ "$WITH_CUDA" = 1 ] || die "MFUSE_VENV_FORK=cuda but no CUDA variant is built (no toolkit, or --no-cuda)"
          echo "$CUDA_VARIANT"; return ;;
    "") ;;
    *) die "MFUSE_VENV_FORK must be cpu or cuda, got '$MFUSE_VENV_FORK'" ;;
  esac
  if [ "$WITH_CUDA" = 1 ] && { ldconfig -p || /sbin/ldconfig -p; } 2>/dev/null | grep -q 'libcuda\.so\.1 '; then
    echo "$CUDA_VARIANT"
  else
    echo cpu
  fi
}

# pycaffe of the chosen build on the venv's path, and .venv/bin/caffe: its binary with PYTHONPATH holding
# pycaffe, mfuse and the venv's packages (the binary embeds the system libpython, which knows neither).
link_fork_into_venv() {
  local variant="$1" prefix="$REPO/.venv/mfuse-fork-$1/install" site
  site="$("$REPO/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "$prefix/lib/python3/dist-packages" >"$site/mfuse_caffe.pth"
  cat >"$REPO/.venv/bin/caffe" <<EOF
#!/usr/bin/env bash
# mfuse launcher for the fork's caffe binary ($variant build; written by tools/setup.sh).
export PYTHONPATH="$prefix/lib/python3/dist-packages:$REPO/python:$site\${PYTHONPATH:+:\$PYTHONPATH}"
# NCCL's NVLink multicast (NVLS) stays off in everything that starts NCCL (docs/gpu.md).
export NCCL_NVLS_ENABLE="\${NCCL_NVLS_ENABLE:-0}"
exec "$prefix/bin/caffe" "\$@"
EOF
  chmod +x "$REPO/.venv/bin/caffe"
  stage "$2" "venv: pycaffe and .venv/bin/caffe use the $variant build"
}

mkdir -p "$CACHE"
install_apt_packages
make_venv "$REPO/.venv" /usr/bin/python3 2/4

if [ "$WITH_CUDA" = auto ]; then
  WITH_CUDA=0
  find_cuda && WITH_CUDA=1
fi

build_fork cpu 3/4 "$REPO/.venv/mfuse-fork-cpu" 8 "$(/usr/bin/python3 --version)" \
  -DMFUSE_PYTHON="$REPO/.venv/bin/python"
link_fork_into_venv cpu 3/4
if [ "$WITH_CUDA" = 1 ]; then
  cuda_features "$CUDA_VARIANT"
  stage 4/4 "fork ($CUDA_VARIANT): $CUDA_SUMMARY"
  build_fork "$CUDA_VARIANT" 4/4 "$REPO/.venv/mfuse-fork-$CUDA_VARIANT" 8 "$(/usr/bin/python3 --version) $CUDA_KEY" \
    -DMFUSE_PYTHON="$REPO/.venv/bin/python" "${CUDA_ARGS[@]}"
else
  stage 4/4 "fork (cuda): skipped (no nvcc + cuBLAS, or --no-cuda)"
fi
venv_variant="$(venv_fork_variant)" || exit 1
[ "$venv_variant" = cpu ] || link_fork_into_venv "$venv_variant" 4/4
"$REPO/.venv/bin/python" -c "import caffe" || die "import caffe fails in .venv after the build"
stage done "ready: source .venv/bin/activate; caffe --version"
