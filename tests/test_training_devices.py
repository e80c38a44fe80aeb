"""GPU requests: parsing ``--gpus``, checking them against the machine, and counting GPUs through the driver."""
import pytest

from mfuse.training import devices
from mfuse.training.devices import ALL_GPUS, GpuSelectionError, cuda_device_count, parse_gpus, resolve_gpus


def test_parse_gpus():
    assert parse_gpus("0") == [0]
    assert parse_gpus(" 0, 1,3 ") == [0, 1, 3]
    assert parse_gpus("ALL") == ALL_GPUS


@pytest.mark.parametrize("text, message", [
    ("", "not a comma-separated list"), ("0,", "not a comma-separated list"), ("-1", "not a comma-separated"),
    ("a,b", "not a comma-separated list"), ("0,1,0", "GPU 0 is named twice"),
])
def test_parse_gpus_refuses(text, message):
    with pytest.raises(GpuSelectionError, match=message):
        parse_gpus(text)


def test_resolve_gpus_against_the_machine():
    assert resolve_gpus("all", 4) == [0, 1, 2, 3]
    assert resolve_gpus(1, 2) == [1]
    assert resolve_gpus((0, 1), lambda: 2) == [0, 1]
    with pytest.raises(GpuSelectionError, match=r"gpus 0,5: GPU 5 does not exist; this machine has 2 GPUs "
                                                r"\(GPUs 0..1\)"):
        resolve_gpus("0,5", 2)
    with pytest.raises(GpuSelectionError, match=r"gpus 1: GPU 1 does not exist; this machine has 1 GPU \(GPU 0\)"):
        resolve_gpus(1, 1)
    with pytest.raises(GpuSelectionError, match="gpus all: this machine shows no GPU"):
        resolve_gpus("all", 0)
    with pytest.raises(GpuSelectionError, match="named twice"):
        resolve_gpus([2, 2], 4)


class FakeDriver:
    def __init__(self, init=0, count=3, count_status=0):
        self.init, self.count, self.count_status = init, count, count_status

    def cuInit(self, flags):
        return self.init

    def cuDeviceGetCount(self, pointer):
        pointer._obj.value = self.count
        return self.count_status

    def cuDeviceGet(self, pointer, ordinal):
        pointer._obj.value = ordinal
        return 0 if ordinal < self.count else 101  # CUDA_ERROR_INVALID_DEVICE

    def cuDeviceTotalMem_v2(self, pointer, device):
        pointer._obj.value = (81559 << 20) + 12345
        return 0


@pytest.mark.parametrize("driver, expected", [(FakeDriver(), 3), (FakeDriver(init=100), 0)])
def test_cuda_device_count_asks_the_driver(monkeypatch, driver, expected):
    monkeypatch.setattr(devices.ctypes, "CDLL", lambda name: driver)
    assert cuda_device_count() == expected


@pytest.mark.parametrize("driver, message", [(FakeDriver(init=999), "failed to start .*CUDA error 999"),
                                             (FakeDriver(count_status=3), "cannot count the GPUs")])
def test_cuda_device_count_names_driver_failures(monkeypatch, driver, message):
    monkeypatch.setattr(devices.ctypes, "CDLL", lambda name: driver)
    with pytest.raises(GpuSelectionError, match=message):
        cuda_device_count()


@pytest.mark.parametrize("ask", [cuda_device_count, lambda: devices.cuda_device_memory_mib(0)])
def test_no_driver_is_one_clear_error(monkeypatch, ask):
    def missing(name):
        raise OSError(f"{name}: cannot open shared object file")
    monkeypatch.setattr(devices.ctypes, "CDLL", missing)
    with pytest.raises(GpuSelectionError, match="no NVIDIA driver on this machine"):
        ask()


def test_device_memory_comes_from_the_driver_in_mib(monkeypatch):
    monkeypatch.setattr(devices.ctypes, "CDLL", lambda name: FakeDriver(count=2))
    assert devices.cuda_device_memory_mib(1) == 81559
    with pytest.raises(GpuSelectionError, match="the NVIDIA driver shows no GPU 2"):
        devices.cuda_device_memory_mib(2)
