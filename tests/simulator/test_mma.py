"""The tensor-core helpers of kernels/common/ptx.cuh (ldmatrix.x4 with and without .trans,
mma.m16n8k16) against the PTX ISA's fragment layouts, written out here independently of the
header.

Under the simulator the helpers' CPU branches run; on a GPU (the `gpu` test) the same kernel
runs the inline PTX, so the layouts the simulator assumes are checked against the hardware.
"""
import numpy as np
import pytest

import gpuconv

from sim_support import COMMON, KERNELS, ORDERS, load

try:
    import ml_dtypes
    TYPES = {"__half": np.float16, "__nv_bfloat16": ml_dtypes.bfloat16}
except ImportError:
    TYPES = {"__half": np.float16}


def expected_fragments(a, b):
    """Per lane: the four A registers and the four registers of the ldmatrix over B's 16 x 16
    tile (B's 8 columns twice), each two 16-bit elements, the lower index in the low half."""
    bits = lambda v: int(np.asarray(v).view(np.uint16))
    pack = lambda lo, hi: bits(lo) | (bits(hi) << 16)
    b16 = np.concatenate([b, b], axis=1)
    frag_a = np.zeros((32, 4), np.uint32)
    frag_b = np.zeros((32, 4), np.uint32)
    for lane in range(32):
        gid, tig = lane // 4, lane % 4
        for i in range(4):
            row, k = gid + 8 * (i % 2), 2 * tig + 8 * (i // 2)
            frag_a[lane, i] = pack(a[row, k], a[row, k + 1])
            k, n = 2 * tig + 8 * (i % 2), gid + 8 * (i // 2)
            frag_b[lane, i] = pack(b16[k, n], b16[k + 1, n])
    return frag_a.ravel(), frag_b.ravel()


def run_and_check(module, cuda_type, xp, rng):
    dtype = TYPES[cuda_type]
    a = rng.integers(-6, 7, (16, 16)).astype(dtype)   # small integers: every sum is exact
    b = rng.integers(-6, 7, (16, 8)).astype(dtype)
    c = rng.integers(-6, 7, (16, 8)).astype(np.float32)
    d = xp.full((16, 8), np.nan, np.float32)
    frag_a = xp.zeros(256, np.uint32)   # ldmatrix .trans from k-major tiles, then plain along k
    frag_b = xp.zeros(256, np.uint32)
    args = [d, frag_a, frag_b, xp.asarray(a), xp.asarray(b), xp.asarray(c)]
    module.get_function(f"mma_tile<{cuda_type}>")((1, 1, 1), (32, 1, 1), args)
    to_host = (lambda v: v.get()) if xp is not np else (lambda v: v)
    want_a, want_b = expected_fragments(a, b)
    np.testing.assert_array_equal(to_host(frag_a), np.concatenate([want_a, want_a]))
    np.testing.assert_array_equal(to_host(frag_b), np.concatenate([want_b, want_b]))
    np.testing.assert_array_equal(to_host(d), c + a.astype(np.float32) @ b.astype(np.float32))


@pytest.mark.parametrize("order,seed", ORDERS)
@pytest.mark.parametrize("cuda_type", sorted(TYPES))
def test_helpers_match_the_ptx_layouts(cuda_type, order, seed, rng):
    module = load("mma.cu", [f"mma_tile<{t}>" for t in sorted(TYPES)])
    with gpuconv.simulate(order=order, seed=seed):
        run_and_check(module, cuda_type, np, rng)


@pytest.mark.gpu
@pytest.mark.parametrize("cuda_type", sorted(TYPES))
def test_helpers_on_the_gpu(cuda_type, rng):
    import cupy
    source = (KERNELS / "mma.cu").read_text()
    module = cupy.RawModule(code=source, options=("-std=c++17", f"-I{COMMON}"),
                            name_expressions=[f"mma_tile<{t}>" for t in sorted(TYPES)])
    run_and_check(module, cuda_type, cupy, rng)
