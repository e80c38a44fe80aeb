import subprocess
import sys

import pytest

from mfuse.prep.parallel import imap_progress, worker_pool


def square(x):
    return x * x


@pytest.mark.parametrize("workers", [1, 2])
def test_every_item_is_processed_once(workers):
    with worker_pool(workers) as pool:
        assert (pool is None) == (workers == 1)
        assert sorted(imap_progress(square, range(7), pool, "test", progress=False)) == [x * x for x in range(7)]


def test_workers_must_be_positive():
    with pytest.raises(ValueError, match="workers must be >= 1"):
        with worker_pool(0):
            pass


def test_a_script_read_from_stdin_gets_an_error_not_a_hang():
    # Spawned workers cannot import a main script read from standard input; Pool would restart them forever.
    script = ("from mfuse.prep.parallel import worker_pool\n"
              "with worker_pool(2) as pool:\n"
              "    print(list(pool.imap_unordered(abs, [-1, -2])))\n")
    done = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "worker processes cannot start: the main script '<stdin>' is not a file" in done.stderr
