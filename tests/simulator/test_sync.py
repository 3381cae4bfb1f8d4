"""Block barriers, built-in indices and module instantiation, in every thread order."""
import numpy as np
import pytest

import gpuconv
from gpuconv.simulator import load_module

from sim_support import KERNELS, ORDERS, load

SYNC = ["barrier_exchange", "indices_3d", "scaled_copy<float, 3>", "scaled_copy<double, -2>",
        "scaled_copy<int, 5>", "racy_left_neighbour", "synced_left_neighbour"]


@pytest.fixture(scope="module")
def sync():
    return load("sync.cu", SYNC)


def barrier_exchange_model(n, rounds):
    values = np.arange(1, n + 1, dtype=np.int64)
    out, counts, flags = [], [], []
    t = np.arange(n)
    for r in range(rounds):
        read = values[(t * 7 + 3 + r) % n]
        out.append(read)
        counts.append(n // 2)
        flags += [int((read > 0).all()), int((read > n).any())]
        values = read * 3 + r
    return np.array(out, np.int32).ravel(), np.array(counts, np.int32), np.array(flags, np.int32)


@pytest.mark.parametrize("order,seed", ORDERS)
@pytest.mark.parametrize("n", [32, 100, 256])
def test_values_exchanged_through_shared_memory_at_barriers(sync, order, seed, n):
    rounds = 4
    out = np.full(rounds * n, -5, np.int32)
    counts = np.full(rounds, -5, np.int32)
    flags = np.full(2 * rounds, -5, np.int32)
    with gpuconv.simulate(order=order, seed=seed):
        sync.get_function("barrier_exchange")(1, n, (out, counts, flags, np.int32(rounds)))
    expected = barrier_exchange_model(n, rounds)
    np.testing.assert_array_equal(out, expected[0])
    np.testing.assert_array_equal(counts, expected[1])
    np.testing.assert_array_equal(flags, expected[2])


@pytest.mark.parametrize("order,seed", ORDERS[:3])
def test_3d_grid_and_block_indices(sync, order, seed):
    grid, block = (2, 3, 2), (4, 2, 3)
    total = np.prod(grid) * np.prod(block)
    linear = np.full(total, -1, np.int32)
    idx = np.full(total * 12, -1, np.int32)
    with gpuconv.simulate(order=order, seed=seed):
        sync.get_function("indices_3d")(grid, block, (linear, idx))
    np.testing.assert_array_equal(linear, np.arange(total))
    # Expected built-ins: block-major, then threads with x fastest, as CUDA numbers them.
    bz, by, bx, tz, ty, tx = np.meshgrid(*(np.arange(d) for d in grid[::-1] + block[::-1]),
                                         indexing="ij")
    expected = np.stack([tx, ty, tz, bx, by, bz] + [np.full_like(tx, d) for d in block + grid],
                        axis=-1).reshape(-1, 12)
    np.testing.assert_array_equal(idx.reshape(-1, 12), expected)


def test_several_template_instantiations_in_one_module(sync):
    n = 77
    for name, dtype, scale in [("scaled_copy<float, 3>", np.float32, 3),
                               ("scaled_copy<double, -2>", np.float64, -2),
                               ("scaled_copy<int, 5>", np.int32, 5)]:
        x = np.arange(n).astype(dtype)
        y = np.zeros(n, dtype)
        sync.get_function(name)(3, 32, (y, x, np.int32(n)))
        np.testing.assert_array_equal(y, x * scale)


def test_unknown_name_expression_is_a_value_error(sync):
    with pytest.raises(ValueError, match="scaled_copy<float, 4>"):
        sync.get_function("scaled_copy<float, 4>")


def test_a_name_expression_that_names_no_kernel_fails_to_compile():
    from gpuconv._kernel_source import KernelCompileError
    with pytest.raises(KernelCompileError, match="no_such_kernel"):
        load_module((KERNELS / "sync.cu").read_text(), ["no_such_kernel<int>"],
                    source_name="sync.cu")


def test_missing_barrier_is_right_forward_and_wrong_reversed_or_shuffled(sync):
    """One order can hide a race (simulator.md): reading the left neighbour's value without a
    barrier happens to work when threads run in index order."""
    n = 128
    expected = np.arange(-1, n - 1, dtype=np.float32)
    expected[0] = -1
    results = {}
    for order, seed in ORDERS:
        out = np.zeros(n, np.float32)
        with gpuconv.simulate(order=order, seed=seed):
            sync.get_function("racy_left_neighbour")(1, n, (out,))
        results[(order, seed)] = out
    np.testing.assert_array_equal(results[("forward", 0)], expected)
    for key in [("reverse", 0), ("random", 1), ("random", 2)]:
        assert not np.array_equal(results[key], expected, equal_nan=True), key
    # The reads that ran before their neighbour's write saw the poison of fresh shared memory.
    assert np.isnan(results[("reverse", 0)][1:]).all()


@pytest.mark.parametrize("order,seed", ORDERS)
def test_with_the_barrier_every_order_is_right(sync, order, seed):
    n = 128
    out = np.zeros(n, np.float32)
    with gpuconv.simulate(order=order, seed=seed):
        sync.get_function("synced_left_neighbour")(1, n, (out,))
    expected = np.arange(-1, n - 1, dtype=np.float32)
    np.testing.assert_array_equal(out, expected)
