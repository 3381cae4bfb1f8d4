"""Warp collectives against Python models of the CUDA/PTX rules.

The shuffle model follows the CUDA Programming Guide's description in terms of `width` (the
runtime implements PTX's bit formulas for shfl.sync): idx reads lane srcLane % width of the
caller's segment; up/down return the caller's own value when the source falls outside the
segment; xor may read earlier segments but returns the caller's own value for later ones.
A participating lane whose source lane does not take part gets 0xFF bytes (PTX leaves it
unpredictable; the simulator makes it visible).
"""
import numpy as np
import pytest

import gpuconv
from gpuconv.simulator import DeadlockError

from sim_support import ORDERS, load

MODES = ["idx", "up", "down", "xor"]
NAMES = [f"shuffle<{m}, int>" for m in ("IDX", "UP", "DOWN", "XOR")] + [
    "shuffle<IDX, double>", "shuffle<XOR, __half>", "votes", "match_reduce",
    "syncwarp_exchange", "shuffle_barrier_deadlock"]
MASKS = [0xFFFFFFFF, 0x0000FFFF, 0xF0F0F0F0, 0x00FF00FF]
POISON = -1          # an int of 0xFF bytes
UNTOUCHED = -7       # out[] of lanes outside the mask
THREADS = 64         # two warps


@pytest.fixture(scope="module")
def warp():
    return load("warp.cu", NAMES)


def shuffle_model(mode, values, operands, mask, width):
    out = np.full(len(values), UNTOUCHED, dtype=np.int64)
    for t in range(len(values)):
        lane, base = t % 32, t - t % 32
        if not (mask >> lane) & 1:
            continue
        b = int(operands[t])
        segment = lane // width * width
        if mode == "idx":
            src = segment + b % width
        elif mode == "up":
            src = lane - b if lane - segment >= b else lane
        elif mode == "down":
            src = lane + b if lane - segment + b < width else lane
        else:
            src = lane ^ b
            if src >= segment + width:
                src = lane
        out[t] = values[base + src] if (mask >> src) & 1 else POISON
    return out


def operands_for(mode, width, rng):
    if mode == "idx":
        return rng.integers(0, 64, THREADS)            # beyond width: taken modulo width
    if mode == "xor":
        return rng.integers(0, 32, THREADS)
    return rng.integers(0, width + 1, THREADS)          # delta 0 .. width


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("width", [32, 16, 8, 4])
@pytest.mark.parametrize("mask", MASKS, ids=hex)
def test_shuffle_follows_ptx_rules(warp, mode, width, mask):
    rng = np.random.default_rng(width * 7 + MODES.index(mode) + mask % 1000)
    values = (np.arange(THREADS) * 100 + 7).astype(np.int32)
    operands = operands_for(mode, width, rng).astype(np.int32)
    out = np.full(THREADS, UNTOUCHED, np.int32)
    kernel = warp.get_function(f"shuffle<{mode.upper()}, int>")
    kernel(1, THREADS, (out, values, operands, np.uint32(mask), np.int32(width)))
    np.testing.assert_array_equal(out, shuffle_model(mode, values, operands, mask, width))


@pytest.mark.parametrize("order,seed", ORDERS)
def test_shuffle_result_does_not_depend_on_thread_order(warp, order, seed):
    values = (np.arange(THREADS) * 3 + 1).astype(np.int32)
    operands = np.arange(THREADS, dtype=np.int32)[::-1] % 7
    out = np.full(THREADS, UNTOUCHED, np.int32)
    with gpuconv.simulate(order=order, seed=seed):
        warp.get_function("shuffle<DOWN, int>")(
            1, THREADS, (out, values, operands, np.uint32(0xFFFFFFFF), np.int32(16)))
    np.testing.assert_array_equal(out, shuffle_model("down", values, operands, 0xFFFFFFFF, 16))


def test_shuffle_of_wide_and_narrow_types(warp):
    values = np.linspace(-3.5, 9.25, THREADS)
    operands = (np.arange(THREADS, dtype=np.int32) * 5) % 32
    out = np.zeros(THREADS)
    warp.get_function("shuffle<IDX, double>")(
        1, THREADS, (out, values, operands, np.uint32(0xFFFFFFFF), np.int32(32)))
    src = np.arange(THREADS) // 32 * 32 + operands
    np.testing.assert_array_equal(out, values[src])

    halves = np.arange(THREADS, dtype=np.float16) / 4
    out16 = np.zeros(THREADS, np.float16)
    xor = np.full(THREADS, 3, np.int32)
    warp.get_function("shuffle<XOR, __half>")(
        1, THREADS, (out16, halves, xor, np.uint32(0xFFFFFFFF), np.int32(32)))
    np.testing.assert_array_equal(out16, halves[np.arange(THREADS) ^ 3])


@pytest.mark.parametrize("mask", MASKS, ids=hex)
def test_ballot_any_all(warp, mask):
    rng = np.random.default_rng(mask % 997)
    for predicate in (rng.integers(0, 2, THREADS), np.ones(THREADS, int), np.zeros(THREADS, int)):
        predicate = (predicate * rng.integers(1, 5, THREADS)).astype(np.int32)  # any non-zero
        out = np.full(3 * THREADS, 0xDEAD, np.uint32)
        warp.get_function("votes")(1, THREADS, (out, predicate, np.uint32(mask)))
        out = out.reshape(THREADS, 3)
        for w in range(THREADS // 32):
            lanes = np.arange(32)
            active = (mask >> lanes) & 1 == 1
            ballot = sum(1 << int(l) for l in lanes[active & (predicate[w * 32:(w + 1) * 32] != 0)])
            for lane in lanes:
                row = out[w * 32 + lane]
                if not active[lane]:
                    assert (row == 0xDEAD).all()
                    continue
                assert row[0] == ballot
                assert row[1] == int(ballot != 0)
                assert row[2] == int(ballot == mask)


@pytest.mark.parametrize("mask", [0xFFFFFFFF, 0x0F0F0F0F], ids=hex)
def test_match_and_reduce(warp, mask):
    rng = np.random.default_rng(5)
    for values in (rng.integers(-2, 3, THREADS), np.full(THREADS, 4)):
        values = values.astype(np.int32)
        out = np.zeros(5 * THREADS, np.uint32)
        warp.get_function("match_reduce")(1, THREADS, (out, values, np.uint32(mask)))
        out = out.reshape(THREADS, 5).astype(np.int64)
        for w in range(THREADS // 32):
            v = values[w * 32:(w + 1) * 32].astype(np.int64)
            active = [l for l in range(32) if (mask >> l) & 1]
            uniform = len({int(v[l]) for l in active}) == 1
            for lane in active:
                row = out[w * 32 + lane]
                assert row[0] == sum(1 << l for l in active if v[l] == v[lane])
                assert row[1] == (mask if uniform else 0)
                assert row[2] == int(uniform)
                assert row[3] == sum(int(v[l]) for l in active) % 2**32
                assert row[4] == max(int(v[l]) for l in active) % 2**32


@pytest.mark.parametrize("order,seed", ORDERS)
def test_syncwarp_orders_shared_memory_exchange(warp, order, seed):
    out = np.zeros(THREADS, np.int32)
    with gpuconv.simulate(order=order, seed=seed):
        warp.get_function("syncwarp_exchange")(1, THREADS, (out,))
    t = np.arange(THREADS)
    np.testing.assert_array_equal(out, (t // 32 * 32 + (t + 1) % 32) * 10)


def test_lanes_waiting_in_a_shuffle_for_a_lane_at_a_barrier_deadlock(warp):
    with pytest.raises(DeadlockError) as caught:
        warp.get_function("shuffle_barrier_deadlock")(1, 32, (np.zeros(32, np.int32),))
    message = str(caught.value)
    assert "block (0,0,0)" in message
    assert "__syncthreads() at warp.cu:" in message
    assert "__shfl_sync" in message and "0xfffffffe" in message
    assert caught.value.block == (0, 0, 0)
