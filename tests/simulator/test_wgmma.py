"""The wgmma helpers of kernels/common/ptx.cuh (the shared-memory descriptors of WgmmaLayout,
wgmma.mma_async m64nNk16 on K-major and MN-major operands in the 32-, 64- and 128-byte swizzle
modes, commit and wait) against the PTX ISA's shared-memory and accumulator layouts, written out
here independently of the header (tests/simulator/kernels/wgmma.cu stages the tiles from the
swizzle rule; NumPy computes the product).

Under the simulator the helpers' CPU branches run, through its model of wgmma
(gpuconv/simulator/runtime/simt_wgmma.h: computed at the wait, the operands read as the
descriptors' fields say); on a Hopper GPU (the `gpu` test) the same kernel runs the inline PTX,
built for sm_90a, so the layouts and descriptors the simulator assumes are checked against the
hardware.
"""
import numpy as np
import pytest

import gpuconv
from gpuconv.simulator import SimulatorError

from sim_support import COMMON, KERNELS, ORDERS, load

try:
    import ml_dtypes
    TYPES = {"__half": np.float16, "__nv_bfloat16": ml_dtypes.bfloat16}
except ImportError:
    TYPES = {"__half": np.float16}

WIDTHS = (32, 64, 128)          # the instruction's N
ROW_BYTES = (32, 64, 128)       # the swizzle modes
NAMES = [f"wgmma_tile<{t}, {n}, {r}>" for t in sorted(TYPES) for n in WIDTHS for r in ROW_BYTES]
# MN-major: every swizzle mode whose rows (row_bytes / 2 of m or n) divide N, both orders of the
# atoms (the k groups inside or outside the columns: LBO and SBO on either side of each other).
MN_CASES = [(n, r, outer) for n in WIDTHS for r in ROW_BYTES if n % (r // 2) == 0
            for outer in (0, 1)]
MN_NAMES = [f"wgmma_tile_mn<{t}, {n}, {r}, {outer}>" for t in sorted(TYPES)
            for n, r, outer in MN_CASES]
MN_K = 32                       # k of an MN-major test tile: two k16 steps


def smem_bytes(n: int, row_bytes: int) -> int:
    # both tiles (a one-row shift included), a 1024-byte gap, the alignment's slack
    return (64 + 1 + n + 1) * row_bytes + 2 * 1024


def run(module, cuda_type, n, row_bytes, step, xp, rng, *, peek=False, misalign=False):
    dtype = TYPES[cuda_type]
    width = row_bytes // 2
    a = rng.integers(-6, 7, (64, width)).astype(dtype)   # small integers: every sum is exact
    b = rng.integers(-6, 7, (n, width)).astype(dtype)
    c = rng.integers(-6, 7, (64, n)).astype(np.float32)
    d = xp.full((64, n), np.nan, np.float32)
    early = xp.full((64, n), np.nan, np.float32)
    kernel = module.get_function(f"wgmma_tile<{cuda_type}, {n}, {row_bytes}>")
    kernel.max_dynamic_shared_size_bytes = smem_bytes(n, row_bytes)
    kernel((1, 1, 1), (128, 1, 1), [d, early, xp.asarray(a), xp.asarray(b), xp.asarray(c),
                                    np.int32(step), np.int32(peek), np.int32(misalign)],
           shared_mem=smem_bytes(n, row_bytes))
    to_host = (lambda v: v.get()) if xp is not np else (lambda v: v)
    k = slice(16 * step, 16 * step + 16)
    expected = c + a[:, k].astype(np.float32) @ b[:, k].astype(np.float32).T
    np.testing.assert_array_equal(to_host(d), expected)
    return to_host(early), c


def run_mn(module, cuda_type, n, row_bytes, outer, step, xp, rng):
    dtype = TYPES[cuda_type]
    a = rng.integers(-6, 7, (64, MN_K)).astype(dtype)
    b = rng.integers(-6, 7, (n, MN_K)).astype(dtype)
    c = rng.integers(-6, 7, (64, n)).astype(np.float32)
    d = xp.full((64, n), np.nan, np.float32)
    smem = (64 + n) * MN_K * 2 + 2 * 1024
    kernel = module.get_function(f"wgmma_tile_mn<{cuda_type}, {n}, {row_bytes}, {outer}>")
    kernel.max_dynamic_shared_size_bytes = smem
    kernel((1, 1, 1), (128, 1, 1), [d, xp.asarray(a), xp.asarray(b), xp.asarray(c),
                                    np.int32(step)], shared_mem=smem)
    k = slice(16 * step, 16 * step + 16)
    expected = c + a[:, k].astype(np.float32) @ b[:, k].astype(np.float32).T
    np.testing.assert_array_equal(d.get() if xp is not np else d, expected)


@pytest.fixture(scope="module")
def module():
    return load("wgmma.cu", NAMES + MN_NAMES)


@pytest.mark.parametrize("order,seed", ORDERS)
@pytest.mark.parametrize("cuda_type", sorted(TYPES))
def test_helpers_match_the_ptx_layouts(module, cuda_type, order, seed, rng):
    """Every width, swizzle mode and k16 step of a row (the descriptor's start 32 bytes on)."""
    with gpuconv.simulate(order=order, seed=seed):
        for n in WIDTHS:
            for row_bytes in ROW_BYTES:
                for step in range(row_bytes // 32):
                    run(module, cuda_type, n, row_bytes, step, np, rng)


@pytest.mark.parametrize("order,seed", ORDERS)
@pytest.mark.parametrize("cuda_type", sorted(TYPES))
def test_mn_major_operands_match_the_ptx_layouts(module, cuda_type, order, seed, rng):
    """imm-trans set on both operands: every width, swizzle mode, atom order and k16 step."""
    with gpuconv.simulate(order=order, seed=seed):
        for n, row_bytes, outer in MN_CASES:
            for step in range(MN_K // 16):
                run_mn(module, cuda_type, n, row_bytes, outer, step, np, rng)


def test_accumulators_are_written_at_the_wait(module, rng):
    """The model computes an issued wgmma when its group is waited for: read before the wait,
    the accumulators still hold what they held at the issue."""
    with gpuconv.simulate():
        early, c = run(module, "__half", 64, 64, 1, np, rng, peek=True)
    np.testing.assert_array_equal(early, c)


def test_tiles_off_the_swizzle_pattern_trap(module, rng):
    """A descriptor whose tile does not start where the swizzle pattern does (here one row
    late) is refused by the model, naming the line of the wgmma."""
    with gpuconv.simulate(), pytest.raises(SimulatorError, match="swizzle pattern"):
        run(module, "__half", 32, 64, 0, np, rng, misalign=True)


@pytest.mark.gpu
@pytest.mark.parametrize("cuda_type", sorted(TYPES))
def test_helpers_on_the_gpu(cuda_type, rng):
    import cupy
    if cupy.cuda.Device().compute_capability != "90":
        pytest.skip("wgmma is an sm_90a instruction: needs a compute capability 9.0 GPU")
    source = (KERNELS / "wgmma.cu").read_text()
    module = cupy.RawModule(code=source, options=("-std=c++17", f"-I{COMMON}", "-arch=sm_90a"),
                            name_expressions=NAMES + MN_NAMES)
    for n in WIDTHS:
        for row_bytes in ROW_BYTES:
            for step in range(row_bytes // 32):
                run(module, cuda_type, n, row_bytes, step, cupy, rng)
    for n, row_bytes, outer in MN_CASES:
        for step in range(MN_K // 16):
            run_mn(module, cuda_type, n, row_bytes, outer, step, cupy, rng)
