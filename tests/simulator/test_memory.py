"""Shared memory: fresh poisoned storage per block, dynamic shared memory, limits, nullptr."""
import numpy as np
import pytest

import gpuconv
from gpuconv.simulator import SharedMemoryLimitError

from sim_support import MEMORY_KERNELS, ORDERS, line_of, load


@pytest.fixture(scope="module")
def memory():
    return load("memory.cu", MEMORY_KERNELS)


@pytest.mark.parametrize("order,seed", ORDERS[:3])
def test_static_shared_memory_reads_as_poison_before_any_write(memory, order, seed):
    blocks, n = 3, 64
    before = np.zeros(blocks * n, np.float32)
    ibefore = np.zeros(blocks * n, np.int32)
    after = np.zeros(blocks * n, np.float32)
    with gpuconv.simulate(order=order, seed=seed):
        memory.get_function("poisoned_static")(blocks, n, (before, ibefore, after))
    assert np.isnan(before).all()          # in every block: storage is fresh per block
    assert (ibefore == -1).all()
    t = np.arange(blocks * n)
    np.testing.assert_array_equal(after, t // n * n + (t % n + 1) % n)


@pytest.mark.parametrize("order,seed", ORDERS[:3])
def test_dynamic_shared_memory(memory, order, seed):
    blocks, n = 2, 48
    before = np.zeros(blocks * n, np.float32)
    out = np.zeros(blocks * n, np.float32)
    with gpuconv.simulate(order=order, seed=seed):
        memory.get_function("dynamic_reverse")(blocks, n, (before, out), shared_mem=n * 4)
    assert np.isnan(before).all()
    t = np.arange(blocks * n)
    np.testing.assert_array_equal(out, t // n * n + (n - 1 - t % n))


def test_dynamic_shared_memory_carved_into_two_arrays(memory):
    n = 40
    out = np.zeros(n, np.int32)
    memory.get_function("dynamic_carved")(1, n, (out, np.int32(n)), shared_mem=n * 8)
    u = n - 1 - np.arange(n)
    np.testing.assert_array_equal(out, 3 * u + 3 * u)


def test_dynamic_shared_memory_beyond_48_kib_needs_the_opt_in(memory):
    kernel = memory.get_function("dynamic_reverse")
    args = (np.zeros(32, np.float32), np.zeros(32, np.float32))
    with pytest.raises(ValueError, match="max_dynamic_shared_size_bytes"):
        kernel(1, 32, args, shared_mem=64 * 1024)
    kernel.max_dynamic_shared_size_bytes = 100 * 1024
    kernel(1, 32, args, shared_mem=64 * 1024)
    kernel.max_dynamic_shared_size_bytes = 48 * 1024


def test_static_and_dynamic_shared_memory_share_48_kib_until_the_opt_in(memory):
    # A GPU's default max_dynamic_shared_size_bytes is 48 KiB less the static bytes: 1 KiB of
    # table plus 48 KiB of tiles fails to launch there unless the attribute was set.
    kernel = memory.get_function("static_and_dynamic")
    out = np.zeros(32, np.float32)
    kernel(1, 32, (out,), shared_mem=47 * 1024)
    np.testing.assert_array_equal(out, 6.0)
    with pytest.raises(SharedMemoryLimitError, match="without the opt-in: 1024 static bytes "
                       r"including 'table' plus 49152 dynamic"):
        kernel(1, 32, (out,), shared_mem=48 * 1024)
    with pytest.raises(ValueError, match=r"max_dynamic_shared_size_bytes must be in \[0, 232448\]"):
        kernel.max_dynamic_shared_size_bytes = 228 * 1024
    kernel.max_dynamic_shared_size_bytes = 227 * 1024      # too much with the static table
    with pytest.raises(SharedMemoryLimitError, match="more than 227 KiB"):
        kernel(1, 32, (out,), shared_mem=48 * 1024)
    kernel.max_dynamic_shared_size_bytes = 48 * 1024        # the opt-in, as the loader sets it
    out[:] = 0
    kernel(1, 32, (out,), shared_mem=48 * 1024)
    np.testing.assert_array_equal(out, 6.0)


def test_more_than_48_kib_of_static_shared_memory_is_an_error(memory):
    with pytest.raises(SharedMemoryLimitError, match="'big'.*65536 bytes") as caught:
        memory.get_function("too_much_static")(1, 32, (np.zeros(32, np.float32),))
    assert caught.value.source == line_of("memory.cu", "float big[16384]")


def test_none_is_a_null_pointer(memory):
    flag = np.zeros(1, np.int32)
    memory.get_function("maybe_null")(1, 1, (flag, None))
    assert flag[0] == 1
    memory.get_function("maybe_null")(1, 1, (flag, np.zeros(3, np.float32)))
    assert flag[0] == 2
