"""Sanitized launches (run in the runner process): AddressSanitizer finds out-of-bounds global
and shared accesses with the CUDA thread and source line; ThreadSanitizer finds a missing
barrier whatever the thread order, and reports nothing for properly synchronized kernels."""
import numpy as np
import pytest

import gpuconv
from gpuconv.simulator import SanitizerError

from sim_support import ORDERS, line_of, load_sanitized

pytestmark = pytest.mark.slow  # each sanitizer builds its own runtime on a cold cache


@pytest.fixture(scope="module")
def asan_faults():
    return load_sanitized("faults.cu", ["global_overrun", "shared_overrun"], "address")


@pytest.fixture(scope="module")
def asan_sync():
    return load_sanitized("sync.cu", ["barrier_exchange", "scaled_copy<float, 3>"], "address")


@pytest.fixture(scope="module")
def tsan_sync():
    return load_sanitized("sync.cu", ["barrier_exchange", "racy_left_neighbour",
                                      "synced_left_neighbour"], "thread")


@pytest.fixture(scope="module")
def tsan_atomics():
    return load_sanitized("atomics.cu", ["contended_adds"], "thread")


@pytest.fixture(scope="module")
def tsan_warp():
    return load_sanitized("warp.cu", ["shuffle<XOR, int>", "syncwarp_exchange"], "thread")


def test_asan_reports_a_global_overrun_with_thread_and_line(asan_faults):
    n = 64
    with pytest.raises(SanitizerError) as caught:
        asan_faults.get_function("global_overrun")(2, 32, (np.zeros(n, np.float32),
                                                           np.zeros(n, np.float32), np.int32(n)))
    error = caught.value
    assert error.sanitizer == "address"
    line = line_of("faults.cu", "in[i + 1]")
    assert error.source == line
    assert (error.block, error.thread) == ((1, 0, 0), (31, 0, 0))
    message = str(error)
    assert message.startswith(f"AddressSanitizer: heap-buffer-overflow in global_overrun at {line}")
    assert "0 bytes after the end of kernel argument 1 (an array of 256 bytes)" in message
    assert "READ of size 4" in error.report


def test_asan_reports_a_shared_overrun_naming_the_variable(asan_faults):
    with pytest.raises(SanitizerError) as caught:
        asan_faults.get_function("shared_overrun")(1, 32, (np.zeros(32, np.float32),))
    error = caught.value
    assert error.source == line_of("faults.cu", "tile[threadIdx.x + 1]")
    assert error.thread == (31, 0, 0)
    assert "0 bytes after the end of the __shared__ variable 'tile' (128 bytes)" in str(error)


def test_asan_runs_correct_kernels_and_copies_results_back(asan_faults, asan_sync):
    # The runner restarts after the reports above; results come back, aliasing preserved.
    x = np.arange(100, dtype=np.float32)
    y = np.zeros(100, np.float32)
    asan_sync.get_function("scaled_copy<float, 3>")(4, 32, (y, x, np.int32(100)))
    np.testing.assert_array_equal(y, 3 * x)
    asan_sync.get_function("scaled_copy<float, 3>")(4, 32, (x, x, np.int32(100)))  # in place
    np.testing.assert_array_equal(x, y)
    both = np.arange(10, dtype=np.float32)
    asan_sync.get_function("scaled_copy<float, 3>")(1, 32, (both[5:], both[:5], np.int32(5)))
    np.testing.assert_array_equal(both, [0, 1, 2, 3, 4, 0, 3, 6, 9, 12])


@pytest.mark.parametrize("order,seed", ORDERS)
def test_tsan_reports_the_missing_barrier_in_every_order(tsan_sync, order, seed):
    with gpuconv.simulate(order=order, seed=seed), pytest.raises(SanitizerError) as caught:
        tsan_sync.get_function("racy_left_neighbour")(1, 64, (np.zeros(64, np.float32),))
    error = caught.value
    assert error.sanitizer == "thread"
    assert str(error).startswith("ThreadSanitizer: data race in racy_left_neighbour at sync.cu:")
    # TSan reports the second access of the pair, the read or (seen first) the write.
    assert error.source in (line_of("sync.cu", "cell[t - 1]"), line_of("sync.cu", "cell[t] ="))
    assert "racing with a" in str(error) and "CUDA block (0,0,0) thread (" in str(error)


@pytest.mark.parametrize("order,seed", ORDERS[:3])
def test_tsan_is_quiet_for_synchronized_kernels(tsan_sync, tsan_warp, order, seed):
    with gpuconv.simulate(order=order, seed=seed):
        out = np.zeros(64, np.float32)
        tsan_sync.get_function("synced_left_neighbour")(1, 64, (out,))
        np.testing.assert_array_equal(out[1:], np.arange(63))
        n, rounds = 64, 3
        tsan_sync.get_function("barrier_exchange")(
            1, n, (np.zeros(rounds * n, np.int32), np.zeros(rounds, np.int32),
                   np.zeros(2 * rounds, np.int32), np.int32(rounds)))
        values = np.arange(64, dtype=np.int32)
        shuffled = np.zeros(64, np.int32)
        tsan_warp.get_function("shuffle<XOR, int>")(
            1, 64, (shuffled, values, np.full(64, 5, np.int32), np.uint32(0xFFFFFFFF),
                    np.int32(32)))
        np.testing.assert_array_equal(shuffled, values ^ 5)
        exchanged = np.zeros(64, np.int32)
        tsan_warp.get_function("syncwarp_exchange")(1, 64, (exchanged,))


@pytest.mark.parametrize("order,seed", ORDERS[:3])
def test_tsan_sees_atomics_as_atomics(tsan_atomics, order, seed):
    # Contended atomicAdd/atomicMax from every thread of several blocks are not races.
    ints, floats, doubles = np.zeros(2, np.int32), np.zeros(1, np.float32), np.zeros(1, np.float64)
    with gpuconv.simulate(order=order, seed=seed):
        tsan_atomics.get_function("contended_adds")(3, 64, (ints, floats, doubles))
    assert ints.tolist() == [192, 191] and floats[0] == 192 and doubles[0] == 96
