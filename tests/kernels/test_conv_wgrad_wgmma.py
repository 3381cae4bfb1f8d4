"""math="wgmma" for the weight gradient: the channels-last 8-channel implicit GEMM on Hopper's
warpgroup tensor cores with MN-major stages (kernels/conv/wgrad_implicit_gemm_wgmma.cu), a
launcher option of ``launch_bwd_weight.run`` that "auto" does not take yet.

Under the simulator (whose model of wgmma reads the operands as the descriptors' fields and
imm-trans say, and computes an issued group at its wait: a stage refilled too early multiplies
the new bytes), every case and dtype in every thread order against the reference, in both
summation modes, and, bit for bit in the deterministic one, against the mma.sync 8-channel
kernel (64 x 128 blocks: the same pixel order, the same k16 steps, the same split partials), on
both warpgroup tiles (64 filters, 128); every main-loop length around the stages' count, on both
tiles; the cases the option refuses. On a Hopper GPU (the `gpu` tests) the kernel runs the
inline PTX against the reference.
"""
from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from gpuconv.conv import launch_bwd_common, launch_bwd_weight, launch_common
from gpuconv.reference import conv as reference
from kernel_support import record_launches

from test_conv_backward_cases import (DTYPES, ORDERS, Case, assert_close, assert_same_bits, f64,
                                      make_input, output_shape)

HALF_DTYPES = [d for d in DTYPES if np.dtype(d).itemsize == 2]
KERNEL = launch_bwd_weight.WGMMA_KERNEL

# 72 filters per group (the 128-filter tile, partial), 144 taps per group (two tiles of 128, the
# second partial), pixels in ragged k-tiles of 32 over several splits; a strided, dilated case
# with asymmetric padding (taps that read only padding at the borders) on the 64-filter tile.
CASES = [
    Case("3x3 grouped, 72 filters and 16 channels per group", (2, 32, 9, 10), (144, 16, 3, 3),
         dict(padding=1, groups=2)),
    Case("3x2 stride 2 dilation 2", (1, 8, 13, 12), (24, 8, 3, 2),
         dict(stride=2, dilation=2, padding=((2, 1), (1, 0)))),
]
# One split (MIN_PIXELS_PER_SPLIT raised): the GEMM's k is the N*P*Q pixels, 1, 2, 3, 4, 5 and 9
# k-tiles of 32 (WGMMA_STAGES = 5: three copied ahead of the one multiplied), each with 8
# filters (the 64-filter tile) and 136 (two 128-filter tiles, the second partial).
LOOP_CASES = [Case(f"k_tiles_{tiles}_{k}_filters", x, (k,) + w[1:], kwargs)
              for tiles, x, w, kwargs in (
                  (1, (1, 8, 5, 6), (8, 8, 3, 3), dict(padding=1)),
                  (2, (1, 8, 6, 10), (8, 8, 3, 3), dict(padding=1)),
                  (3, (1, 8, 9, 10), (16, 8, 1, 1), {}),
                  (4, (2, 16, 6, 10), (8, 16, 3, 3), dict(padding=1)),
                  (5, (1, 8, 10, 15), (8, 8, 3, 1), dict(padding=(1, 0))),
                  (9, (2, 8, 10, 14), (8, 8, 3, 3), dict(padding=1)))
              for k in (8, 136)]


@pytest.fixture
def names(monkeypatch):
    """Names of the kernels launch_bwd_weight launches, in order."""
    return record_launches(monkeypatch, launch_bwd_weight)


def inputs(rng, case: Case, dtype):
    n, c, h, w = case.x
    return make_input(rng, (n, h, w, c), dtype), make_input(rng, output_shape(case, "NHWC"), dtype)


def expected(case: Case, x, dy):
    """The float64 reference and its magnitude bound (test_conv_backward_cases.assert_close)."""
    geom = case.geometry()
    exact = reference.conv2d_weight(geom, f64(x), f64(dy), "NHWC")
    magnitude = reference.conv2d_weight(geom, np.abs(f64(x)), np.abs(f64(dy)), "NHWC")
    return exact, magnitude


def run(case: Case, x, dy, *, math="wgmma", order="forward", deterministic=True,
        warp_tiles="auto"):
    with gpuconv.simulate(order=order, seed=4):
        return launch_bwd_weight.run("implicit_gemm", case.geometry(), x, dy, "NHWC",
                                     deterministic, "simulator", math=math,
                                     warp_tiles=warp_tiles)


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_order_and_dtype(case, dtype, names, rng, monkeypatch):
    """Against the reference in every order and with atomics, and bit for bit (deterministic
    sums) against the mma.sync kernel on 8 warps of the same block."""
    monkeypatch.setattr(launch_bwd_common, "MIN_PIXELS_PER_SPLIT", 32)
    x, dy = inputs(rng, case, dtype)
    exact, magnitude = expected(case, x, dy)
    results = []
    tile = launch_bwd_weight.wgmma_block(case.geometry())
    for order in ORDERS:
        results.append(run(case, x, dy, order=order))
        assert names[-1] == f"{KERNEL}<{launch_bwd_weight.cuda_type(dtype)}, " \
                            f"{tile.template_args}>"
        assert_close(results[-1], exact, magnitude, dtype, f"{case} {dtype} {order}")
    results.append(run(case, x, dy, math="auto", warp_tiles="small"))
    assert names[-1].startswith("conv2d_wgrad_implicit_gemm_mma_vec<")
    assert_same_bits(results, f"{case} {dtype}")
    atomic = run(case, x, dy, order="random", deterministic=False)
    assert names[-1].startswith(KERNEL + "<")
    assert_close(atomic, exact, magnitude, dtype, f"{case} {dtype} atomics")


@pytest.mark.parametrize("case", LOOP_CASES, ids=lambda c: c.name)
def test_every_loop_length(case, names, rng, monkeypatch):
    monkeypatch.setattr(launch_bwd_common, "MIN_PIXELS_PER_SPLIT", 1 << 20)   # one split
    geom = case.geometry()
    assert -(-geom.N * geom.P * geom.Q // 32) == int(case.name.split("_")[2])
    x, dy = inputs(rng, case, np.float16)
    got = run(case, x, dy, order="random")
    block_m = 64 if geom.K_per_group <= 64 else 128
    assert names[-1] == f"{KERNEL}<__half, {block_m}, 128, {launch_common.WGMMA_STAGES}>"
    assert_close(got, *expected(case, x, dy), np.float16, case.name)


def test_refusals(rng):
    """math="wgmma" runs only what the 8-channel kernel runs, in 16-bit types. Anything else is
    a ValueError that says why."""
    case = CASES[1]
    x, dy = inputs(rng, case, np.float16)

    def refused(match, c=case, inp=x, grad_output=dy, data_format="NHWC"):
        with pytest.raises(ValueError, match=match), gpuconv.simulate():
            launch_bwd_weight.run("implicit_gemm", c.geometry(), inp, grad_output, data_format,
                                  True, "simulator", math="wgmma")

    refused("math='wgmma' runs channels-last",
            inp=np.ascontiguousarray(x.transpose(0, 3, 1, 2)),
            grad_output=np.ascontiguousarray(dy.transpose(0, 3, 1, 2)), data_format="NCHW")
    refused("math='wgmma' needs float16 or bfloat16", inp=x.astype(np.float32),
            grad_output=dy.astype(np.float32))
    for twelve, what in ((Case("12 filters", (1, 8, 9, 9), (12, 8, 3, 3), dict(padding=1)),
                          "K/groups"),
                         (Case("12 channels", (1, 24, 9, 9), (16, 12, 3, 3),
                               dict(padding=1, groups=2)), "C/groups")):
        xs, grad_output = inputs(rng, twelve, np.float16)
        refused(f"needs {what} a multiple of 8 .* got 12", c=twelve, inp=xs,
                grad_output=grad_output)
    for what, array in (("input", x), ("grad_output", dy)):
        shifted = np.empty(array.size + 1, np.float16)[1:].reshape(array.shape)  # 2 bytes off
        shifted[...] = array
        refused(f"needs a 16-byte aligned {what}", **{"inp" if what == "input" else
                                                      "grad_output": shifted})
    with pytest.raises(ValueError, match="math must be one of"), gpuconv.simulate():
        launch_bwd_weight.run("implicit_gemm", case.geometry(), x, dy, "NHWC", True,
                              "simulator", math="warpgroups")


@pytest.mark.gpu
@pytest.mark.parametrize("deterministic", (True, False))
@pytest.mark.parametrize("case", CASES + LOOP_CASES[-1:], ids=lambda c: c.name)
def test_every_case_on_gpu(case, deterministic, names, rng):
    """The Hopper kernel on the hardware (its MN-major descriptors, swizzle, waits and barriers
    were checked against the simulator's model of wgmma only)."""
    import cupy
    if cupy.cuda.Device().compute_capability != "90":
        pytest.skip("wgmma is an sm_90a instruction: needs a compute capability 9.0 GPU")
    dtype = np.dtype(np.float16)  # CuPy arrays carry no bfloat16 (torch tensors do)
    x, dy = inputs(rng, case, dtype)
    got = launch_bwd_weight.run("implicit_gemm", case.geometry(), cupy.asarray(x),
                                cupy.asarray(dy), "NHWC", deterministic, "cupy", math="wgmma")
    assert names[-1].startswith(KERNEL + "<")
    assert_close(cupy.asnumpy(got), *expected(case, x, dy), dtype, f"{case} on GPU")
