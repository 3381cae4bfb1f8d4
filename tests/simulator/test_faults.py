"""A fault in a kernel is a Python exception naming the CUDA block and thread, never a crash;
a block whose threads can never all meet is a deadlock error naming the barrier."""
import numpy as np
import pytest

import gpuconv
from gpuconv.simulator import DeadlockError, KernelFault

from sim_support import line_of, load

NAMES = ["null_write", "traps", "asserts", "recursion", "early_return", "divergent_barrier",
         "vector_load"]


@pytest.fixture(scope="module")
def faults():
    return load("faults.cu", NAMES)


@pytest.mark.parametrize("order", ["forward", "reverse", "random"])
def test_invalid_memory_access_names_block_thread_and_line(faults, order):
    out = np.zeros(3 * 64, np.int32)
    with gpuconv.simulate(order=order, seed=4), pytest.raises(KernelFault) as caught:
        faults.get_function("null_write")(3, 64, (out, np.int32(1), np.int32(5)))
    error = caught.value
    assert (error.block, error.thread) == ((1, 0, 0), (5, 0, 0))
    assert "invalid memory access (SIGSEGV)" in str(error)
    assert "block (1,0,0) thread (5,0,0) of null_write" in str(error)
    assert error.source == line_of("faults.cu", "*target = 1")


def test_the_process_survives_and_launches_again(faults):
    out = np.zeros(64, np.int32)
    for _ in range(3):
        with pytest.raises(KernelFault):
            faults.get_function("null_write")(1, 64, (out, np.int32(0), np.int32(0)))
    faults.get_function("null_write")(1, 64, (out, np.int32(-1), np.int32(-1)))
    assert (out == 1).all()


def test_trap_names_the_thread_and_line(faults):
    line = line_of("faults.cu", "__trap()")
    with pytest.raises(KernelFault, match=f"__trap\\(\\) called at {line}") as caught:
        faults.get_function("traps")(2, 32, (np.int32(17),))
    assert caught.value.thread == (17, 0, 0)
    assert caught.value.block in ((0, 0, 0), (1, 0, 0))


def test_misaligned_vector_access_traps_as_on_a_gpu(faults):
    # Aligned vectors load; one 16-byte load at a 4-byte offset traps in that thread (a plain
    # x86 load would have read the right values).
    values = np.arange(4 * 40, dtype=np.float32)
    assert values.ctypes.data % 16 == 0
    out = np.zeros(32, np.float32)
    faults.get_function("vector_load")(1, 32, (out, values, np.int32(-1), np.int32(0)))
    np.testing.assert_array_equal(out, values.reshape(40, 4)[:32].sum(axis=1))
    with pytest.raises(KernelFault, match="misaligned vector access") as caught:
        faults.get_function("vector_load")(1, 32, (out, values, np.int32(6), np.int32(5)))
    assert caught.value.thread == (6, 0, 0)


def test_failed_assert_names_the_condition(faults):
    values = np.arange(32, dtype=np.int32)
    values[9] = -1
    expected = "assertion `values\\[threadIdx.x\\] >= 0` failed"
    with pytest.raises(KernelFault, match=expected) as caught:
        faults.get_function("asserts")(1, 32, (values,))
    assert caught.value.thread == (9, 0, 0)
    assert caught.value.source == line_of("faults.cu", "assert(")


def test_stack_overflow_is_reported_as_such(faults):
    with pytest.raises(KernelFault, match="stack overflow.*64 KiB"):
        faults.get_function("recursion")(1, 1, (np.zeros(1, np.int32), np.int32(100)))


def test_stack_size_can_be_raised(faults, monkeypatch):
    monkeypatch.setenv("GPUCONV_SIMULATE_STACK_KB", "1024")
    out = np.zeros(1, np.int32)
    faults.get_function("recursion")(1, 1, (out, np.int32(100)))


@pytest.mark.parametrize("order", ["forward", "reverse", "random"])
def test_threads_that_never_reach_a_barrier_deadlock(faults, order):
    with gpuconv.simulate(order=order, seed=3), pytest.raises(DeadlockError) as caught:
        faults.get_function("early_return")((2, 2), 40, (np.zeros(40, np.int32), np.int32(33)))
    error = caught.value
    line = line_of("faults.cu", "never reaches")
    assert error.source == line
    assert error.block is not None
    message = str(error)
    assert f"39 of 40 threads wait at the barrier __syncthreads() at {line}" in message
    assert "1 thread(s) returned without reaching it (first: thread (33,0,0))" in message


def test_barriers_in_divergent_code_are_an_error(faults):
    even, odd = line_of("faults.cu", "even threads'"), line_of("faults.cu", "odd threads'")
    with pytest.raises(KernelFault, match=f"different barriers.*{even}.*{odd}") as caught:
        faults.get_function("divergent_barrier")(1, 32, (np.zeros(32, np.int32),))
    assert caught.value.thread == (1, 0, 0)
