"""math="wgmma": the implicit GEMM's channels-last forward on Hopper's warpgroup tensor cores
(kernels/conv/implicit_gemm_wgmma.cu, kernels/common/wgmma_gemm.cuh), a launcher option of
``launch.conv2d`` that "auto" does not take yet.

Under the simulator (its model of wgmma computes an issued group at its wait, so a stage
refilled before every warpgroup waited for the wgmma that read it multiplies the new bytes),
every block tile and dtype in every thread order against the reference and, bit for bit,
against the mma.sync 8-channel kernel on the same tile: the same gather, the same k16 steps in
the same order, each summed in k order by both simulator models, the same epilogue. Then every
main-loop length around the stages' count, whole and split along k, and the cases the option
refuses. On a Hopper GPU (the `gpu` tests) the kernels run the inline PTX against the reference.
"""
from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from gpuconv.conv import launch, launch_common, launch_implicit_gemm

from kernel_support import ConvCase as Case

try:
    import ml_dtypes  # noqa: F401  (registers numpy's "bfloat16")
    DTYPES = [np.dtype(np.float16), np.dtype("bfloat16")]
except ImportError:
    DTYPES = [np.dtype(np.float16)]

ORDERS = ("forward", "reverse", "random")
# Relative to max(1, max |reference|): the output is rounded to the half type.
TOLERANCE = {"float16": 4e-3, "bfloat16": 3e-2}
TILES = launch_implicit_gemm.VECTOR_TILES


# Two groups of 16 channels (a k-tile of 32 spans two taps), dilation and padding that kill taps
# per tile, rows past one 128-row tile, 75 filters per group (a partial last filter tile for
# every width).
TILE_CASE = Case("tiles", (2, 32, 9, 10), (150, 16, 3, 3), dict(padding=2, dilation=2, groups=2))
# Main loops of 1, 2, 3, 4, 5 and 9 k-tiles of 32 (WGMMA_STAGES = 5: three copied ahead).
LOOP_CASES = [Case("k_tiles_1", (1, 8, 5, 6), (24, 8, 1, 1), {}),
              Case("k_tiles_2", (1, 48, 5, 6), (24, 48, 1, 1), {}),
              Case("k_tiles_3", (1, 32, 5, 6), (24, 32, 3, 1), dict(padding=(1, 0))),
              Case("k_tiles_4", (1, 40, 5, 6), (24, 40, 3, 1), dict(padding=(1, 0))),
              Case("k_tiles_5", (1, 16, 5, 6), (24, 16, 3, 3), dict(padding=1)),
              Case("k_tiles_9", (2, 32, 5, 6), (24, 32, 3, 3), dict(padding=1))]


def make_inputs(case: Case, dtype, rng, *, bias=False, residual=False):
    """NHWC input, KCRS weights, optional bias and NHWC residual, standard normal."""
    g = case.geom
    x = np.ascontiguousarray(rng.standard_normal(case.x).transpose(0, 2, 3, 1)).astype(dtype)
    w = rng.standard_normal(case.w).astype(dtype)
    b = rng.standard_normal(g.K).astype(dtype) if bias else None
    r = rng.standard_normal((g.N, g.P, g.Q, g.K)).astype(dtype) if residual else None
    return x, w, b, r


def run_kernel(case: Case, x, w, b=None, r=None, *, order="forward", activation=None,
               math="wgmma", split_k="auto", iterator="precomputed"):
    g = case.geom
    out = np.full((g.N, g.P, g.Q, g.K), np.nan, dtype=x.dtype)
    with gpuconv.simulate(order=order, seed=5):
        y = launch.conv2d(g, x, w, b, residual=r, activation=activation, algorithm="implicit_gemm",
                          data_format="NHWC", out=out, executor="simulator", iterator=iterator,
                          math=math, split_k=split_k)
    assert y is out
    return y


def reference(case: Case, x, w, b=None, r=None, *, activation=None):
    return gpuconv.conv2d(x, w, b, **case.kwargs, residual=r, activation=activation,
                          data_format="NHWC")


def assert_close(actual, expected, dtype):
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    assert not np.isnan(a).any(), "an output element was never written"
    tol = TOLERANCE[np.dtype(dtype).name] * max(1.0, float(np.abs(e).max()))
    np.testing.assert_allclose(a, e, rtol=0, atol=tol)


def force_tile(monkeypatch, tile):
    monkeypatch.setattr(launch_implicit_gemm, "pick_tile", lambda *args: tile)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("tile", TILES, ids=lambda t: f"{t.block_m}x{t.block_n}")
def test_every_tile(tile, dtype, order, monkeypatch, asked_kernels, rng):
    force_tile(monkeypatch, tile)
    g = TILE_CASE.geom
    assert g.gemm_m > tile.block_m and g.K_per_group % tile.block_n
    x, w, b, r = make_inputs(TILE_CASE, dtype, rng, bias=True, residual=True)
    y = run_kernel(TILE_CASE, x, w, b, r, order=order, activation="relu")
    wgmma_tile = launch_common.wgmma_tile(tile)
    assert asked_kernels[-1] == (f"{launch_implicit_gemm.WGMMA_KERNEL}<{gpuconv_type(dtype)}, "
                            f"{wgmma_tile.template_args}>")
    assert_close(y, reference(TILE_CASE, x, w, b, r, activation="relu"), dtype)
    warps = run_kernel(TILE_CASE, x, w, b, r, order=order, activation="relu", math="auto")
    assert asked_kernels[-1].startswith(launch_implicit_gemm.VECTOR_KERNEL + "<")
    np.testing.assert_array_equal(y.view(np.uint8), warps.view(np.uint8))


def gpuconv_type(dtype) -> str:
    return "__half" if np.dtype(dtype) == np.float16 else "__nv_bfloat16"


@pytest.mark.parametrize("split_k", (1, 2))
@pytest.mark.parametrize("case", LOOP_CASES, ids=lambda c: c.name)
def test_every_loop_length(case, split_k, monkeypatch, asked_kernels, rng):
    """The 128 x 128 tile's main loop at every length around its stages, whole and split in two
    along k (each split its own shorter loop, then the split-K epilogue)."""
    force_tile(monkeypatch, next(t for t in TILES if (t.block_m, t.block_n) == (128, 128)))
    assert -(-case.geom.gemm_k // 32) == int(case.name.rsplit("_", 1)[1])
    x, w, b, _ = make_inputs(case, np.float16, rng, bias=True)
    y = run_kernel(case, x, w, b, order="random", split_k=split_k)
    kernels = [n for n in asked_kernels if n.startswith(launch_implicit_gemm.WGMMA_KERNEL)]
    assert kernels[-1].endswith(f"128, 128, {launch_common.WGMMA_STAGES}>"), kernels
    split = split_k > 1 and case.geom.gemm_k > 32
    assert any("split_k_epilogue" in n for n in asked_kernels) == split
    assert_close(y, reference(case, x, w, b), np.float16)


def test_refusals(rng):
    """math="wgmma" runs only what the 8-channel kernel runs, in 16-bit types; anything else is
    a ValueError that says why (the gradients' refusals: test_conv_dgrad_wgmma.py)."""
    x, w, _, _ = make_inputs(TILE_CASE, np.float16, rng)
    g = TILE_CASE.geom
    with pytest.raises(ValueError, match="math='wgmma' runs channels-last"):
        with gpuconv.simulate():
            launch.conv2d(g, np.ascontiguousarray(x.transpose(0, 3, 1, 2)), w,
                          algorithm="implicit_gemm", executor="simulator", math="wgmma")
    with pytest.raises(ValueError, match="math='wgmma' needs float16 or bfloat16"):
        run_kernel(TILE_CASE, x.astype(np.float32), w.astype(np.float32))
    with pytest.raises(ValueError, match="runs the precomputed iterator only"):
        run_kernel(TILE_CASE, x, w, iterator="analytic")
    odd = Case("12_channels", (1, 12, 6, 7), (16, 12, 3, 3), dict(padding=1))
    xo, wo, _, _ = make_inputs(odd, np.float16, rng)
    with pytest.raises(ValueError, match="needs C/groups a multiple of 8"):
        run_kernel(odd, xo, wo)
    shifted = np.empty(x.size + 1, np.float16)[1:].reshape(x.shape)  # 2 bytes off alignment
    shifted[...] = x
    with pytest.raises(ValueError, match="needs 16-byte aligned input and weights"):
        run_kernel(TILE_CASE, shifted, w)


@pytest.mark.gpu
@pytest.mark.parametrize("split_k", (1, 2))
@pytest.mark.parametrize("tile", TILES, ids=lambda t: f"{t.block_m}x{t.block_n}")
def test_every_tile_on_gpu(tile, split_k, monkeypatch, asked_kernels, rng):
    """The Hopper kernels on the hardware (their descriptors, swizzle, waits and barriers were
    checked against the simulator's model of wgmma only)."""
    import cupy
    if cupy.cuda.Device().compute_capability != "90":
        pytest.skip("wgmma is an sm_90a instruction: needs a compute capability 9.0 GPU")
    force_tile(monkeypatch, tile)
    dtype = np.dtype(np.float16)  # CuPy arrays carry no bfloat16 (torch tensors do)
    for case in (TILE_CASE, LOOP_CASES[-1]):
        x, w, b, r = make_inputs(case, dtype, rng, bias=True, residual=True)
        y = launch.conv2d(case.geom, *(cupy.asarray(a) for a in (x, w, b)),
                          residual=cupy.asarray(r), activation="relu", algorithm="implicit_gemm",
                          data_format="NHWC", executor="cupy", math="wgmma", split_k=split_k)
        assert asked_kernels[-1].startswith(launch_implicit_gemm.WGMMA_KERNEL + "<")
        assert_close(cupy.asnumpy(y), reference(case, x, w, b, r, activation="relu"), dtype)
