# The fork build shared by tools/setup.sh and tools/device/device_build.sh (sourced, never run; see
# docs/fork-build.md). The caller sets REPO (the checkout), CACHE (the build cache), JOBS (compile jobs) and
# LOG_TAG (the prefix of its progress and error lines) before sourcing it.

T0=$SECONDS
stage() { printf '[%s %s] %s (%ds)\n' "$LOG_TAG" "$1" "$2" "$((SECONDS - T0))"; }
die() { printf '%s: ERROR: %s\n' "$LOG_TAG" "$*" >&2; exit 1; }

# make_venv VENV PYTHON LABEL: a venv at VENV made by PYTHON, with requirements.txt and mfuse (editable),
# reinstalled only when requirements.txt, pyproject.toml or the Python version change.
make_venv() {
  local venv="$1" python="$2" label="$3" want have
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv" || die "$python -m venv failed (python3-venv?)"
  want="$( { cat "$REPO/requirements.txt" "$REPO/pyproject.toml"; "$python" --version; } | sha256sum | cut -c1-16)"
  have="$(cat "$venv/.mfuse-requirements" 2>/dev/null || true)"
  if [ "$want" = "$have" ]; then
    stage "$label" "venv: $(basename "$venv") up to date"
    return
  fi
  stage "$label" "venv: installing requirements.txt into $(basename "$venv")"
  "$venv/bin/python" -m pip install -q --upgrade pip==25.3 || die "pip upgrade failed (PyPI reachable?)"
  "$venv/bin/python" -m pip install -q -r "$REPO/requirements.txt" || die "pip install -r requirements.txt failed"
  "$venv/bin/python" -m pip install -q --no-deps -e "$REPO" || die "pip install -e . failed"
  echo "$want" >"$venv/.mfuse-requirements"
}

# find_cuda: NVCC (nvcc on PATH, else /usr/local/cuda/bin/nvcc; empty when there is none) and CUDA_ROOT
# (its toolkit). Returns non-zero when there is no usable toolkit (nvcc and cuBLAS).
find_cuda() {
  NVCC="$(command -v nvcc || true)"
  [ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
  CUDA_ROOT=""
  [ -n "$NVCC" ] || return 1
  CUDA_ROOT="$(dirname "$(dirname "$NVCC")")"
  compgen -G "$CUDA_ROOT/lib*/libcublas.so*" >/dev/null
}

# header_version HEADER PREFIX: MAJOR.MINOR.PATCH from the #defines PREFIX_MAJOR, _MINOR and _PATCH(LEVEL).
header_version() {
  awk -v p="$2" '$1 == "#define" && $2 ~ "^" p "_(MAJOR|MINOR|PATCH|PATCHLEVEL)$" {v = v (v ? "." : "") $3}
    END {print v}' "$1"
}

# find_nvidia_lib NAME HEADER LIB ROOT_VAR: the install of an NVIDIA library (cuDNN, NCCL) as "ROOT VERSION":
# $ROOT_VAR when set (which must hold it), else the CUDA toolkit, else /usr; nothing when none has it.
find_nvidia_lib() {
  local name="$1" header="$2" lib="$3" var="$4" root version_header
  local given="${!var:-}"
  for root in ${given:+"$given"} "$CUDA_ROOT" /usr; do
    if [ -f "$root/include/$header" ] && { compgen -G "$root/lib*/$lib.so*" >/dev/null || \
         compgen -G "$root/lib/*-linux-gnu/$lib.so*" >/dev/null; }; then
      root="$(readlink -f "$root")"
      version_header="$root/include/$header"
      [ "$name" = cuDNN ] && [ -f "$root/include/cudnn_version.h" ] && version_header="$root/include/cudnn_version.h"
      echo "$root $(header_version "$version_header" "$(echo "$name" | tr a-z A-Z)")"
      return
    fi
    if [ -n "$given" ] && [ "$root" = "$given" ]; then
      die "$var=$given has no include/$header and lib/$lib.so*"
    fi
  done
}

# cuda_features VARIANT: sets CUDA_ARGS (CMake arguments: toolkit, cuDNN, NCCL) and CUDA_KEY (what the build
# key must cover) for a CUDA variant. cuDNN and NCCL are used when the toolkit (or CUDNN_ROOT, NCCL_ROOT, /usr)
# has them, except cuDNN in the variant cuda-nocudnn.
cuda_features() {
  local variant="$1" cudnn="" nccl="" summary
  CUDA_ARGS=(-DMFUSE_WITH_CUDA=ON -DCUDA_TOOLKIT_ROOT_DIR="$CUDA_ROOT")
  summary="CUDA $("$NVCC" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
  if [ "$variant" != cuda-nocudnn ]; then
    cudnn="$(find_nvidia_lib cuDNN cudnn.h libcudnn CUDNN_ROOT)" || exit 1
  fi
  nccl="$(find_nvidia_lib NCCL nccl.h libnccl NCCL_ROOT)" || exit 1
  if [ -n "$cudnn" ]; then
    CUDA_ARGS+=(-DMFUSE_WITH_CUDNN=ON -DCUDNN_ROOT="${cudnn% *}")
    summary+=" + cuDNN ${cudnn#* } (${cudnn% *})"
  elif [ "$variant" = cuda-nocudnn ]; then
    summary+=", no cuDNN (--no-cudnn)"
  else
    summary+=", no cuDNN (none in the toolkit or /usr; set CUDNN_ROOT)"
  fi
  if [ -n "$nccl" ]; then
    CUDA_ARGS+=(-DMFUSE_WITH_NCCL=ON -DNCCL_ROOT="${nccl% *}")
    summary+=" + NCCL ${nccl#* } (${nccl% *})"
  else
    summary+=", no NCCL: no multi-GPU training (none in the toolkit or /usr; set NCCL_ROOT)"
  fi
  CUDA_SUMMARY="$summary"
  CUDA_KEY="$("$NVCC" --version | tail -2) cudnn=$cudnn nccl=$nccl"
}

# build_fork VARIANT LABEL LINK KEEP KEY_EXTRA [CMAKE_ARG...]: the fork built through CMakeLists.txt with the
# given CMake arguments into <cache>/fork-VARIANT-<key>, where the key hashes every build input (upstream
# sums, patches, overlay, CMake files, the arguments, compilers, the numpy pin, KEY_EXTRA). A build is reused
# only when it holds the COMPLETE stamp; one key is built by one process at a time (flock); LINK points to
# it. Cleanup keeps the KEEP newest builds of VARIANT, and never deletes one that another process holds or
# that a link still points to (each LINK is recorded in <build>.users/: the cache is shared by every
# checkout). FORK_CHECK, when set, names a function run on the finished build (its directory as argument)
# before the stamp. Sets FORK_DIR.
build_fork() {
  local variant="$1" label="$2" link="$3" keep="$4" key_extra="$5" key dir lock_fd
  shift 5
  local args=(-DMFUSE_DOWNLOAD_DIR="$CACHE/downloads" -DMFUSE_JOBS="$JOBS" "$@")
  key="$( {
    echo "variant=$variant"
    (cd "$REPO" && find CMakeLists.txt cmake patches layers -type f -print0 | sort -z | xargs -0 sha256sum)
    printf '%s\n' "${args[@]}" "$key_extra"
    g++ --version | head -1
    cmake --version | head -1
    grep -E '^numpy==' "$REPO/requirements.txt"
  } | sha256sum | cut -c1-16)"
  dir="$CACHE/fork-$variant-$key"
  FORK_DIR="$dir"
  exec {lock_fd}>"$dir.lock"
  if ! flock -n "$lock_fd"; then
    stage "$label" "fork ($variant): another process is building $dir; waiting for it"
    flock "$lock_fd"
  fi
  if [ -f "$dir/COMPLETE" ]; then
    stage "$label" "fork ($variant): cached build $dir"
  else
    # Anything without the COMPLETE stamp is half-built: never reuse it.
    rm -rf "$dir"
    stage "$label" "fork ($variant): building into $dir (log: $dir.log)"
    export CCACHE_DIR="$CACHE/ccache" CCACHE_BASEDIR="$CACHE" CCACHE_NOHASHDIR=true CCACHE_MAXSIZE=5G
    if [ "$variant" != cpu ]; then
      # FindCUDA calls nvcc itself; a wrapper puts ccache in front of it. FindCUDA drops a
      # -DCUDA_NVCC_EXECUTABLE on its first configure but reads the environment variable.
      mkdir -p "$CACHE/bin"
      printf '#!/bin/sh\nexec ccache "%s" "$@"\n' "$NVCC" >"$CACHE/bin/nvcc"
      chmod +x "$CACHE/bin/nvcc"
      export CUDA_NVCC_EXECUTABLE="$CACHE/bin/nvcc"
    fi
    if ! { cmake -S "$REPO" -B "$dir" "${args[@]}" && cmake --build "$dir"; } >"$dir.log" 2>&1; then
      grep -E "mfuse: |error|Error" "$dir.log" | head -20 >&2 || true
      die "the $variant fork build failed; full log: $dir.log"
    fi
    if [ "$variant" != cpu ] && ! grep -q "^CUDA_NVCC_EXECUTABLE:FILEPATH=$CACHE/bin/nvcc$" "$dir/caffe-build/CMakeCache.txt"; then
      echo "$LOG_TAG: warning: Caffe's FindCUDA did not take the ccache nvcc wrapper (rebuilds recompile CUDA)" >&2
    fi
    [ -z "${FORK_CHECK:-}" ] || "$FORK_CHECK" "$dir"
    touch "$dir/COMPLETE"
    stage "$label" "fork ($variant): built"
  fi
  ln -sfn "$dir" "$link"
  mkdir -p "$dir.users"
  ln -sfn "$link" "$dir.users/$(printf '%s' "$link" | sha256sum | cut -c1-16)"
  exec {lock_fd}>&-
  ls -dt "$CACHE"/fork-"$variant"-???????????????? 2>/dev/null | tail -n +"$((keep + 1))" | while read -r old; do
    build_in_use "$old" || ! flock -n "$old.lock" true 2>/dev/null || rm -rf "$old" "$old.log" "$old.lock" "$old.users"
  done
}

# build_in_use DIR: whether a link recorded in DIR.users/ (a checkout's .venv/mfuse-fork-*) still points to DIR.
build_in_use() {
  local user
  for user in "$1.users"/*; do
    [ -L "$user" ] && [ "$(readlink -f "$user")" = "$(readlink -f "$1")" ] && return 0
  done
  return 1
}

# nvidia_libs_of LIBRARY: which of cuDNN and NCCL it links, as "cudnn nccl" (the bundles leave both to the GPU
# machine; tools/device/nvidia_libs.sh finds them there).
nvidia_libs_of() {
  readelf -d "$1" | sed -n 's/.*(NEEDED).*\[lib\(cudnn\|nccl\)\.so.*/\1/p' | sort -u | tr '\n' ' ' | sed 's/ $//'
}
