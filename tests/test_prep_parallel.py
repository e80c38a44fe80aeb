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
