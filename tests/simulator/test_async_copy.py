"""cp.async under the simulator (runtime/simt_async_copy.h): a correct multistage pipeline is
exact in every thread order, and the classic pipeline bugs (a forgotten or short wait, a missing
barrier after the wait, refilling a stage other threads still read) give wrong values instead of
working by luck; broken copy rules fail the launch naming the rule and the line."""
import re

import numpy as np
import pytest

import gpuconv
from gpuconv.simulator import KernelFault, SanitizerError

from sim_support import ORDERS, line_of, load, load_sanitized

PIPELINES = [f"pipeline<{b}, {s}>" for b in (4, 8, 16) for s in (2, 3)]
NAMES = PIPELINES + ["single_copy", "group_accounting", "copy_to_global", "abandoned_copies"]
CORRECT, NO_WAIT, SHORT_WAIT, NO_BARRIER_AFTER_WAIT, ISSUE_BEFORE_BARRIER = range(5)
THREADS, TILES, BLOCKS = 32, 5, 2
COPY_LINE = line_of("async_copy.cu", "the copy under test")
PIPELINE_ISSUE = line_of("async_copy.cu", "simt_async_copy(&stage")
PIPELINE_WAIT = line_of("async_copy.cu", "simt_async_wait(bug")
PIPELINE_READ = line_of("async_copy.cu", "current[tile_size - 1 - j]")


@pytest.fixture(scope="module")
def module():
    return load("async_copy.cu", NAMES)


def aligned(array):
    """``array`` copied to a 16-byte aligned buffer (cp.async sources must be aligned)."""
    raw = np.zeros(array.nbytes + 16, np.uint8)
    start = -raw.ctypes.data % 16
    view = raw[start:start + array.nbytes].view(array.dtype)
    view[...] = array
    return view


def pipeline_case(copy_bytes):
    """Input, n and the expected output of pipeline<copy_bytes, *>: the last tile of the last
    block holds a partial copy and copies wholly past the end (zero-filled)."""
    per_copy = copy_bytes // 4
    tile = THREADS * per_copy
    total = BLOCKS * TILES * tile
    n = total - tile // 2 - 1
    x = aligned(np.arange(1, n + 1, dtype=np.float32) * 0.5)
    padded = np.zeros(total, np.float32)
    padded[:n] = x
    return x, n, padded.reshape(-1, tile)[:, ::-1].ravel()


def run_pipeline(module, copy_bytes, stages, bug, order, seed):
    x, n, expected = pipeline_case(copy_bytes)
    out = np.full(expected.size, -7.0, np.float32)
    with gpuconv.simulate(order=order, seed=seed):
        module.get_function(f"pipeline<{copy_bytes}, {stages}>")(
            BLOCKS, THREADS, (out, x, np.int32(n), np.int32(TILES), np.int32(bug)))
    return out, expected


@pytest.mark.parametrize("order,seed", ORDERS)
@pytest.mark.parametrize("stages", [2, 3])
@pytest.mark.parametrize("copy_bytes", [4, 8, 16])
def test_a_correct_pipeline_is_exact_in_every_order(module, copy_bytes, stages, order, seed):
    out, expected = run_pipeline(module, copy_bytes, stages, CORRECT, order, seed)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("bug", [NO_WAIT, SHORT_WAIT])
@pytest.mark.parametrize("stages", [2, 3])
@pytest.mark.parametrize("copy_bytes", [4, 16])
def test_reading_a_stage_before_its_wait_reads_poison(module, copy_bytes, stages, bug):
    # The bytes land only at the issuing thread's wait, so whatever the order the reads see the
    # 0xFF bytes (NaN) that the issue left in the stage.
    for order, seed in ORDERS:
        out, expected = run_pipeline(module, copy_bytes, stages, bug, order, seed)
        assert not np.array_equal(out, expected, equal_nan=True), (order, seed)
        assert np.isnan(out).any(), (order, seed)


@pytest.mark.parametrize("stages", [2, 3])
@pytest.mark.parametrize("copy_bytes", [4, 16])
def test_reading_other_threads_copies_before_the_barrier_is_wrong(module, copy_bytes, stages):
    # Without the barrier after the waits, whichever thread runs first reads copies that their
    # issuers have not waited for yet: wrong in every order, not only in some.
    wrong = []
    for order, seed in ORDERS:
        out, expected = run_pipeline(module, copy_bytes, stages, NO_BARRIER_AFTER_WAIT, order,
                                     seed)
        if not np.array_equal(out, expected, equal_nan=True):
            wrong.append((order, seed))
        assert np.isnan(out).any(), (order, seed)
    assert wrong == ORDERS


@pytest.mark.parametrize("stages", [2, 3])
@pytest.mark.parametrize("copy_bytes", [4, 16])
def test_refilling_a_stage_that_others_still_read_is_wrong(module, copy_bytes, stages):
    # Write after read: the last thread of each pass reads what its partner, which ran earlier,
    # has already refilled (poison, or with two stages the next tile's bytes).
    for order, seed in ORDERS:
        out, expected = run_pipeline(module, copy_bytes, stages, ISSUE_BEFORE_BARRIER, order,
                                     seed)
        assert not np.array_equal(out, expected, equal_nan=True), (order, seed)
        if stages == 3:
            assert np.isnan(out).any(), (order, seed)


def single_copy(module, copy_bytes, src_bytes, dst_offset=0, src_offset=0, null_src=False,
                threads=4, src=None):
    src = aligned(np.arange(1, 16 * threads + 17, dtype=np.uint8)) if src is None else src
    out = np.zeros(32 * threads, np.uint8)
    module.get_function("single_copy")(1, threads, (
        out, src, np.int32(dst_offset), np.int32(src_offset), np.int32(copy_bytes),
        np.int32(src_bytes), np.int32(null_src)))
    return src, out.reshape(threads, 32)


@pytest.mark.parametrize("copy_bytes,src_bytes", [(4, 4), (4, 1), (4, 3), (8, 8), (8, 5),
                                                  (16, 16), (16, 7), (16, 15)])
def test_src_size_shorter_than_the_copy_fills_zeros(module, copy_bytes, src_bytes):
    src, out = single_copy(module, copy_bytes, src_bytes)
    for t in range(out.shape[0]):
        expected = np.full(32, 0xFF, np.uint8)  # bytes past the copy keep fresh shared memory
        expected[:copy_bytes] = 0
        expected[:src_bytes] = src[16 * t:16 * t + src_bytes]
        np.testing.assert_array_equal(out[t], expected)


@pytest.mark.parametrize("copy_bytes", [4, 8, 16])
def test_src_size_zero_does_not_read_the_source(module, copy_bytes):
    # A null source is never dereferenced when no byte comes from it.
    _, out = single_copy(module, copy_bytes, 0, null_src=True)
    expected = np.full(32, 0xFF, np.uint8)
    expected[:copy_bytes] = 0
    np.testing.assert_array_equal(out, np.tile(expected, (out.shape[0], 1)))


@pytest.mark.parametrize("pending", [0, 1, 2, 3])
@pytest.mark.parametrize("empty_group", [False, True])
def test_wait_group_completes_all_but_the_newest_committed_groups(module, pending, empty_group):
    src = aligned(np.arange(100, 164, dtype=np.uint8))
    out = np.zeros(4 * 64, np.uint8)
    module.get_function("group_accounting")(1, 4, (out, src, np.int32(pending),
                                                  np.int32(empty_group)))
    groups = 3 if empty_group else 2     # {copy 0}, {copy 1}, maybe {}; copy 2 never committed
    complete = max(groups - pending, 0)  # the oldest `complete` groups
    landed = [0 < complete, 1 < complete, False, False]
    for t, slots in enumerate(out.reshape(4, 4, 16)):
        for k, slot in enumerate(slots):
            want = src[16 * k:16 * k + 16] if landed[k] else np.full(16, 0xFF, np.uint8)
            np.testing.assert_array_equal(slot, want, err_msg=f"thread {t} slot {k}")


@pytest.mark.parametrize("copy_bytes,src_bytes,dst_offset,src_offset,rule", [
    (12, 12, 0, 0, "the copy size must be 4, 8 or 16 bytes, got 12"),
    (2, 2, 0, 0, "the copy size must be 4, 8 or 16 bytes, got 2"),
    (8, 9, 0, 0, r"src-size must be at most the copy size \(8 bytes\), got 9"),
    (16, 16, 8, 0, r"the shared-memory destination 0x[0-9a-f]+ must be aligned to the copy "
                   r"size \(16 bytes\)"),
    (8, 8, 4, 0, r"the shared-memory destination 0x[0-9a-f]+ must be aligned to the copy "
                 r"size \(8 bytes\)"),
    (16, 16, 0, 4, r"the global source 0x[0-9a-f]+ must be aligned to the copy size "
                   r"\(16 bytes\)"),
    (4, 4, 0, 2, r"the global source 0x[0-9a-f]+ must be aligned to the copy size \(4 bytes\)"),
])
def test_a_broken_copy_rule_fails_the_launch_naming_it(module, copy_bytes, src_bytes, dst_offset,
                                                       src_offset, rule):
    with pytest.raises(KernelFault, match=f"^cp.async: {rule} at {COPY_LINE} in single_copy, "
                                          r"block \(0,0,0\) thread \(0,0,0\)") as caught:
        single_copy(module, copy_bytes, src_bytes, dst_offset, src_offset)
    assert caught.value.source == COPY_LINE
    assert caught.value.thread == (0, 0, 0)


@pytest.mark.parametrize("order,seed", ORDERS[:3])
def test_a_bad_source_faults_at_issue_in_the_issuing_thread(module, order, seed):
    with gpuconv.simulate(order=order, seed=seed), pytest.raises(KernelFault) as caught:
        single_copy(module, 16, 16, null_src=True)
    error = caught.value
    assert "invalid memory access (SIGSEGV) at address (nil)" in str(error)
    assert error.source == COPY_LINE
    first = {"forward": (0, 0, 0), "reverse": (3, 0, 0)}.get(order)
    assert first is None or error.thread == first


def test_a_destination_outside_shared_memory_fails_the_launch(module):
    line = line_of("async_copy.cu", "not shared memory")
    with pytest.raises(KernelFault, match=r"cp.async: the destination 0x[0-9a-f]+ \(16 bytes\) is "
                                          r"not inside the block's shared memory") as caught:
        module.get_function("copy_to_global")(1, 4, (np.zeros(16, np.float32),
                                                     aligned(np.ones(16, np.float32))))
    assert caught.value.source == line


@pytest.mark.parametrize("order,seed", ORDERS[:3])
def test_copies_nobody_waits_for_are_dropped_with_their_block(module, order, seed):
    # Block 0 leaves its copies in flight; a later block reusing the fibers (and very likely the
    # freed cell's address) must not receive them.
    out = np.zeros(3 * 32 * 4, np.float32)
    with gpuconv.simulate(order=order, seed=seed):
        module.get_function("abandoned_copies")(3, 32, (out, aligned(np.ones(128, np.float32))))
    assert np.isnan(out[128:]).all()


@pytest.mark.slow
def test_asan_runs_pipelines_and_reports_a_source_overrun_at_issue():
    asan = load_sanitized("async_copy.cu", ["pipeline<16, 3>", "pipeline<4, 2>", "single_copy",
                                            "abandoned_copies"], "address")
    for name, copy_bytes in [("pipeline<16, 3>", 16), ("pipeline<4, 2>", 4)]:
        x, n, expected = pipeline_case(copy_bytes)
        out = np.zeros(expected.size, np.float32)
        with gpuconv.simulate(order="random", seed=3):
            # Copies wholly past the input's end pass out-of-bounds sources with src-size 0:
            # AddressSanitizer stays quiet because they are not read.
            asan.get_function(name)(BLOCKS, THREADS, (out, x, np.int32(n), np.int32(TILES),
                                                      np.int32(CORRECT)))
        np.testing.assert_array_equal(out, expected)
    out = np.zeros(3 * 32 * 4, np.float32)
    asan.get_function("abandoned_copies")(3, 32, (out, np.ones(128, np.float32)))
    assert np.isnan(out[128:]).all()
    # Thread 3 copies 16 bytes from 12 bytes before the end of a 60-byte source.
    short = np.arange(60, dtype=np.uint8)
    with pytest.raises(SanitizerError) as caught:
        single_copy(asan, 16, 16, src=short)
    error = caught.value
    assert error.sanitizer == "address" and error.source == COPY_LINE
    assert error.thread == (3, 0, 0)
    assert "heap-buffer-overflow" in str(error) and "READ of size 16" in error.report


@pytest.mark.slow
@pytest.mark.parametrize("order,seed", ORDERS[:3])
def test_tsan_reports_the_pipeline_races_in_every_order(order, seed):
    # The poisoning at issue and the landing at the wait are the issuing thread's writes, so
    # ThreadSanitizer pairs them with the other threads' unsynchronized reads.
    tsan = load_sanitized("async_copy.cu", ["pipeline<16, 3>"], "thread")
    x, n, expected = pipeline_case(16)

    def run(bug):
        out = np.zeros(expected.size, np.float32)
        with gpuconv.simulate(order=order, seed=seed):
            tsan.get_function("pipeline<16, 3>")(BLOCKS, THREADS, (
                out, x, np.int32(n), np.int32(TILES), np.int32(bug)))
        return out

    np.testing.assert_array_equal(run(CORRECT), expected)
    for bug in (NO_BARRIER_AFTER_WAIT, ISSUE_BEFORE_BARRIER):
        with pytest.raises(SanitizerError) as caught:
            run(bug)
        error = caught.value
        assert error.sanitizer == "thread"
        assert str(error).startswith("ThreadSanitizer: data race in pipeline<16, 3> at ")
        other = re.search(r"racing with a \w+ by CUDA block \S+ thread \S+ at (\S+)", str(error))
        pair = {error.source, other.group(1)}
        assert PIPELINE_READ in pair and pair & {PIPELINE_ISSUE, PIPELINE_WAIT}, pair
