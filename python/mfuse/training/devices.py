"""Which GPUs a training run uses: ``--gpus 0,1,2,3`` or Caffe's ``all``, checked against the machine.

GPU ids are CUDA's (they follow ``CUDA_VISIBLE_DEVICES``, as ``caffe train -gpu`` and ``caffe.set_device``).
The number of GPUs comes from the NVIDIA driver's own library (``libcuda.so.1``, ``cuDeviceGetCount``), so
no Caffe build or CUDA context is needed to check a request before any process starts.
"""
from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence

#: Caffe's ``-gpu all``: every GPU the machine shows.
ALL_GPUS = "all"
#: ``CUDA_ERROR_NO_DEVICE``: the driver runs but shows no GPU (e.g. ``CUDA_VISIBLE_DEVICES=""``).
_CUDA_ERROR_NO_DEVICE = 100


class GpuSelectionError(ValueError):
    """A GPU request that cannot be met; the message is one line naming the request and the cause."""


def parse_gpus(text: str) -> list[int] | str:
    """``"0,1,3"`` -> ``[0, 1, 3]``; ``"all"`` -> ``ALL_GPUS``. Raises GpuSelectionError on anything else
    (empty items, negative or non-integer ids, an id named twice)."""
    text = text.strip()
    if text.lower() == ALL_GPUS:
        return ALL_GPUS
    items = [item.strip() for item in text.split(",")]
    if not text or not all(item.isdigit() for item in items):
        raise GpuSelectionError(f"gpus {text!r}: not a comma-separated list of GPU ids (e.g. 0,1,2,3) or "
                                f"'{ALL_GPUS}'")
    gpus = [int(item) for item in items]
    twice = sorted({gpu for gpu in gpus if gpus.count(gpu) > 1})
    if twice:
        raise GpuSelectionError(f"gpus {text}: GPU {twice[0]} is named twice (one process per GPU)")
    return gpus


def _driver():
    """The NVIDIA driver library, initialised; None when it shows no GPU.

    Raises:
        GpuSelectionError: no NVIDIA driver here (``libcuda.so.1`` cannot be loaded) or it fails to start.
    """
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError as err:
        raise GpuSelectionError(f"no NVIDIA driver on this machine (libcuda.so.1: {err})") from err
    status = driver.cuInit(0)
    if status == _CUDA_ERROR_NO_DEVICE:
        return None
    if status != 0:
        raise GpuSelectionError(f"the NVIDIA driver failed to start (cuInit returned CUDA error {status})")
    return driver


def cuda_device_memory_mib(gpu: int) -> int:
    """Total memory of CUDA device ``gpu`` in MiB, from the driver.

    Raises:
        GpuSelectionError: no driver, or no device ``gpu``.
    """
    driver = _driver()
    device, total = ctypes.c_int(0), ctypes.c_size_t(0)
    if driver is None or driver.cuDeviceGet(ctypes.byref(device), gpu) != 0 or \
            driver.cuDeviceTotalMem_v2(ctypes.byref(total), device) != 0:
        raise GpuSelectionError(f"the NVIDIA driver shows no GPU {gpu}")
    return total.value >> 20


def cuda_device_count() -> int:
    """The GPUs the NVIDIA driver shows this process (0 when it shows none).

    Raises:
        GpuSelectionError: no NVIDIA driver here (``libcuda.so.1`` cannot be loaded) or it fails to start.
    """
    driver = _driver()
    if driver is None:
        return 0
    count = ctypes.c_int(0)
    status = driver.cuDeviceGetCount(ctypes.byref(count))
    if status != 0:
        raise GpuSelectionError(f"the NVIDIA driver cannot count the GPUs (cuDeviceGetCount returned CUDA error "
                                f"{status})")
    return count.value


def resolve_gpus(request: int | str | Sequence[int], count: int | Callable[[], int] = cuda_device_count
                 ) -> list[int]:
    """The GPU ids of a request, each checked to exist.

    Args:
        request: one id, ``"0,1"``, ``"all"`` or a sequence of ids.
        count: the number of GPUs, or a function returning it (default: ask the driver).

    Raises:
        GpuSelectionError: a malformed request, an id named twice, no GPU at all, or an id the machine lacks;
            one line naming the request and what the machine has.
    """
    if isinstance(request, str):
        request = parse_gpus(request)
    elif isinstance(request, int):
        request = [request]
    else:
        request = parse_gpus(",".join(str(gpu) for gpu in request))
    shown = ALL_GPUS if request == ALL_GPUS else ",".join(map(str, request))
    available = count() if callable(count) else count
    if available == 0:
        raise GpuSelectionError(f"gpus {shown}: this machine shows no GPU (check nvidia-smi and "
                                f"CUDA_VISIBLE_DEVICES)")
    if request == ALL_GPUS:
        return list(range(available))
    missing = [gpu for gpu in request if gpu >= available]
    if missing:
        have = "GPU 0" if available == 1 else f"GPUs 0..{available - 1}"
        raise GpuSelectionError(f"gpus {shown}: GPU {missing[0]} does not exist; this machine has {available} "
                                f"GPU{'s' if available > 1 else ''} ({have})")
    return list(request)
