"""tools/lib/build.sh, the shell library of setup.sh and device_build.sh: which CUDA variant it configures.

The default CUDA variant has cuDNN and NCCL when the toolkit has them; cuda-nocudnn leaves cuDNN out; a
CUDNN_ROOT or NCCL_ROOT that does not hold the library stops with one line. Checked on fake toolkits.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def fake_toolkit(root: Path, cudnn: bool = True, nccl: bool = True) -> Path:
    """A folder that looks like a CUDA 13.0 toolkit to find_cuda (nvcc, cuBLAS), with cuDNN 9.19.0 and NCCL
    2.28.9 headers and libraries when asked."""
    (root / "bin").mkdir(parents=True)
    (root / "include").mkdir()
    (root / "lib").mkdir()
    nvcc = root / "bin" / "nvcc"
    nvcc.write_text("#!/bin/sh\necho 'Cuda compilation tools, release 13.0, V13.0.88'\necho 'Build cuda_13.0'\n")
    nvcc.chmod(0o755)
    (root / "lib" / "libcublas.so.13").touch()
    if cudnn:
        (root / "include" / "cudnn.h").write_text('#include "cudnn_version.h"\n')
        (root / "include" / "cudnn_version.h").write_text(
            "#define CUDNN_MAJOR 9\n#define CUDNN_MINOR 19\n#define CUDNN_PATCHLEVEL 0\n")
        (root / "lib" / "libcudnn.so.9").touch()
    if nccl:
        (root / "include" / "nccl.h").write_text(
            "#define NCCL_MAJOR 2\n#define NCCL_MINOR 28\n#define NCCL_PATCH 9\n#define NCCL_SUFFIX \"\"\n")
        (root / "lib" / "libnccl.so.2").touch()
    return root


def configure(toolkit: Path, variant: str, **env: str) -> subprocess.CompletedProcess:
    """Runs find_cuda + cuda_features VARIANT with only the fake toolkit's nvcc on PATH; prints the summary
    line, then the CMake arguments one per line."""
    script = (f'REPO={REPO}; LOG_TAG=test; source {REPO}/tools/lib/build.sh; find_cuda || die "no toolkit"; '
              f'cuda_features {variant}; echo "$CUDA_SUMMARY"; printf "%s\\n" "${{CUDA_ARGS[@]}}"')
    environment = {key: value for key, value in os.environ.items() if key not in ("CUDNN_ROOT", "NCCL_ROOT")}
    environment.update(PATH=f"{toolkit}/bin:/usr/bin:/bin", **env)
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=environment, timeout=60)


def test_default_cuda_variant_takes_cudnn_and_nccl_from_the_toolkit(tmp_path):
    toolkit = fake_toolkit(tmp_path / "cuda")
    result = configure(toolkit, "cuda")
    assert result.returncode == 0, result.stderr
    summary, *args = result.stdout.splitlines()
    assert summary == f"CUDA 13.0 + cuDNN 9.19.0 ({toolkit}) + NCCL 2.28.9 ({toolkit})"
    assert args == ["-DMFUSE_WITH_CUDA=ON", f"-DCUDA_TOOLKIT_ROOT_DIR={toolkit}", "-DMFUSE_WITH_CUDNN=ON",
                    f"-DCUDNN_ROOT={toolkit}", "-DMFUSE_WITH_NCCL=ON", f"-DNCCL_ROOT={toolkit}"]


def test_nocudnn_variant_leaves_cudnn_out_but_keeps_nccl(tmp_path):
    result = configure(fake_toolkit(tmp_path / "cuda"), "cuda-nocudnn")
    assert result.returncode == 0, result.stderr
    summary, *args = result.stdout.splitlines()
    assert "no cuDNN (--no-cudnn)" in summary and "NCCL 2.28.9" in summary
    assert not any("CUDNN" in arg for arg in args) and "-DMFUSE_WITH_NCCL=ON" in args


@pytest.mark.skipif(Path("/usr/include/nccl.h").exists() or Path("/usr/include/cudnn.h").exists(),
                    reason="/usr has cuDNN or NCCL, which the lookup falls back to")
def test_toolkit_without_nccl_says_so_in_one_line(tmp_path):
    result = configure(fake_toolkit(tmp_path / "cuda", cudnn=False, nccl=False), "cuda")
    assert result.returncode == 0, result.stderr
    summary, *args = result.stdout.splitlines()
    assert "no cuDNN (none in the toolkit or /usr; set CUDNN_ROOT)" in summary
    assert "no NCCL: no multi-GPU training (none in the toolkit or /usr; set NCCL_ROOT)" in summary
    assert args == ["-DMFUSE_WITH_CUDA=ON", f"-DCUDA_TOOLKIT_ROOT_DIR={tmp_path / 'cuda'}"]


def test_nccl_root_elsewhere_is_used(tmp_path):
    toolkit = fake_toolkit(tmp_path / "cuda", nccl=False)
    nccl = fake_toolkit(tmp_path / "nccl", cudnn=False)
    result = configure(toolkit, "cuda", NCCL_ROOT=str(nccl))
    assert result.returncode == 0, result.stderr
    assert f"-DNCCL_ROOT={nccl}" in result.stdout.splitlines()


@pytest.mark.parametrize("var", ["NCCL_ROOT", "CUDNN_ROOT"])
def test_a_root_without_its_library_stops_with_one_line(tmp_path, var):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = configure(fake_toolkit(tmp_path / "cuda"), "cuda", **{var: str(empty)})
    assert result.returncode != 0
    header = "nccl.h" if var == "NCCL_ROOT" else "cudnn.h"
    assert result.stderr.strip().splitlines()[-1] == f"test: ERROR: {var}={empty} has no include/{header} and lib/lib{header[:-2]}.so*"


def test_a_build_that_a_checkout_links_to_is_in_use(tmp_path):
    """The cache is shared by every checkout: cleanup must spare a build a venv link still points to."""
    build, other = tmp_path / "fork-cpu-aaaa", tmp_path / "fork-cpu-bbbb"
    build.mkdir()
    other.mkdir()
    link = tmp_path / "venv" / "mfuse-fork-cpu"
    link.parent.mkdir()
    link.symlink_to(build)
    (tmp_path / "fork-cpu-aaaa.users").mkdir()
    (tmp_path / "fork-cpu-aaaa.users" / "user1").symlink_to(link)

    def in_use(path):
        script = f"REPO={REPO}; LOG_TAG=test; source {REPO}/tools/lib/build.sh; build_in_use {path}"
        return subprocess.run(["bash", "-c", script], timeout=60).returncode == 0

    assert in_use(build)
    assert not in_use(other)  # no users recorded
    link.unlink()
    link.symlink_to(other)  # the checkout moved on to another build
    assert not in_use(build)
