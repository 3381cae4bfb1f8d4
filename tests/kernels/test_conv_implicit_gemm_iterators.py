"""The implicit GEMM's two activation iterators (kernels/conv/implicit_gemm.cu): "precomputed"
(row offsets, tap masks and a shared tap table set up before the main loop) against the NumPy
reference, and against "analytic", which it must match bit for bit: both gather the same
elements in the same k order into the same main loop, so any difference is a gather bug.

Everything runs under ``gpuconv.simulate()`` (forward, reverse and random thread orders) through
``launch.conv2d(..., iterator=...)``, the launcher option tests and benchmarks use to pick one.
The shapes are small and odd: padding on every side (taps that miss the image for every row),
stride and dilation, groups, 1xN / Nx1 / 1x1 filters, exactly 32 taps (the mask's last bit),
more than 32 (the analytic fallback), C*R*S/groups not a multiple of the k tile (8), one input
channel, and a multi-tile case for the large (hot) tile. Outputs start as NaN.
"""
from __future__ import annotations

import dataclasses
import itertools
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import gpuconv
from gpuconv.conv import launch, launch_common, launch_implicit_gemm
from gpuconv.conv.geometry import conv2d_geometry

from kernel_support import ConvCase as Case

try:
    import ml_dtypes  # noqa: F401  (registers numpy's "bfloat16")
    BFLOAT16 = [np.dtype("bfloat16")]
except ImportError:
    BFLOAT16 = []

DTYPES = [np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.float64)] + BFLOAT16
LAYOUTS = ("NCHW", "NHWC")
ORDERS = ("forward", "reverse", "random")
# Relative to max(1, max |reference|): half types round the output, float32 sums C*R*S products.
TOLERANCE = {"float16": 4e-3, "bfloat16": 3e-2, "float32": 2e-5, "float64": 1e-12}


CASES = [
    # Padding wider than the filter reach on every side: whole tap rows/columns miss the image.
    Case("pad_every_side", (2, 3, 5, 6), (4, 3, 3, 3), dict(padding=((2, 3), (3, 2)))),
    Case("stride2_dil2_asym_pad", (1, 5, 9, 11), (6, 5, 3, 3),
         dict(stride=2, dilation=2, padding=((3, 1), (0, 2)))),
    Case("groups3_1x5", (2, 6, 4, 9), (9, 2, 1, 5), dict(padding=(0, 2), groups=3)),
    Case("5x3_stride3_same", (1, 4, 11, 8), (5, 4, 5, 3), dict(stride=3, padding="same")),
    Case("7x1_dil3", (2, 3, 16, 5), (4, 3, 7, 1), dict(dilation=(3, 1), padding=(4, 0))),
    Case("one_channel", (2, 1, 7, 6), (3, 1, 3, 3), dict(padding=1)),
    Case("depthwise_mult2", (1, 4, 6, 7), (8, 1, 3, 3), dict(padding=1, groups=4)),
    Case("1x1_stride2", (2, 5, 7, 8), (3, 5, 1, 1), dict(stride=2)),
    Case("filter_wider_than_input", (1, 2, 3, 4), (2, 2, 5, 5), dict(padding=2)),
    Case("taps32_4x8", (1, 3, 6, 10), (3, 3, 4, 8), dict(padding=((1, 2), (3, 4)))),
    Case("groups2_s2_d2_same", (1, 8, 9, 8), (4, 4, 3, 3),
         dict(stride=2, dilation=2, padding="same", groups=2)),
]
CASE_BY_NAME = {c.name: c for c in CASES}
# 36 taps: more than a row's mask holds, so "auto" runs the analytic kernel.
WIDE_FILTER = Case("taps36_6x6", (1, 2, 8, 9), (3, 2, 6, 6), dict(padding=((2, 3), (1, 4))))
# Several 128x128 tiles along M and N and many k-tiles (run with the large tile forced).
MULTI_TILE = Case("multi_tile", (2, 9, 11, 37), (70, 9, 3, 3), dict(padding=1))


def test_cases_cover_what_they_claim():
    for case in CASES:
        g = case.geom
        assert g.R * g.S <= launch_implicit_gemm.MAX_TAPS, case.name
    ragged = [c for c in CASES if (c.geom.C_per_group * c.geom.R * c.geom.S) % 8]
    assert len(ragged) >= 6
    g = CASE_BY_NAME["pad_every_side"].geom
    assert min(g.pad_top, g.pad_bottom, g.pad_left, g.pad_right) >= g.R - 1
    assert CASE_BY_NAME["taps32_4x8"].geom.R * CASE_BY_NAME["taps32_4x8"].geom.S == 32
    assert WIDE_FILTER.geom.R * WIDE_FILTER.geom.S > launch_implicit_gemm.MAX_TAPS


# ------------------------------------------------------------------------------------ helpers


def to_layout(a, data_format):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if data_format == "NHWC" else a


def make_inputs(case: Case, dtype, data_format: str, kind: str, rng, *, bias=False, residual=False):
    def make(shape, salt):
        if kind == "random":
            return rng.standard_normal(shape)
        if kind == "ones":
            return np.ones(shape)
        # Position-dependent small integers: exact sums in every dtype, and wrong indices show.
        return ((np.arange(int(np.prod(shape))) * (7 + salt)) % 11 - 5).reshape(shape) / 2.0

    g = case.geom
    x = to_layout(make(case.x, 0), data_format).astype(dtype)
    w = make(case.w, 2).astype(dtype)
    b = make((g.K,), 4).astype(dtype) if bias else None
    r = to_layout(make(g.output_shape, 6), data_format).astype(dtype) if residual else None
    return x, w, b, r


def run_kernel(case: Case, x, w, b=None, r=None, *, iterator, data_format, order="forward",
               activation=None, math="auto", warp_tiles="auto", split_k="auto"):
    g = case.geom
    shape = (g.N, g.P, g.Q, g.K) if data_format == "NHWC" else g.output_shape
    out = np.full(shape, np.nan, dtype=x.dtype)
    with gpuconv.simulate(order=order, seed=11):
        y = launch.conv2d(g, x, w, b, residual=r, activation=activation, algorithm="implicit_gemm",
                          data_format=data_format, out=out, executor="simulator",
                          iterator=iterator, math=math, warp_tiles=warp_tiles, split_k=split_k)
    assert y is out
    return y


def reference(case: Case, x, w, b=None, r=None, *, data_format, activation=None):
    return gpuconv.conv2d(x, w, b, **case.kwargs, residual=r, activation=activation,
                          data_format=data_format)


def assert_close(actual, expected, dtype, exact=False):
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    assert not np.isnan(a).any(), "an output element was never written"
    tol = 0.0 if exact else TOLERANCE[np.dtype(dtype).name] * max(1.0, float(np.abs(e).max()))
    np.testing.assert_allclose(a, e, rtol=0, atol=tol)


def check_both(case, dtype, data_format, order, rng, *, kind="random", math="auto",
               warp_tiles="auto", **epilogue):
    """precomputed == reference (within tolerance, exactly for structured inputs) and
    precomputed == analytic bit for bit. ``math``: the launcher option (16-bit dtypes run on
    the tensor cores unless "cuda_cores"); ``warp_tiles``: the precomputed run's."""
    x, w, b, r = make_inputs(case, dtype, data_format, kind, rng,
                             bias=epilogue.pop("bias", False), residual=epilogue.pop("residual", False))
    expected = reference(case, x, w, b, r, data_format=data_format, **epilogue)
    fast = run_kernel(case, x, w, b, r, iterator="precomputed", data_format=data_format,
                      order=order, math=math, warp_tiles=warp_tiles, **epilogue)
    assert_close(fast, expected, dtype, exact=kind != "random" and np.dtype(dtype).name != "bfloat16"
                 and epilogue.get("activation") in (None, "relu"))
    readable = run_kernel(case, x, w, b, r, iterator="analytic", data_format=data_format,
                          order=order, math=math, **epilogue)
    np.testing.assert_array_equal(fast.view(np.uint8), readable.view(np.uint8))


# ------------------------------------------------------------------------------------ tests


def _grid():
    """Every case in both layouts, dtype and thread order rotated."""
    rotation = itertools.cycle(itertools.product(("float32", "float16", "float64"), ORDERS))
    for case in CASES:
        for layout in LAYOUTS:
            dtype, order = next(rotation)
            yield pytest.param(case.name, layout, dtype, order,
                               id=f"{case.name}-{layout}-{dtype}-{order}")


@pytest.mark.parametrize("case_name, data_format, dtype, order", list(_grid()))
def test_precomputed_matches_reference_and_analytic(case_name, data_format, dtype, order, rng):
    check_both(CASE_BY_NAME[case_name], np.dtype(dtype), data_format, order, rng)


@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_dtype(dtype, data_format, rng):
    check_both(CASE_BY_NAME["stride2_dil2_asym_pad"], dtype, data_format, "random", rng)


@pytest.mark.parametrize("math", ("tensor_cores", "cuda_cores"))
@pytest.mark.parametrize("kind", ("arange", "ones"))
@pytest.mark.parametrize("data_format", LAYOUTS)
def test_structured_inputs_are_exact(kind, data_format, math, rng):
    check_both(CASE_BY_NAME["pad_every_side"], np.dtype(np.float16), data_format, "reverse", rng,
               kind=kind, math=math)


# ------------------------------------------------------------------------------------ tensor cores

# Several row tiles (the last partial), a partial filter tile, and k-tiles of 32 (two k16 steps)
# with a ragged last one, for every tensor-core tile; bias, residual and an activation.
TENSOR_CORE_CASE = Case("tensor_core_tiles", (2, 7, 9, 10), (75, 7, 3, 3), dict(padding=1))


@pytest.mark.parametrize("tile", launch_implicit_gemm.tiles("float16", tensor_cores=True),
                         ids=lambda t: t.template_args.replace(" ", ""))
@pytest.mark.parametrize("data_format", LAYOUTS)
def test_tensor_core_tiles(tile, data_format, monkeypatch, asked_kernels, rng):
    monkeypatch.setattr(launch_implicit_gemm, "pick_tile", lambda *args: tile)
    g = TENSOR_CORE_CASE.geom
    assert g.gemm_m > tile.block_m and g.K % tile.block_n and g.gemm_k % tile.block_k
    dtypes = [np.dtype(np.float16)] + BFLOAT16
    for dtype, order in zip(dtypes, ("random", "reverse") if data_format == "NCHW"
                            else ("forward", "random")):
        check_both(TENSOR_CORE_CASE, dtype, data_format, order, rng, bias=True, residual=True,
                   activation="sigmoid")
        assert asked_kernels[-1].endswith(f"{tile.template_args}>")
        assert "_mma<" in asked_kernels[-1]


# Channels-last, C/groups a multiple of 8: the precomputed iterator's tensor-core kernel copies
# both operands 8 channels at a time (conv2d_implicit_gemm_precomputed_mma_vec: cp.async,
# VECTOR_STAGES stages). Two groups of 16 channels (a k-tile of 32 spans two taps), dilation
# and padding that kill taps per tile.
VECTOR_CASE = Case("vector_loads", (2, 32, 9, 10), (150, 16, 3, 3),
                   dict(padding=2, dilation=2, groups=2))


@pytest.mark.parametrize("warp_tiles", ("large", "small"))
@pytest.mark.parametrize("tile", launch_implicit_gemm.VECTOR_TILES,
                         ids=lambda t: t.template_args.replace(" ", ""))
def test_vector_loads(tile, warp_tiles, monkeypatch, asked_kernels, rng):
    """The 8-channel kernel, its block tile on 4 warps or 8, against the reference and, bit
    for bit, against the analytic tensor-core kernel (same k order, same mma steps)."""
    monkeypatch.setattr(launch_implicit_gemm, "pick_tile", lambda *args: tile)
    g = VECTOR_CASE.geom
    assert g.gemm_m > tile.block_m and g.K_per_group % tile.block_n
    vector_tile = launch_implicit_gemm.vector_tile(tile, g.gemm_k, warp_tiles)
    assert vector_tile.threads == (128 if warp_tiles == "large" else 256)
    for dtype, order in zip([np.dtype(np.float16)] + BFLOAT16, ("random", "reverse")):
        check_both(VECTOR_CASE, dtype, "NHWC", order, rng, bias=True, residual=True,
                   activation="relu", warp_tiles=warp_tiles)
        precomputed = [n for n in asked_kernels if "precomputed" in n][-1]
        assert precomputed.startswith(launch_implicit_gemm.VECTOR_KERNEL + "<")
        assert precomputed.endswith(f"{vector_tile.template_args}>")


def test_warp_tiles_by_depth(asked_kernels, rng):
    """"auto" runs the 8-channel kernel's block on 4 warps from FORWARD_LARGE_WARPS_MIN_K GEMM
    k on, on 8 below; a forced choice holds whatever the depth; another value is a ValueError."""
    deep = Case("deep", (1, 128, 6, 7), (16, 128, 3, 3), dict(padding=1))     # k = 1152
    shallow = Case("shallow", (1, 24, 6, 7), (16, 24, 3, 3), dict(padding=1))  # k = 216
    assert deep.geom.gemm_k >= launch_common.FORWARD_LARGE_WARPS_MIN_K > shallow.geom.gemm_k
    # The shallow GEMM takes the 64 x 64 tile (too few blocks for a wider one), the deep one
    # the 128 x 32 that holds its 16 filters (long k: launch_common.LONG_K_LARGE_TILE).
    blocks = {"deep": (128, 32), "shallow": (64, 64)}
    for case, warp_tiles, large in [(deep, "auto", True), (shallow, "auto", False),
                                    (shallow, "large", True), (deep, "small", False)]:
        block = blocks[case.name]
        tile = launch_implicit_gemm.pick_tile(case.geom, np.float16, "simulator",
                                              tensor_cores=True)
        assert (tile.block_m, tile.block_n) == block
        warps = launch_common.LARGE_WARP_TILES[block] if large else (tile.warp_m, tile.warp_n)
        x, w, _, _ = make_inputs(case, np.float16, "NHWC", "random", rng)
        y = run_kernel(case, x, w, iterator="precomputed", data_format="NHWC",
                       warp_tiles=warp_tiles)
        assert asked_kernels[-1].startswith(launch_implicit_gemm.VECTOR_KERNEL + "<")
        assert asked_kernels[-1].endswith(f"{block[0]}, {block[1]}, 32, {warps[0]}, {warps[1]}, 4>"), \
            asked_kernels[-1]
        assert_close(y, reference(case, x, w, data_format="NHWC"), np.float16)
    with pytest.raises(ValueError, match="warp_tiles must be one of"):
        run_kernel(deep, x, w, iterator="precomputed", data_format="NHWC", warp_tiles="medium")


# Loop lengths of the 8-channel kernel's main loop in k-tiles of 32 (4 stages: the k-tiles
# that copy are all but the last 3): 1, 2, 3, 4 and 9.
LOOP_CASES = [Case("k_tiles_1", (1, 8, 5, 6), (24, 8, 1, 1), {}),
              Case("k_tiles_2", (1, 48, 5, 6), (24, 48, 1, 1), {}),
              Case("k_tiles_3", (1, 32, 5, 6), (24, 32, 3, 1), dict(padding=(1, 0))),
              Case("k_tiles_4", (1, 40, 5, 6), (24, 40, 3, 1), dict(padding=(1, 0))),
              Case("k_tiles_9", (2, 32, 5, 6), (24, 32, 3, 3), dict(padding=1))]


@pytest.fixture
def tile_128x128(monkeypatch):
    """The launcher picks the 128 x 128 tensor-core tile whatever the shape."""
    tile = next(t for t in launch_implicit_gemm.VECTOR_TILES
                if (t.block_m, t.block_n) == (128, 128))
    monkeypatch.setattr(launch_implicit_gemm, "pick_tile", lambda *args: tile)
    return tile


@pytest.mark.parametrize("split_k", (1, 2))
@pytest.mark.parametrize("case", LOOP_CASES, ids=lambda c: c.name)
def test_copies_among_the_mma(case, split_k, tile_128x128, asked_kernels, rng):
    """The 128 x 128 tile on 4 warps of 64 x 64, whose copies run among the mma in a loop of
    their own (async_gemm.cuh, Mma::COPIES_AMONG_MMA), at every loop length around the
    stages' count, whole and split in two along k (each split its own shorter loop)."""
    assert -(-case.geom.gemm_k // 32) == int(case.name.rsplit("_", 1)[1])
    x, w, b, _ = make_inputs(case, np.float16, "NHWC", "random", rng, bias=True)
    y = run_kernel(case, x, w, b, iterator="precomputed", data_format="NHWC", order="random",
                   warp_tiles="large", split_k=split_k)
    kernels = [n for n in asked_kernels if n.startswith(launch_implicit_gemm.VECTOR_KERNEL + "<")]
    assert kernels[-1].endswith("128, 128, 32, 64, 64, 4>"), kernels
    assert any("split_k_epilogue" in n for n in asked_kernels) == (split_k > 1 and case.geom.gemm_k > 32)
    assert_close(y, reference(case, x, w, b, data_format="NHWC"), np.float16)


@pytest.mark.gpu
@pytest.mark.parametrize("split_k", (1, 2))
@pytest.mark.parametrize("case", LOOP_CASES, ids=lambda c: c.name)
def test_copies_among_the_mma_on_gpu(case, split_k, tile_128x128, asked_kernels, rng):
    """test_copies_among_the_mma on the hardware (its cp.async waits and barriers were checked
    against the simulator's model only)."""
    import cupy
    x, w, b, _ = make_inputs(case, np.float16, "NHWC", "random", rng, bias=True)
    y = launch.conv2d(case.geom, *(cupy.asarray(a) for a in (x, w, b)),
                      algorithm="implicit_gemm", data_format="NHWC", executor="cupy",
                      warp_tiles="large", split_k=split_k)
    assert any(n.endswith("128, 128, 32, 64, 64, 4>") for n in asked_kernels), asked_kernels
    assert_close(cupy.asnumpy(y), reference(case, x, w, b, data_format="NHWC"), np.float16)


def test_vector_loads_need_aligned_channels(asked_kernels, rng):
    """C/groups not a multiple of 8, or an input not 16-byte aligned: the scalar kernel."""
    x, w, _, _ = make_inputs(VECTOR_CASE, np.float16, "NHWC", "random", rng)
    run_kernel(VECTOR_CASE, x, w, iterator="auto", data_format="NHWC")
    assert asked_kernels[-1].startswith(launch_implicit_gemm.VECTOR_KERNEL + "<")
    shifted = np.empty(x.size + 1, np.float16)[1:].reshape(x.shape)  # 2 bytes off alignment
    shifted[...] = x
    y = run_kernel(VECTOR_CASE, shifted, w, iterator="auto", data_format="NHWC")
    assert asked_kernels[-1].startswith("conv2d_implicit_gemm_precomputed_mma<__half, true")
    assert_close(y, reference(VECTOR_CASE, x, w, data_format="NHWC"), np.float16)
    case = Case("12_channels", (1, 12, 6, 7), (16, 12, 3, 3), dict(padding=1))
    x, w, _, _ = make_inputs(case, np.float16, "NHWC", "random", rng)
    run_kernel(case, x, w, iterator="auto", data_format="NHWC")
    assert asked_kernels[-1].startswith("conv2d_implicit_gemm_precomputed_mma<__half, true")


@pytest.mark.gpu
@pytest.mark.parametrize("warp_tiles", ("large", "small"))
@pytest.mark.parametrize("tile", launch_implicit_gemm.VECTOR_TILES,
                         ids=lambda t: t.template_args.replace(" ", ""))
def test_vector_loads_on_gpu(tile, warp_tiles, monkeypatch, asked_kernels, rng):
    """The cp.async kernel on the hardware, every block tile on 4 warps and on 8 (its waits,
    barriers and fragments were checked against the simulator's model of cp.async and
    ldmatrix only)."""
    import cupy
    monkeypatch.setattr(launch_implicit_gemm, "pick_tile", lambda *args: tile)
    dtype = np.dtype(np.float16)  # CuPy arrays carry no bfloat16 (torch tensors do)
    x, w, b, r = make_inputs(VECTOR_CASE, dtype, "NHWC", "random", rng, bias=True,
                             residual=True)
    y = launch.conv2d(VECTOR_CASE.geom, *(cupy.asarray(a) for a in (x, w, b)),
                      residual=cupy.asarray(r), activation="relu", algorithm="implicit_gemm",
                      data_format="NHWC", executor="cupy", warp_tiles=warp_tiles)
    vector_tile = launch_implicit_gemm.vector_tile(tile, 0, warp_tiles)
    assert asked_kernels[-1] == launch_implicit_gemm.kernel_name("precomputed", "__half", True,
                                                            vector_tile)
    expected = reference(VECTOR_CASE, x, w, b, r, data_format="NHWC", activation="relu")
    assert_close(cupy.asnumpy(y), expected, dtype)


def test_math_option(asked_kernels, rng):
    """16-bit dtypes take the tensor cores unless math="cuda_cores"; 32- and 64-bit dtypes
    have no tensor-core tiles here (no TF32: float32 products stay strict)."""
    case = CASE_BY_NAME["one_channel"]
    for dtype, math, kernel in [(np.float16, "auto", "conv2d_implicit_gemm_precomputed_mma<"),
                                (np.float16, "cuda_cores", "conv2d_implicit_gemm_precomputed<"),
                                (np.float32, "auto", "conv2d_implicit_gemm_precomputed<")]:
        x, w, _, _ = make_inputs(case, dtype, "NCHW", "random", rng)
        y = run_kernel(case, x, w, iterator="auto", data_format="NCHW", math=math)
        assert asked_kernels[-1].startswith(kernel)
        assert_close(y, reference(case, x, w, data_format="NCHW"), dtype)
    x, w, _, _ = make_inputs(case, np.float32, "NCHW", "random", rng)
    with pytest.raises(ValueError, match="math='tensor_cores' needs float16 or bfloat16"):
        run_kernel(case, x, w, iterator="auto", data_format="NCHW", math="tensor_cores")
    with pytest.raises(ValueError, match="math must be one of"):
        run_kernel(case, x, w, iterator="auto", data_format="NCHW", math="tf32")


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("data_format", LAYOUTS)
def test_large_tile_multi_tile(data_format, order, monkeypatch, rng):
    # With a one-SM device every launch takes the large (hot) 128x128 tile.
    monkeypatch.setattr(launch_common, "multiprocessor_count", lambda executor: 1)
    check_both(MULTI_TILE, np.dtype(np.float32), data_format, order, rng,
               bias=True, residual=True, activation="relu")


# Groups of at most 64 filters run the narrow tiles (128 pixels x 32 or 64 filters; fp64: 64 x
# 32, then its large 64 x 64): several row tiles and k-tiles, the last ones partial, three
# filters short of the width. float16 runs the tensor-core narrow tiles (same widths).
NARROW_CASES = [
    Case("groups_of_29_filters", (2, 8, 13, 11), (58, 4, 3, 3), dict(padding=1, groups=2)),
    Case("groups_of_61_filters_s2", (1, 6, 25, 23), (61, 6, 3, 2), dict(stride=2, padding=(1, 0))),
]


@pytest.mark.parametrize("dtype, order", [("float32", "forward"), ("float16", "reverse"),
                                          ("float64", "random")])
@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("case", NARROW_CASES, ids=lambda c: c.name)
def test_narrow_tiles(case, data_format, dtype, order, monkeypatch, rng):
    monkeypatch.setattr(launch_common, "multiprocessor_count", lambda executor: 1)
    tile = launch_implicit_gemm.pick_tile(case.geom, dtype, "simulator")
    # fp64's 64-wide tile is its large one
    assert tile.block_n == case.geom.K_per_group + 3
    check_both(case, np.dtype(dtype), data_format, order, rng, bias=True, residual=True,
               activation="tanh")


def test_narrow_tile_choice():
    # ResNeXt-50 32x4d layer4 (32 filters per group), ResNet-50 layer1 (64 filters), layer2
    # (128): the narrowest tile holding a group's filters while blocks fill a wave of SMs; the
    # small tile at batch 1, where the wider tile would leave most SMs idle.
    def width(n, c, plane, k, groups=1, widths="auto", dtype=np.float32, r=3):
        geom = conv2d_geometry((n, c, plane, plane), (k, c // groups, r, r), padding=r // 2,
                               groups=groups)
        tile = launch_implicit_gemm.pick_tile(geom, dtype, "simulator", widths,
                                              tensor_cores=dtype == np.float16)
        return tile.block_m, tile.block_n
    assert width(32, 1024, 7, 1024, groups=32) == (128, 32)
    assert width(32, 64, 56, 64) == (128, 64)
    assert width(1, 64, 56, 64) == (64, 64)
    # The 128 x 64 tile (launch_common.MID_TILE_*, measured by bench/tile_sweep.py): on CUDA
    # cores for >= 4096 pixels in >= 2 waves of its blocks (ResNet-50 layer2 3x3: 313 -> 238 us
    # on an H100), not for layer4's 1568 pixels x 2048 filters (290 -> 342 us there).
    assert width(32, 128, 28, 128) == (128, 64)
    assert width(32, 512, 7, 2048, r=1) == (128, 128)
    # On tensor cores, before the small tile when the large one leaves SMs idle: layer3's 1x1
    # of 512 channels in (6272 pixels x 256); the small one when the 128 x 64 does not fill them
    # either (1568 pixels x 512 over 64 channels). A GEMM k of LONG_K_LARGE_TILE or more keeps
    # the large tile (session 47 on the H100: layer3's 3x3 70 -> 56 us, layer4's 88 -> 61 us).
    assert width(32, 512, 14, 256, dtype=np.float16, r=1) == (128, 64)
    assert width(32, 64, 7, 512, dtype=np.float16) == (64, 64)
    assert width(32, 256, 14, 256, dtype=np.float16) == (128, 128)
    assert width(32, 512, 7, 512, dtype=np.float16) == (128, 128)
    assert width(32, 1024, 14, 256, dtype=np.float16, r=1) == (128, 128)
    assert width(32, 128, 28, 128, dtype=np.float16) == (128, 128)
    # The launcher option the benchmark's "implicit_gemm:wide" variant passes.
    assert width(32, 1024, 7, 1024, groups=32, widths="wide") == (128, 128)
    assert width(32, 128, 28, 128, widths="wide") == (128, 128)
    with pytest.raises(ValueError, match="tile_widths"):
        width(32, 64, 56, 64, widths="narrow")


def test_batch_split_into_launches(monkeypatch, rng):
    # One image per launch: row offsets restart at each chunk's own batch.
    case = CASE_BY_NAME["groups2_s2_d2_same"]
    two_images = dataclasses.replace(case, x=(3,) + case.x[1:])
    g = two_images.geom
    monkeypatch.setattr(launch_common, "INDEX_LIMIT", max(g.C * g.H * g.W, g.K * g.P * g.Q) + 1)
    check_both(two_images, np.dtype(np.float32), "NHWC", "random", rng, bias=True)


# ------------------------------------------------------------------------------------ live taps

# Dilation 16 over 40 rows: the first and last tiles of 64 output pixels (about 9 rows) have a
# tap row that reads only padding for every pixel they hold; the middle tiles need all 9 taps.
DILATED_TILES = Case("dilated_tiles", (1, 3, 40, 7), (5, 3, 3, 3), dict(dilation=16, padding=16))
# The first 80 output pixels read nothing but padding: a whole 64-pixel tile has no live tap.
PADDING_ONLY_TILE = Case("padding_only_tile", (1, 2, 3, 8), (3, 2, 3, 3),
                         dict(padding=((12, 0), (1, 1))))


@pytest.fixture
def small_tile(monkeypatch):
    """Every launch takes the small GEMM tile (64 output pixels per block for float32)."""
    small = launch_common.GEMM_TILES["float32"][1]
    monkeypatch.setattr(launch_implicit_gemm, "pick_tile", lambda *args: small)
    return small


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("case", [DILATED_TILES, PADDING_ONLY_TILE], ids=lambda c: c.name)
def test_tiles_with_dead_taps(case, data_format, order, small_tile, rng):
    check_both(case, np.dtype(np.float32), data_format, order, rng, bias=True,
               activation="sigmoid")


@pytest.mark.parametrize("data_format", LAYOUTS)
def test_taps_that_read_only_padding_in_a_tile_are_skipped(data_format, small_tile, rng):
    # A NaN weight on the top tap row: a kernel that multiplies the padding zeros gives NaN for
    # every output (as the reference does); the precomputed kernel skips that tap row in the
    # first tile, whose pixels (rows 0-9) never reach row p - 16 >= 0, and nowhere else.
    g = DILATED_TILES.geom
    x, w, _, _ = make_inputs(DILATED_TILES, np.float32, data_format, "random", rng)
    w[:, :, 0, :] = np.nan
    y = run_kernel(DILATED_TILES, x, w, iterator="precomputed", data_format=data_format)
    pixels_first = (y.transpose(0, 3, 1, 2) if data_format == "NHWC" else y).reshape(g.K, -1)
    first_tile = pixels_first[:, :small_tile.block_m]
    zeroed = w.copy()
    zeroed[:, :, 0, :] = 0
    expected = reference(DILATED_TILES, x, zeroed, data_format=data_format)
    expected = (expected.transpose(0, 3, 1, 2) if data_format == "NHWC" else expected).reshape(g.K, -1)
    np.testing.assert_allclose(first_tile, expected[:, :small_tile.block_m], rtol=0, atol=2e-5)
    assert np.isnan(pixels_first[:, small_tile.block_m:]).all()
    assert np.isnan(reference(DILATED_TILES, x, w, data_format=data_format)).all()


# ------------------------------------------------------------------------------------ selection


@pytest.mark.parametrize("case, expected", [
    (CASE_BY_NAME["taps32_4x8"], "conv2d_implicit_gemm_precomputed<"),
    (CASE_BY_NAME["1x1_stride2"], "conv2d_implicit_gemm_precomputed<"),
    (WIDE_FILTER, "conv2d_implicit_gemm<"),
], ids=lambda v: getattr(v, "name", v))
def test_auto_runs_precomputed_up_to_32_taps(case, expected, asked_kernels, rng):
    x, w, _, _ = make_inputs(case, np.float32, "NCHW", "random", rng)
    y = run_kernel(case, x, w, iterator="auto", data_format="NCHW")
    assert asked_kernels[-1].startswith(expected)
    assert_close(y, reference(case, x, w, data_format="NCHW"), np.float32)


def test_public_conv2d_runs_precomputed(asked_kernels, rng):
    case = CASE_BY_NAME["5x3_stride3_same"]
    x, w, _, _ = make_inputs(case, np.float32, "NHWC", "random", rng)
    with gpuconv.simulate():
        y = gpuconv.conv2d(x, w, **case.kwargs, algorithm="implicit_gemm", data_format="NHWC")
    assert asked_kernels[-1].startswith("conv2d_implicit_gemm_precomputed<float, true")
    assert_close(y, reference(case, x, w, data_format="NHWC"), np.float32)


def test_forced_analytic_and_precomputed_are_the_two_kernels(asked_kernels, rng):
    case = CASE_BY_NAME["one_channel"]
    for (iterator, tensor_cores), kernel in launch_implicit_gemm.KERNELS.items():
        dtype, cuda_t = (np.float16, "__half") if tensor_cores else (np.float64, "double")
        x, w, _, _ = make_inputs(case, dtype, "NHWC", "random", rng)
        run_kernel(case, x, w, iterator=iterator, data_format="NHWC")
        assert asked_kernels[-1].startswith(f"{kernel}<{cuda_t}, true")


def test_precomputed_refuses_more_than_32_taps(rng):
    x, w, _, _ = make_inputs(WIDE_FILTER, np.float32, "NCHW", "random", rng)
    with pytest.raises(ValueError, match=r"iterator='precomputed' needs R\*S <= 32 .* 6x6 = 36"):
        run_kernel(WIDE_FILTER, x, w, iterator="precomputed", data_format="NCHW")
    y = run_kernel(WIDE_FILTER, x, w, iterator="analytic", data_format="NCHW")
    assert_close(y, reference(WIDE_FILTER, x, w, data_format="NCHW"), np.float32)


def test_nchw_images_past_32_bit_channel_offsets_take_the_analytic_iterator():
    """The NCHW precomputed kernels hold a channel as its offset c * H*W in an int, and the last
    k-tile runs up to 2 * 32 channels past C/groups: an image of C*H*W just under the 32-bit
    index limit (accepted) wrapped such an offset negative, and a masked-out row was read
    (a simulator fault at 2146 x 1000 x 1000 half; audit 19). Checked on the geometry: the
    simulated run maps 4 GiB."""
    def geom(channels, size=1000):
        return conv2d_geometry((1, channels, size, size), (32, channels, 1, 1), stride=500)
    near = geom(2146)
    assert near.C * near.H * near.W < launch_common.INDEX_LIMIT
    assert launch_implicit_gemm.choose_iterator(near, "auto", nhwc=False) == "analytic"
    assert launch_implicit_gemm.choose_iterator(near, "auto", nhwc=True) == "precomputed"
    with pytest.raises(ValueError, match=r"iterator='precomputed' NCHW needs \(C/groups \+ 64\)"):
        launch_implicit_gemm.choose_iterator(near, "precomputed", nhwc=False)
    assert "analytic tap iterator" in str(gpuconv.explain(
        (1, 2146, 1000, 1000), (32, 2146, 1, 1), stride=500, dtype="float16",
        algorithm="implicit_gemm"))
    # (C/groups + 64) * H*W + the taps' reach is the bound, with 1000 x 1000 planes: 2083 fits
    assert launch_implicit_gemm.choose_iterator(geom(2083), "auto") == "precomputed"
    assert launch_implicit_gemm.choose_iterator(geom(2084), "auto") == "analytic"


@pytest.mark.parametrize("bad", ("optimized", "", None, 1))
def test_unknown_iterator_is_refused(bad, rng):
    case = CASE_BY_NAME["one_channel"]
    x, w, _, _ = make_inputs(case, np.float32, "NCHW", "random", rng)
    with pytest.raises(ValueError, match="iterator must be one of 'auto', 'precomputed', 'analytic'"):
        run_kernel(case, x, w, iterator=bad, data_format="NCHW")


def test_both_kernels_are_registered_and_hot():
    family = launch_implicit_gemm.FAMILY
    for (_, tensor_cores), kernel in launch_implicit_gemm.KERNELS.items():
        types = ("__half",) if tensor_cores else ("float", "__half")
        tile = "128, 128, 32, 64, 32" if tensor_cores else "128, 128, 8, 8, 8"
        for t, nhwc in itertools.product(types, ("false", "true")):
            name = f"{kernel}<{t}, {nhwc}, {tile}>"
            assert name in family.name_expressions and name in family.hot


def test_max_taps_matches_the_kernel_header():
    header = Path(launch_implicit_gemm.__file__).parents[2] / "kernels/common/conv_tap_table.cuh"
    match = re.search(r"constexpr int MAX_TAPS = (\d+);", header.read_text())
    assert match and int(match.group(1)) == launch_implicit_gemm.MAX_TAPS


# ------------------------------------------------------------------------------------ PTX


def _main_loop(ptx: str, kernel: str) -> list[str]:
    """The instructions of ``kernel``'s main loop: the innermost backward branch whose body
    holds the FMAs of SimtMma::compute."""
    body = ptx.split(f".entry {kernel}(", 1)[1].split(".entry ", 1)[0]
    lines = [s.strip() for s in body.splitlines()]
    lines = [s for s in lines if s and not s.startswith(("//", ".", "{", "}", ")"))]
    labels = {s[:-1]: i for i, s in enumerate(lines) if s.endswith(":")}
    best = None
    for j, s in enumerate(lines):
        m = re.match(r"(?:@!?%p\d+\s+)?bra(?:\.uni)?\s+(\S+);", s)
        if not m or labels.get(m.group(1), j) >= j:
            continue
        i = labels[m.group(1)]
        fmas = sum(1 for t in lines[i:j] if t.startswith("fma."))
        if fmas and (best is None or fmas > best[2] or (fmas == best[2] and j - i < best[1] - best[0])):
            best = (i, j, fmas)
    assert best, f"no loop with FMAs in {kernel}"
    return [s for s in lines[best[0]:best[1] + 1] if not s.endswith(":")]


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc to emit PTX")
def test_precomputed_main_loop_has_no_division_and_fewer_instructions(tmp_path):
    # The offline evidence of kernels/conv/NOTES.md: fp32, large tile, sm_90 PTX.
    kernels_dir = Path(launch_implicit_gemm.__file__).parents[2] / "kernels"
    params = ", ".join(["const float*"] * 2 + ["gc::ConvShape", "float*"] + ["int"] * 3
                       + ["const float*"] * 2 + ["int"] * 4 + ["int", "float*"])
    names = {(kernel, nhwc): f"{kernel}<float, {nhwc}, 128, 128, 8, 8, 8>"
             for kernel in ("conv2d_implicit_gemm", "conv2d_implicit_gemm_precomputed")
             for nhwc in ("false", "true")}
    source = tmp_path / "instances.cu"
    source.write_text(f'#include "{kernels_dir / "conv/implicit_gemm.cu"}"\n' + "".join(
        f"template __global__ void {name}({params});\n" for name in names.values()))
    ptx = tmp_path / "instances.ptx"
    subprocess.run(["nvcc", "-std=c++17", "-arch=sm_90", "-I", str(kernels_dir / "common"),
                    "--ptx", str(source), "-o", str(ptx)], check=True, capture_output=True)
    text = ptx.read_text()
    entries = re.findall(r"\.entry (\S+)\(", text)
    for nhwc in ("false", "true"):
        layout = "Lb1" if nhwc == "true" else "Lb0"
        analytic = _main_loop(text, next(e for e in entries if "20conv2d_implicit_gemmIf" + layout in e))
        fast = _main_loop(text, next(e for e in entries if "precomputedIf" + layout in e))
        # FastDivmod's 32x32->64 multiply-high (cvt.u64 / mul.lo.s64): twice per k-tile before.
        assert sum(s.startswith("mul.lo.s64") for s in analytic) == 2
        assert not any(s.startswith(("mul.lo.s64", "mul.hi", "div.", "rem.")) for s in fast)
        assert sum(s.startswith("fma.") for s in fast) == 512
        assert len(fast) < len(analytic)
