"""Worker processes filling items in shared memory (mfuse.processes): order, errors, shutdown."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from mfuse.processes import (ALIGN, ParallelProducer, WorkerError, python_executable, shared_buffer, slot_layout,
                             usable_cores)


class Squares:
    """Item i: ``a`` = i * [0, 1, 2] (int64), ``b`` = i ** 2 (float32, 2 x 3); item ``bad`` raises."""

    def __init__(self, bad: int | None = None, pid_file: str | None = None):
        self.bad, self.pid_file = bad, pid_file

    def layout(self):
        return {"a": ((3,), "int64"), "b": ((2, 3), "float32")}

    def fill(self, index, out):
        if index == self.bad:
            raise KeyError(f"no item {index} here")
        if self.pid_file:
            with open(self.pid_file, "a") as f:
                f.write(f"{os.getpid()}\n")
        out["a"][:] = index * np.arange(3)
        out["b"][:] = index ** 2


def items(producer, count, **kwargs):
    with ParallelProducer(producer, **kwargs) as source:
        return [{k: v.copy() for k, v in source.get().items()} for _ in range(count)]


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_items_come_in_order_whatever_the_workers(workers):
    got = items(Squares(), 7, start=5, workers=workers, depth=2)
    for offset, item in enumerate(got):
        np.testing.assert_array_equal(item["a"], (5 + offset) * np.arange(3))
        assert item["b"].dtype == np.float32 and np.all(item["b"] == (5 + offset) ** 2)


def test_stop_ends_the_items():
    with ParallelProducer(Squares(), start=0, stop=3, workers=2) as source:
        assert [int(source.get()["b"][0, 0]) for _ in range(3)] == [0, 1, 4]
        with pytest.raises(StopIteration):
            source.get()


def test_a_failing_item_raises_its_own_error_naming_the_item():
    with ParallelProducer(Squares(bad=4), start=0, workers=2, name="toy") as source:
        for _ in range(4):
            source.get()
        with pytest.raises(KeyError, match="no item 4 here") as info:
            source.get()
    assert "making item 4" in " ".join(info.value.__notes__) and "toy" in " ".join(info.value.__notes__)


def test_a_killed_worker_is_named_with_its_signal(tmp_path):
    pids = tmp_path / "pids"
    source = ParallelProducer(Squares(pid_file=str(pids)), start=0, workers=1, depth=1)
    source.get()
    os.kill(int(pids.read_text().split()[0]), signal.SIGKILL)
    with pytest.raises(WorkerError, match="killed by SIGKILL"):
        source.get()
        source.get()
    source.close()


def test_close_stops_the_workers_and_later_gets_fail():
    source = ParallelProducer(Squares(), workers=2)
    procs = list(source._procs)
    source.get()
    source.close()
    source.close()
    assert all(proc.poll() is not None for proc in procs)
    with pytest.raises(WorkerError, match="closed"):
        source.get()


def test_workers_stop_when_the_interpreter_exits(tmp_path):
    """No thread or process outlives the interpreter: exit status 0 and no worker left behind."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_processes import Squares
        from mfuse.processes import ParallelProducer
        source = ParallelProducer(Squares(), workers=2)
        source.get()
        print(" ".join(str(p.pid) for p in source._procs))
    """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    time.sleep(0.2)
    for pid in map(int, result.stdout.split()):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_slots_align_every_array():
    offsets, size = slot_layout({"x": ((3,), "uint8"), "y": ((5,), "float64")})
    assert offsets["x"][0] == 0 and offsets["y"][0] == ALIGN and size == 2 * ALIGN


def test_a_buffer_that_fits_nowhere_is_refused_with_the_sizes():
    with pytest.raises(WorkerError, match="no room for .* MiB of shared memory"):
        shared_buffer(1 << 60)


def test_the_worker_interpreter_is_this_python_version():
    executable = python_executable()
    out = subprocess.run([executable, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == str(sys.version_info[:2])
    assert usable_cores() >= 1
