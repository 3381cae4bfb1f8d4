"""math="wgmma" for the data gradient: the channels-last 8-channel implicit GEMM on Hopper's
warpgroup tensor cores (kernels/conv/dgrad_implicit_gemm_wgmma.cu), a launcher option of
``launch_bwd_data.run`` that "auto" does not take yet.

Under the simulator (whose model of wgmma computes an issued group at its wait: a stage refilled
too early multiplies the new bytes), every case and dtype in every thread order against the
reference and, bit for bit, against the mma.sync 8-channel kernel on the same 128 x 64 block
(the same phases and gathers, the same k16 steps in the same order, the same epilogue); every
main-loop length around the stages' count, including the empty loops of tapless stride phases;
the cases the option refuses. On a Hopper GPU (the `gpu` tests) the kernel runs the inline PTX
against the reference.
"""
from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from gpuconv.conv import launch_bwd_data, launch_common
from gpuconv.reference import conv as reference
from kernel_support import record_launches

from test_conv_backward_cases import (DTYPES, ORDERS, Case, assert_close, assert_same_bits, f64,
                                      make_input, output_shape)

HALF_DTYPES = [d for d in DTYPES if np.dtype(d).itemsize == 2]
KERNEL = launch_bwd_data.WGMMA_KERNEL

# Phases of 1, 2 and 4 taps over 16 filters per group (k of 16 to 64: ragged k-tiles of 32), two
# pixel tiles per phase, 70 channels per group (a partial second 64-channel tile); with dilation
# 2 at stride 2 three of the four phases have no tap at all (an empty main loop: the bias alone).
CASES = [
    Case("3x3 stride 2 grouped, 16 filters per group", (2, 140, 17, 19), (32, 70, 3, 3),
         dict(stride=2, padding=1, groups=2)),
    Case("3x3 stride 2 dilation 2", (1, 24, 13, 12), (24, 24, 3, 3),
         dict(stride=2, padding=2, dilation=2)),
]
# Stride 1: one phase whose GEMM k is K * R * S: 1, 2, 3, 4, 5 and 9 k-tiles of 32
# (WGMMA_STAGES = 5: three copied ahead of the one multiplied).
LOOP_CASES = [Case("k_tiles_1", (1, 24, 5, 6), (8, 24, 1, 1)),
              Case("k_tiles_2", (1, 24, 5, 6), (48, 24, 1, 1)),
              Case("k_tiles_3", (1, 24, 5, 6), (32, 24, 3, 1), dict(padding=(1, 0))),
              Case("k_tiles_4", (1, 24, 5, 6), (40, 24, 3, 1), dict(padding=(1, 0))),
              Case("k_tiles_5", (1, 24, 5, 6), (16, 24, 3, 3), dict(padding=1)),
              Case("k_tiles_9", (2, 24, 5, 6), (32, 24, 3, 3), dict(padding=1))]


@pytest.fixture
def names(monkeypatch):
    """Names of the kernels launch_bwd_data launches, in order."""
    return record_launches(monkeypatch, launch_bwd_data)


def inputs(rng, case: Case, dtype, *, bias=False):
    w = make_input(rng, case.w, dtype)
    dy = make_input(rng, output_shape(case, "NHWC"), dtype)
    b = make_input(rng, (case.x[1],), dtype) if bias else None
    return w, dy, b


def expected(case: Case, w, dy, bias=None):
    """The float64 reference and its magnitude bound (test_conv_backward_cases.assert_close)."""
    geom = case.geometry()
    exact = reference.conv2d_input(geom, f64(w), f64(dy), "NHWC")
    magnitude = reference.conv2d_input(geom, np.abs(f64(w)), np.abs(f64(dy)), "NHWC")
    if bias is not None:
        exact, magnitude = exact + f64(bias), magnitude + np.abs(f64(bias))
    return exact, magnitude


def run(case: Case, w, dy, bias=None, *, math="wgmma", order="forward", warp_tiles="auto"):
    with gpuconv.simulate(order=order, seed=3):
        return launch_bwd_data.run("implicit_gemm", case.geometry(), w, dy, bias, "NHWC",
                                   "simulator", math=math, warp_tiles=warp_tiles)


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_order_and_dtype(case, dtype, names, rng):
    """Against the reference in every order (bias through conv_transpose2d's epilogue path),
    and bit for bit against the mma.sync kernel on 8 warps of the same block."""
    w, dy, b = inputs(rng, case, dtype, bias=True)
    exact, magnitude = expected(case, w, dy, b)
    results = []
    for order in ORDERS:
        results.append(run(case, w, dy, b, order=order))
        assert names[-1] == f"{KERNEL}<{launch_bwd_data.cuda_type(dtype)}, " \
                            f"{launch_bwd_data.WGMMA_TILE.template_args}>"
        assert_close(results[-1], exact, magnitude, dtype, f"{case} {dtype} {order}")
    mma = launch_bwd_data.vector_tile(0, "small")
    assert (mma.block_m, mma.block_n) == (launch_bwd_data.WGMMA_TILE.block_m,
                                          launch_bwd_data.WGMMA_TILE.block_n)
    results.append(run(case, w, dy, b, math="auto", warp_tiles="small"))
    assert names[-1].startswith("conv2d_dgrad_implicit_gemm_mma_vec<")
    assert_same_bits(results, f"{case} {dtype}")


@pytest.mark.parametrize("case", LOOP_CASES, ids=lambda c: c.name)
def test_every_loop_length(case, names, rng):
    geom = case.geometry()
    assert -(-geom.K_per_group * geom.R * geom.S // 32) == int(case.name.rsplit("_", 1)[1])
    w, dy, _ = inputs(rng, case, np.float16)
    got = run(case, w, dy, order="random")
    assert names[-1].startswith(KERNEL + "<")
    assert names[-1].endswith(f", {launch_common.WGMMA_STAGES}>")
    assert_close(got, *expected(case, w, dy), np.float16, case.name)


def test_refusals(rng):
    """math="wgmma" runs only what the 8-channel kernel runs, in 16-bit types. Anything else is
    a ValueError that says why."""
    case = CASES[1]
    w, dy, _ = inputs(rng, case, np.float16)

    def refused(match, weight=w, grad_output=dy, data_format="NHWC", c=case):
        with pytest.raises(ValueError, match=match), gpuconv.simulate():
            launch_bwd_data.run("implicit_gemm", c.geometry(), weight, grad_output, None,
                                data_format, "simulator", math="wgmma")

    refused("math='wgmma' runs channels-last", grad_output=np.ascontiguousarray(
        dy.transpose(0, 3, 1, 2)), data_format="NCHW")
    refused("math='wgmma' needs float16 or bfloat16", weight=w.astype(np.float32),
            grad_output=dy.astype(np.float32))
    twelve = Case("12 filters", (1, 8, 9, 9), (12, 8, 3, 3), dict(padding=1))
    refused("needs K/groups a multiple of 8 .* got 12", c=twelve,
            weight=make_input(rng, twelve.w, np.float16),
            grad_output=make_input(rng, output_shape(twelve, "NHWC"), np.float16))
    shifted = np.empty(dy.size + 1, np.float16)[1:].reshape(dy.shape)  # 2 bytes off alignment
    shifted[...] = dy
    refused("needs a 16-byte aligned grad_output", grad_output=shifted)


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES + LOOP_CASES[-1:], ids=lambda c: c.name)
def test_every_case_on_gpu(case, names, rng):
    """The Hopper kernel on the hardware (its descriptors, swizzle, waits and barriers were
    checked against the simulator's model of wgmma only)."""
    import cupy
    if cupy.cuda.Device().compute_capability != "90":
        pytest.skip("wgmma is an sm_90a instruction: needs a compute capability 9.0 GPU")
    dtype = np.dtype(np.float16)  # CuPy arrays carry no bfloat16 (torch tensors do)
    w, dy, b = inputs(rng, case, dtype, bias=True)
    got = launch_bwd_data.run("implicit_gemm", case.geometry(), cupy.asarray(w),
                              cupy.asarray(dy), cupy.asarray(b), "NHWC", "cupy", math="wgmma")
    assert names[-1].startswith(KERNEL + "<")
    assert_close(cupy.asnumpy(got), *expected(case, w, dy, b), dtype, f"{case} on GPU")
