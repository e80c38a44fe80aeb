# Sourced by the env.sh of a bundle (tools/device/gpu_bundle.sh, tools/device/device_bundle.sh) on the GPU
# machine, which has cuDNN and NCCL as pip wheels (nvidia-cudnn-cu13, nvidia-nccl-cu13 in its PyTorch venv)
# rather than in the loader's paths; the bundles never pack them. For each library in $mfuse_nvidia_libs
# (written into env.sh at bundle time: what libcaffe links), the folder comes from MFUSE_CUDNN_LIB /
# MFUSE_NCCL_LIB, else the lib/ folder of the package nvidia.cudnn / nvidia.nccl that ${MFUSE_PYTHON:-python3}
# imports, else the loader's own paths (ldconfig); none of them -> one line saying which variable to set.
for mfuse_lib in $mfuse_nvidia_libs; do
  mfuse_var="MFUSE_$(echo "$mfuse_lib" | tr '[:lower:]' '[:upper:]')_LIB"
  mfuse_dir="${!mfuse_var:-}"
  if [ -z "$mfuse_dir" ]; then
    mfuse_dir="$("${MFUSE_PYTHON:-python3}" -c "import os, nvidia.$mfuse_lib as m; print(os.path.join(list(m.__path__)[0], 'lib'))" 2>/dev/null || true)"
  fi
  if [ -n "$mfuse_dir" ] && compgen -G "$mfuse_dir/lib$mfuse_lib.so*" >/dev/null; then
    export LD_LIBRARY_PATH="$mfuse_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  elif ! ldconfig -p 2>/dev/null | grep -q "lib$mfuse_lib\.so"; then
    echo "env.sh: lib$mfuse_lib not found: set $mfuse_var to the folder holding it (pip wheel nvidia-$mfuse_lib-cu13)" >&2
  fi
done
# NCCL's NVLink multicast (NVLS) stays off in everything that starts NCCL (docs/gpu.md).
export NCCL_NVLS_ENABLE="${NCCL_NVLS_ENABLE:-0}"
unset mfuse_lib mfuse_var mfuse_dir
