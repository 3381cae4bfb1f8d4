"""Atomics under contention: many threads and blocks on the same words, CAS retry loops."""
import numpy as np
import pytest

import gpuconv

from sim_support import ORDERS, load

BLOCKS, THREADS = 6, 96


@pytest.fixture(scope="module")
def atomics():
    return load("atomics.cu", ["atomics", "half_atomic"])


@pytest.mark.parametrize("order,seed", ORDERS)
def test_atomics_under_contention(atomics, order, seed):
    ints = np.array([0, 0, -1, 10**6, 0, 0, 0], np.int32)
    uints = np.array([0, 0xFFFFFFFF, 0], np.uint32)
    ull = np.zeros(1, np.uint64)
    floats = np.zeros(2, np.float32)
    doubles = np.array([0.0, 1.0])
    with gpuconv.simulate(order=order, seed=seed):
        atomics.get_function("atomics")(BLOCKS, THREADS, (ints, uints, ull, floats, doubles))
    t = np.arange(BLOCKS * THREADS, dtype=np.int64)
    n = t.size
    assert ints[0] == n
    assert ints[1] == t.sum()
    assert ints[2] == ((t * 37) % 1001).max()
    assert ints[3] == (500 - (t * 53) % 997).min()
    assert ints[4] == -2 * n
    assert ints[5] == 7
    assert ints[6] == (t + 1).sum()
    assert uints[0] == 0xFFFFFFFF
    assert uints[1] == 0
    assert uints[2] == n % 10
    assert ull[0] == n << 33
    assert floats[0] == n                      # exact: small integers
    assert floats[1] == (0.5 * (t % 4)).sum()  # exact: multiples of 0.5
    assert doubles[0] == 0.25 * n
    assert doubles[1] == pytest.approx((1 + 2**-10) ** n, rel=1e-12)


def test_half_atomic_add_rounds_at_every_step(atomics):
    acc = np.array([2048], np.float16)
    # 2048 + 1 rounds back to 2048 in half precision (ulp 2): every addition is lost.
    atomics.get_function("half_atomic")(4, 32, (acc, np.float16(1.0)))
    assert acc[0] == 2048
    acc = np.array([0], np.float16)
    atomics.get_function("half_atomic")(1, 64, (acc, np.float16(0.5)))
    assert acc[0] == 32
