"""Forward convolution kernels (issue 4) against the NumPy reference.

Every algorithm runs under ``gpuconv.simulate()`` (the CUDA kernels on the CPU, through the same
launchers as on a GPU) and, with the ``gpu`` marker, on CuPy arrays. The oracle is
``gpuconv.conv2d`` on NumPy arrays outside ``simulate()``, i.e. the NumPy reference. Outputs are
poisoned with NaN before each launch so an element no thread wrote shows up.

The shapes are small and odd on purpose (the simulator runs ~1M threads/s): strides 1-3,
dilations 1-3, groups, asymmetric and "same" padding, 1xN and Nx1 filters, channel counts that
are multiples of nothing, N = 1 and N > 1, and a few cases large enough to cover several tiles
of every kernel. The full algorithm x dtype x layout product runs on two shapes; the shape grid
rotates dtype, layout and thread order so that each is exercised without the whole product.
"""
from __future__ import annotations

import itertools
import json

import re

import numpy as np
import pytest

import gpuconv
from gpuconv.conv import (autotune, heuristics, launch, launch_common, launch_depthwise,
                          launch_direct, launch_pointwise, launch_winograd)
from gpuconv.conv.geometry import conv2d_geometry, nchw_shape

from kernel_support import ConvCase as Case

try:
    import ml_dtypes  # noqa: F401  (registers numpy's "bfloat16")
    BFLOAT16 = [np.dtype("bfloat16")]
except ImportError:
    BFLOAT16 = []

DTYPES = [np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)] + BFLOAT16
LAYOUTS = ("NCHW", "NHWC")
ORDERS = ("forward", "reverse", "random")
GENERAL = ("direct", "direct_v1", "im2col_gemm", "implicit_gemm")
EXECUTORS = [pytest.param("simulator", id="sim"),
             pytest.param("cupy", id="gpu", marks=pytest.mark.gpu)]

# Relative tolerance per dtype, applied to max(1, max |reference|): half types round the
# output (and the inputs are exact in them), float32 accumulates C*R*S products.
TOLERANCE = {"float16": 4e-3, "bfloat16": 3e-2, "float32": 2e-5, "float64": 1e-12}


CASES = [
    Case("3x3_pad1", (2, 3, 7, 9), (5, 3, 3, 3), dict(padding=1)),
    Case("stride23_asym_pad", (1, 4, 8, 11), (6, 4, 3, 3), dict(stride=(2, 3), padding=((1, 0), (2, 1)))),
    Case("dilation23", (2, 3, 9, 10), (4, 3, 3, 3), dict(dilation=(2, 3), padding=2)),
    Case("same_4x4_stride3", (1, 5, 10, 7), (3, 5, 4, 4), dict(stride=3, padding="same")),
    Case("1x5", (2, 3, 5, 9), (7, 3, 1, 5), dict(padding=(0, 2))),
    Case("4x1_stride2_dil3", (1, 2, 13, 4), (3, 2, 4, 1), dict(stride=(2, 1), dilation=(3, 1))),
    Case("groups3", (2, 6, 6, 7), (9, 2, 3, 3), dict(padding=1, groups=3)),
    Case("groups2_s2_d2_same", (1, 8, 9, 8), (4, 4, 3, 3), dict(stride=2, dilation=2, padding="same", groups=2)),
    Case("pointwise", (2, 5, 6, 7), (7, 5, 1, 1)),
    Case("pointwise_s2_groups3", (2, 6, 7, 9), (9, 2, 1, 1), dict(stride=2, groups=3)),
    Case("depthwise3x3", (2, 5, 8, 9), (5, 1, 3, 3), dict(padding=1, groups=5)),
    Case("depthwise5x5_mult2_s2_d2", (1, 3, 11, 10), (6, 1, 5, 5), dict(stride=2, dilation=2, padding="same", groups=3)),
    Case("depthwise9x9_tiled", (1, 4, 12, 13), (4, 1, 9, 9), dict(padding=4, groups=4)),
    Case("depthwise9x7_mult3_s3_d2_tiled", (2, 2, 19, 17), (6, 1, 9, 7), dict(stride=3, dilation=2, padding=((5, 2), (1, 6)), groups=2)),
    # Several tiles of every kernel: M > 128 output pixels, K > 64 filters, many k-tiles,
    # Q > 32 (direct tile) and P > 8.
    Case("multi_tile", (2, 9, 11, 37), (70, 9, 3, 3), dict(padding=1)),
    Case("multi_tile_groups_stride2", (1, 12, 17, 35), (66, 4, 2, 3), dict(stride=2, padding=(1, 0), groups=3)),
]
CASE_BY_NAME = {c.name: c for c in CASES}


def algorithms_for(case: Case) -> list[str]:
    geom = conv2d_geometry(case.x, case.w, **case.kwargs)
    found = list(GENERAL)
    if (geom.R, geom.S) == (1, 1) and not any((geom.pad_top, geom.pad_bottom, geom.pad_left, geom.pad_right)):
        found.append("pointwise")
    if geom.groups == geom.C:
        found.append("depthwise")
    if launch_winograd.refusal(geom) is None:
        found.append("winograd_nonfused")
    return found


# ------------------------------------------------------------------------------------ helpers


def to_layout(a: np.ndarray, data_format: str) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if data_format == "NHWC" else a


def make_inputs(case: Case, dtype, data_format: str, kind: str, rng, *, bias=False, residual=False):
    """x (in the layout), weight, bias, residual; exact in every dtype for structured kinds."""
    geom = conv2d_geometry(case.x, case.w, **case.kwargs)
    out_nchw = geom.output_shape

    def make(shape, salt):
        size = int(np.prod(shape))
        if kind == "random":
            return rng.standard_normal(shape)
        if kind == "ones":
            return np.ones(shape)
        # "arange": position-dependent small integers (sums stay exact even in float16).
        return ((np.arange(size) * (7 + salt)) % 11 - 5).reshape(shape) / 2.0

    x = to_layout(make(case.x, 0), data_format).astype(dtype)
    w = make(case.w, 2).astype(dtype)
    b = make((geom.K,), 4).astype(dtype) if bias else None
    r = to_layout(make(out_nchw, 6), data_format).astype(dtype) if residual else None
    return x, w, b, r


def to_executor(a, executor: str):
    if a is None or executor == "simulator":
        return a
    import cupy
    return cupy.asarray(a)


def to_numpy(a):
    return a if isinstance(a, np.ndarray) else a.get()


def poisoned(shape, dtype, executor: str):
    return to_executor(np.full(shape, np.nan, dtype=dtype), executor)


def run_kernels(case: Case, x, w, b, r, *, algorithm, data_format, executor, order="forward",
                activation=None, out=None, **launch_options):
    """conv2d through the kernels (the simulator or CuPy); out poisoned with NaN by default."""
    geom = conv2d_geometry(nchw_shape(x.shape, data_format), w.shape, **case.kwargs)
    shape = (geom.N, geom.P, geom.Q, geom.K) if data_format == "NHWC" else geom.output_shape
    xs, ws, bs, rs = (to_executor(a, executor) for a in (x, w, b, r))
    if out is None:
        out = poisoned(shape, x.dtype, executor)
    if algorithm == "direct_v1" or launch_options:
        # Options the public front does not take go to the launcher directly.
        def call():
            return launch.conv2d(geom, xs, ws, bs, residual=rs, activation=activation,
                                 algorithm=algorithm, data_format=data_format, out=out,
                                 executor=executor, **launch_options)
    else:
        def call():
            return gpuconv.conv2d(xs, ws, bs, **case.kwargs, activation=activation, residual=rs,
                                  algorithm=algorithm, data_format=data_format, out=out)
    if executor == "simulator":
        with gpuconv.simulate(order=order, seed=7):
            y = call()
    else:
        y = call()
    assert y is out
    return to_numpy(y)


def reference(case: Case, x, w, b, r, *, data_format, activation=None):
    return gpuconv.conv2d(x, w, b, **case.kwargs, activation=activation, residual=r,
                          data_format=data_format)


def assert_close(actual, expected, dtype, exact=False):
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    assert not np.isnan(a).any() or np.isnan(e).any(), "an output element was never written"
    tol = 0.0 if exact else TOLERANCE[np.dtype(dtype).name] * max(1.0, float(np.abs(e).max()))
    np.testing.assert_allclose(a, e, rtol=0, atol=tol)


def check(case, algorithm, dtype, data_format, executor, rng, *, kind="random", order="forward",
          activation=None, bias=False, residual=False, **launch_options):
    x, w, b, r = make_inputs(case, dtype, data_format, kind, rng, bias=bias, residual=residual)
    expected = reference(case, x, w, b, r, data_format=data_format, activation=activation)
    actual = run_kernels(case, x, w, b, r, algorithm=algorithm, data_format=data_format,
                         executor=executor, order=order, activation=activation, **launch_options)
    # Structured inputs are exact in every dtype unless an activation rounds them.
    assert_close(actual, expected, dtype, exact=kind != "random" and activation in (None, "relu")
                 and np.dtype(dtype).name != "bfloat16")


# ------------------------------------------------------------------------------------ tests


PRODUCT_CASES = ("groups2_s2_d2_same", "depthwise5x5_mult2_s2_d2")


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("algorithm", GENERAL + ("depthwise",))
@pytest.mark.parametrize("case_name", PRODUCT_CASES)
def test_algorithm_dtype_layout_product(case_name, algorithm, dtype, data_format, executor, rng):
    case = CASE_BY_NAME[case_name]
    if algorithm not in algorithms_for(case):
        pytest.skip(f"{algorithm} does not run {case_name}")
    check(case, algorithm, dtype, data_format, executor, rng)


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_pointwise_dtype_layout_product(dtype, data_format, executor, rng):
    check(CASE_BY_NAME["pointwise_s2_groups3"], "pointwise", dtype, data_format, executor, rng)


def _grid_params():
    """Each case x each algorithm that runs it, with dtype, layout and order rotated."""
    params = []
    rotation = itertools.cycle(itertools.product(("float32", "float16", "float64"), LAYOUTS, ORDERS))
    for case in CASES:
        for algorithm in algorithms_for(case):
            dtype, layout, order = next(rotation)
            params.append(pytest.param(case.name, algorithm, dtype, layout, order,
                                       id=f"{case.name}-{algorithm}-{dtype}-{layout}-{order}"))
    return params


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("case_name, algorithm, dtype, data_format, order", _grid_params())
def test_shape_grid(case_name, algorithm, dtype, data_format, order, executor, rng):
    check(CASE_BY_NAME[case_name], algorithm, np.dtype(dtype), data_format, executor, rng, order=order)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("algorithm", GENERAL + ("pointwise", "depthwise"))
def test_thread_orders_on_multi_tile_cases(algorithm, order, rng):
    name = {"pointwise": "pointwise_s2_groups3", "depthwise": "depthwise9x7_mult3_s3_d2_tiled"}.get(
        algorithm, "multi_tile_groups_stride2")
    check(CASE_BY_NAME[name], algorithm, np.dtype(np.float32), "NCHW", "simulator", rng, order=order)


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("kind", ("arange", "ones"))
@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("algorithm", GENERAL + ("pointwise", "depthwise"))
def test_structured_inputs_exact(algorithm, data_format, kind, executor, rng):
    name = {"pointwise": "pointwise_s2_groups3", "depthwise": "depthwise5x5_mult2_s2_d2"}.get(
        algorithm, "multi_tile_groups_stride2")
    check(CASE_BY_NAME[name], algorithm, np.dtype(np.float16), data_format, executor, rng, kind=kind)


EPILOGUES = [dict(bias=True), dict(residual=True), dict(activation="relu"),
             dict(bias=True, activation="tanh"), dict(residual=True, activation="sigmoid"),
             dict(bias=True, residual=True, activation="relu")]


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("epilogue", EPILOGUES, ids=lambda e: "+".join(f"{k}={v}" for k, v in e.items()))
@pytest.mark.parametrize("algorithm", GENERAL + ("pointwise", "depthwise", "winograd_nonfused"))
def test_fused_epilogue(algorithm, epilogue, executor, rng):
    name = {"pointwise": "pointwise", "depthwise": "depthwise3x3"}.get(algorithm, "3x3_pad1")
    layout = LAYOUTS[len(epilogue) % 2]
    check(CASE_BY_NAME[name], algorithm, np.dtype(np.float32), layout, executor, rng, **epilogue)


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("algorithm", GENERAL + ("pointwise", "winograd_nonfused"))
def test_out_channel_slice_of_a_larger_buffer(algorithm, executor, rng):
    case = CASE_BY_NAME["pointwise" if algorithm == "pointwise" else "3x3_pad1"]
    x, w, b, r = make_inputs(case, np.float32, "NCHW", "random", rng, bias=True, residual=True)
    expected = reference(case, x, w, b, r, data_format="NCHW", activation="relu")
    n, k, p, q = expected.shape
    buffer = poisoned((n, k + 5, p, q), np.float32, executor)
    out = buffer[:, 2:2 + k]
    run_kernels(case, x, w, b, r, algorithm=algorithm, data_format="NCHW", executor=executor,
                activation="relu", out=out)
    whole = to_numpy(buffer)
    assert_close(whole[:, 2:2 + k], expected, np.float32)
    assert np.isnan(whole[:, :2]).all() and np.isnan(whole[:, 2 + k:]).all(), "wrote outside the slice"


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("data_format", LAYOUTS)
def test_auto_and_default_output(data_format, executor, rng):
    for case in (CASE_BY_NAME[n] for n in ("3x3_pad1", "pointwise", "depthwise3x3", "groups3")):
        x, w, b, r = make_inputs(case, np.float32, data_format, "random", rng)
        expected = reference(case, x, w, b, r, data_format=data_format)
        xs, ws = to_executor(x, executor), to_executor(w, executor)
        if executor == "simulator":
            with gpuconv.simulate():
                y = gpuconv.conv2d(xs, ws, **case.kwargs, data_format=data_format)
        else:
            y = gpuconv.conv2d(xs, ws, **case.kwargs, data_format=data_format)
        assert_close(to_numpy(y), expected, np.float32)


def test_non_contiguous_inputs(rng):
    case = CASE_BY_NAME["groups3"]
    x, w, b, r = make_inputs(case, np.float64, "NCHW", "random", rng, bias=True, residual=True)
    expected = reference(case, x, w, b, r, data_format="NCHW")
    # Same values, other memory layouts: Fortran order, a strided view, a reversed view.
    xf = np.asfortranarray(x)
    wide = np.zeros(w.shape[:-1] + (2 * w.shape[-1],))
    wide[..., ::2] = w
    bias_reversed = b[::-1].copy()[::-1]
    residual_f = np.asfortranarray(r)
    actual = run_kernels(case, xf, wide[..., ::2], bias_reversed, residual_f,
                         algorithm="implicit_gemm", data_format="NCHW", executor="simulator")
    assert_close(actual, expected, np.float64)


def test_out_not_addressable_is_filled_through_a_copy(rng):
    # A Fortran-ordered `out` is valid for the launcher but not addressable by the kernels.
    case = CASE_BY_NAME["3x3_pad1"]
    x, w, b, r = make_inputs(case, np.float32, "NCHW", "random", rng)
    geom = conv2d_geometry(case.x, case.w, **case.kwargs)
    out = np.asfortranarray(np.full(geom.output_shape, np.nan, dtype=np.float32))
    with gpuconv.simulate():
        y = launch.conv2d(geom, x, w, None, algorithm="direct", data_format="NCHW", out=out,
                          executor="simulator")
    assert y is out
    assert_close(out, reference(case, x, w, b, r, data_format="NCHW"), np.float32)


# More filters than a narrow GEMM tile holds, over several pixel tiles (pointwise: a stride).
POINTWISE_MULTI_TILE = Case("pointwise_multi_tile", (2, 9, 21, 37), (70, 9, 1, 1), dict(stride=(2, 1)))
# 1x1 groups of 29 filters (the 32-wide narrow tiles) and of 61 (64-wide) over several pixel
# tiles: the pointwise and im2col GEMMs.
NARROW_TILE_CASES = (
    Case("pointwise_groups_of_29", (3, 10, 9, 13), (58, 5, 1, 1), dict(groups=2)),
    Case("pointwise_61_filters_s2", (2, 7, 17, 19), (61, 7, 1, 1), dict(stride=2)),
)


@pytest.mark.parametrize("dtype", ("float16", "float32", "float64"))
@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("algorithm", ("implicit_gemm", "pointwise", "im2col_gemm"))
def test_large_gemm_tiles(algorithm, data_format, dtype, monkeypatch, rng, launched_names):
    # The small cases above fill less than a wave of SMs and so run the small GEMM tile; with
    # a one-SM device every launch takes the large (hot) tile.
    monkeypatch.setattr(launch_common, "multiprocessor_count", lambda executor: 1)
    case = POINTWISE_MULTI_TILE if algorithm == "pointwise" else CASE_BY_NAME["multi_tile"]
    check(case, algorithm, np.dtype(dtype), data_format, "simulator", rng,
          bias=True, activation="sigmoid")
    tensor_cores = algorithm == "implicit_gemm" and launch_common.uses_tensor_cores(dtype)
    tiles = launch_common.MMA_TILES if tensor_cores else launch_common.gemm_tiles(dtype)
    large = tiles[0].template_args.replace(" ", "")
    # A cp.async kernel's name has the tile's stages after its tile (launch_common.async_tile).
    assert any(re.search(rf"<\w+(,\w+)?,{large}(,{launch_common.ASYNC_STAGES})?>$",
                         name.replace(" ", "")) for name in launched_names), launched_names


@pytest.mark.parametrize("dtype, order", [("float32", "forward"), ("float16", "reverse"),
                                          ("float64", "random")])
@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("case", NARROW_TILE_CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("algorithm", ("pointwise", "im2col_gemm"))
def test_narrow_gemm_tiles(algorithm, case, data_format, dtype, order, monkeypatch, rng,
                           launched_names):
    monkeypatch.setattr(launch_common, "multiprocessor_count", lambda executor: 1)
    check(case, algorithm, np.dtype(dtype), data_format, "simulator", rng, order=order,
          bias=True, residual=True, activation="relu")
    # The GEMM tile's filter extent: 3 more than a group's filters (fp64's 64 is its large
    # tile). The filters are the GEMM's M except in the NHWC pointwise kernel.
    gemm = next(n for n in launched_names if "pointwise" in n or "gemm_columns" in n)
    # <type, [lanes along M,] BLOCK_M, BLOCK_N, ...>: gemm_columns names the lanes' side.
    args = gemm.split("<")[1].rstrip(">").split(",")[1:]
    block_m, block_n = map(int, args[1:3] if "gemm_columns" in gemm else args[0:2])
    filters_along_n = algorithm == "pointwise" and data_format == "NHWC"
    assert (block_n if filters_along_n else block_m) == case.geom.K_per_group + 3, gemm


# Grouped layers shaped like ResNeXt's (4, 8, 16 filters per group) and one past 16 filters:
# each direct tile variant over several pixel tiles, filter blocks and channel chunks.
DIRECT_TILE_CASES = [
    (Case("groups_of_4_filters", (2, 12, 9, 35), (12, 4, 3, 3), dict(padding=1, groups=3)), (4, 8, 32)),
    (Case("groups_of_8_filters_s2", (1, 16, 19, 37), (16, 8, 3, 3), dict(stride=2, padding=1, groups=2)), (8, 8, 32)),
    (Case("groups_of_16_small_plane", (2, 32, 14, 14), (32, 16, 3, 3), dict(padding=1, groups=2)), (16, 16, 16)),
    (Case("groups_of_20_filters", (1, 18, 13, 12), (40, 9, 3, 3), dict(padding=(1, 2), groups=2)), (16, 16, 16)),
]


@pytest.mark.parametrize("order", ("forward", "random"))
@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("case, tile", DIRECT_TILE_CASES, ids=lambda v: getattr(v, "name", None))
def test_direct_tile_variants(case, tile, data_format, order, rng):
    geom = conv2d_geometry(case.x, case.w, **case.kwargs)
    assert launch_direct.pick_tile(geom) == launch_direct.DirectTile(*tile)
    check(case, "direct", np.dtype(np.float32), data_format, "simulator", rng, order=order,
          bias=True, residual=True, activation="tanh")


def test_direct_tile_choice_follows_the_waste():
    # ResNeXt-50 32x4d, batch 32: the tile that leaves the fewest output slots idle.
    for (c, plane, stride), (tile, useful) in {
            (128, 56, 1): ((4, 8, 32), 0.875), (256, 28, 1): ((8, 8, 32), 0.766),
            (512, 14, 1): ((16, 16, 16), 0.766)}.items():
        geom = conv2d_geometry((32, c, plane, plane), (c, c // 32, 3, 3), padding=1,
                               stride=stride, groups=32)
        picked = launch_direct.pick_tile(geom)
        assert picked == launch_direct.DirectTile(*tile)
        assert picked.useful_fraction(geom) == pytest.approx(useful, abs=1e-3)


@pytest.mark.parametrize("data_format", LAYOUTS)
def test_direct_falls_back_to_v1_when_the_tile_does_not_fit(data_format, monkeypatch, rng):
    case = CASE_BY_NAME["dilation23"]
    geom = conv2d_geometry(case.x, case.w, **case.kwargs)
    monkeypatch.setattr(launch_direct, "SMEM_LIMIT", 1000)
    assert launch_direct.tiled_plan(geom, np.float32) is None
    check(case, "direct", np.dtype(np.float32), data_format, "simulator", rng, residual=True)


@pytest.mark.parametrize("smem_limit", (6000, 2500, 100))
@pytest.mark.parametrize("data_format", LAYOUTS)
def test_depthwise_tiles_shrink_to_fit_shared_memory(smem_limit, data_format, monkeypatch, rng):
    # 6000 and 2500 bytes shrink the channel and pixel tiles; 100 leaves no tile that fits,
    # so the direct kernel (runtime filter size) runs instead.
    case = CASE_BY_NAME["depthwise9x7_mult3_s3_d2_tiled"]
    geom = conv2d_geometry(case.x, case.w, **case.kwargs)
    monkeypatch.setattr(launch_depthwise, "SMEM_LIMIT", smem_limit)
    nhwc = data_format == "NHWC"
    assert launch_depthwise.uses_tiled(geom, np.float32, nhwc) == (smem_limit > 100)
    check(case, "depthwise", np.dtype(np.float32), data_format, "simulator", rng, bias=True)


@pytest.mark.parametrize("algorithm", ("direct", "direct_v1", "implicit_gemm", "pointwise", "depthwise"))
def test_batch_is_split_to_keep_offsets_32_bit(algorithm, monkeypatch, rng):
    # Lower the per-launch index limit so that every image is its own launch: the same code
    # path that keeps real tensors of >= 2^31 elements correct.
    name = {"pointwise": "pointwise_s2_groups3", "depthwise": "depthwise3x3"}.get(algorithm, "groups3")
    case = CASE_BY_NAME[name]
    geom = conv2d_geometry(case.x, case.w, **case.kwargs)
    per_image = max(geom.C * geom.H * geom.W, geom.K * geom.P * geom.Q)
    monkeypatch.setattr(launch_common, "INDEX_LIMIT", per_image + 1)
    check(case, algorithm, np.dtype(np.float32), "NHWC", "simulator", rng, bias=True, residual=True)


def test_one_image_beyond_32_bit_offsets_is_refused(monkeypatch, rng):
    case = CASE_BY_NAME["3x3_pad1"]  # weight: 135 elements; one output image: 315
    monkeypatch.setattr(launch_common, "INDEX_LIMIT", 200)
    x, w, _, _ = make_inputs(case, np.float32, "NCHW", "random", rng)
    with pytest.raises(ValueError, match="2\\^31 or more per image"):
        run_kernels(case, x, w, None, None, algorithm="implicit_gemm", data_format="NCHW",
                    executor="simulator")


@pytest.mark.parametrize("gemm", ("own", "cublas"))
@pytest.mark.parametrize("data_format", LAYOUTS)
def test_im2col_workspace_chunks_and_gemm_choice(gemm, data_format, rng):
    # A workspace of one image's columns: the batch of 3 runs as 3 chunks, the last one with
    # its own row stride. gemm="cublas" multiplies with the executor's matmul.
    case = Case("im2col_chunks", (3, 4, 7, 6), (10, 2, 3, 2), dict(padding=(1, 0), stride=(1, 2), groups=2))
    geom = conv2d_geometry(case.x, case.w, **case.kwargs)
    one_image = geom.C * geom.R * geom.S * geom.P * geom.Q * 4
    check(case, "im2col_gemm", np.dtype(np.float32), data_format, "simulator", rng,
          bias=True, activation="tanh", gemm=gemm, workspace_bytes=one_image)


@pytest.mark.gpu
def test_im2col_with_cublas_on_gpu(rng):
    check(CASE_BY_NAME["multi_tile"], "im2col_gemm", np.dtype(np.float32), "NCHW", "cupy", rng,
          gemm="cublas")


@pytest.mark.parametrize("algorithm, case_name, message", [
    ("pointwise", "3x3_pad1", "1x1 filter"),
    ("pointwise", "4x1_stride2_dil3", "1x1 filter"),
    ("depthwise", "groups3", "groups == C"),
    ("winograd_nonfused", "stride23_asym_pad", "needs stride 1"),
    ("winograd_nonfused", "dilation23", "needs dilation 1"),
    ("winograd_nonfused", "1x5", "needs a 3x3 filter"),
])
def test_forced_algorithm_that_cannot_run_is_refused(algorithm, case_name, message, rng):
    case = CASE_BY_NAME[case_name]
    x, w, _, _ = make_inputs(case, np.float32, "NCHW", "random", rng)
    with pytest.raises(ValueError, match=message):
        run_kernels(case, x, w, None, None, algorithm=algorithm, data_format="NCHW",
                    executor="simulator")


def test_pointwise_refuses_padding(rng):
    case = Case("padded_1x1", (1, 3, 5, 5), (4, 3, 1, 1), dict(padding=1))
    x, w, _, _ = make_inputs(case, np.float32, "NCHW", "random", rng)
    with pytest.raises(ValueError, match="zero padding"):
        run_kernels(case, x, w, None, None, algorithm="pointwise", data_format="NCHW",
                    executor="simulator")


def test_launcher_rejects_unknown_options(rng):
    case = CASE_BY_NAME["3x3_pad1"]
    x, w, _, _ = make_inputs(case, np.float32, "NCHW", "random", rng)
    with pytest.raises(ValueError, match="gemm"):
        run_kernels(case, x, w, None, None, algorithm="im2col_gemm", data_format="NCHW",
                    executor="simulator", gemm="magma")
    with pytest.raises(ValueError, match="algorithm"):
        run_kernels(case, x, w, None, None, algorithm="fft", data_format="NCHW",
                    executor="simulator", gemm="own")


# ------------------------------------------------------------------------------------ winograd

# 3x3 stride 1 with groups, asymmetric padding and planes whose 2x2 tiles overhang (P, Q odd).
WINOGRAD_CASE = Case("winograd_grouped_odd", (2, 6, 7, 9), (8, 3, 3, 3),
                     dict(padding=((1, 2), (0, 1)), groups=2))


@pytest.mark.parametrize("tile", launch_winograd.OUTPUT_TILES, ids=lambda m: f"F{m}x{m}")
@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_winograd_dtype_layout_order_product(dtype, data_format, order, executor, tile, rng):
    if executor == "cupy" and order != "forward":
        pytest.skip("thread orders are the simulator's")
    check(WINOGRAD_CASE, "winograd_nonfused", dtype, data_format, executor, rng, order=order,
          bias=True, activation="relu", winograd_tile=tile)


@pytest.mark.parametrize("kind", ("arange", "ones"))
def test_winograd_f2x2_exact_on_structured_inputs(kind, rng):
    # F(2x2, 3x3)'s coefficients are halves: small integers stay exact, so any misplaced tap or
    # tile shows. F(4x4, 3x3)'s sixths round (the product test above holds it to tolerance).
    check(WINOGRAD_CASE, "winograd_nonfused", np.dtype(np.float32), "NCHW", "simulator", rng,
          kind=kind, winograd_tile=2)


@pytest.mark.parametrize("plane, tile", [((1, 1), 2), ((2, 2), 2), ((5, 5), 2), ((6, 6), 2),
                                         ((7, 7), 4), ((14, 14), 4), ((56, 56), 4), ((3, 9), 4)])
def test_winograd_auto_tile_has_the_fewest_transformed_elements(plane, tile):
    geom = conv2d_geometry((1, 8, *plane), (8, 8, 3, 3), 1, 1, 1, 1)
    assert launch_winograd.choose_output_tile("forward", geom) == tile
    assert launch_winograd.choose_output_tile("weight_grad", geom) == 2
    with pytest.raises(ValueError, match="output_tile"):
        launch_winograd.choose_output_tile("forward", geom, 3)


@pytest.mark.parametrize("tile", launch_winograd.OUTPUT_TILES)
@pytest.mark.parametrize("data_format", LAYOUTS)
def test_winograd_workspace_chunks(data_format, tile, rng):
    # A workspace of one image's transforms: three chunks of one image, into a channel slice.
    case = Case("winograd_chunks", (3, 5, 6, 5), (7, 5, 3, 3), dict(padding=1))
    geom = case.geom
    one_image = (launch_winograd.elements(tile) * (geom.C + geom.K)
                 * launch_winograd.tiles_per_image(geom, tile) * 4)
    assert launch_winograd.images_per_chunk(geom, tile, 4, one_image) == 1
    check(case, "winograd_nonfused", np.dtype(np.float32), data_format, "simulator", rng,
          bias=True, residual=True, activation="sigmoid", workspace_bytes=one_image,
          winograd_tile=tile)


@pytest.mark.parametrize("data_format", LAYOUTS)
def test_winograd_on_the_large_gemm_tile(data_format, monkeypatch, rng, launched_names):
    monkeypatch.setattr(launch_common, "multiprocessor_count", lambda executor: 1)
    check(CASE_BY_NAME["multi_tile"], "winograd_nonfused", np.dtype(np.float64), data_format, "simulator",
          rng, residual=True)
    # The pointwise GEMM copies by cp.async in both layouts (its stages named in the template).
    large = launch_common.async_tile(launch_common.gemm_tiles(np.float64)[0])
    assert any("pointwise" in n and n.replace(" ", "").endswith(
        large.template_args.replace(" ", "") + ">") for n in launched_names), launched_names


@pytest.mark.parametrize("dtype, x_shape, w_shape, kwargs, algorithm", [
    ("float32", (32, 256, 14, 14), (256, 256, 3, 3), dict(padding=1), "winograd_nonfused"),
    ("float64", (8, 128, 28, 28), (256, 128, 3, 3), dict(padding=1), "winograd_nonfused"),
    ("float32", (32, 64, 56, 56), (64, 64, 3, 3), dict(padding=1), "winograd_nonfused"),
    ("float32", (32, 32, 56, 56), (64, 32, 3, 3), dict(padding=1), "implicit_gemm"),   # < 64
    ("float32", (1, 64, 56, 56), (64, 64, 3, 3), dict(padding=1), "implicit_gemm"),  # 64, batch 1
    # batch 1 (< 1024 output pixels): the implicit GEMM with split-K
    ("float32", (1, 512, 7, 7), (512, 512, 3, 3), dict(padding=1), "implicit_gemm"),
    ("float32", (1, 128, 28, 28), (128, 128, 3, 3), dict(padding=1), "implicit_gemm"),
    ("float32", (2, 128, 28, 28), (128, 128, 3, 3), dict(padding=1), "winograd_nonfused"),
    ("float32", (32, 256, 28, 28), (256, 256, 3, 3), dict(stride=2, padding=1), "implicit_gemm"),
    ("float16", (32, 256, 14, 14), (256, 256, 3, 3), dict(padding=1), "implicit_gemm"),  # tensor cores
])
def test_auto_takes_winograd_on_cuda_cores_from_64_channels(dtype, x_shape, w_shape, kwargs,
                                                            algorithm, monkeypatch):
    monkeypatch.setattr(autotune, "_enabled", False)
    e = gpuconv.explain(x_shape, w_shape, **kwargs, dtype=dtype)
    assert e.algorithm == algorithm, str(e)
    if algorithm == "winograd_nonfused":
        assert e.kernel.startswith("conv2d_winograd_input_transform + conv2d_pointwise_nchw")
        assert "Winograd" in e.reason


# ------------------------------------------------------------------------------------ explain


@pytest.mark.parametrize("x_shape, w_shape, kwargs, algorithm, kernel", [
    ((1, 64, 14, 14), (64, 1, 3, 3), dict(padding=1, groups=64), "depthwise", "conv2d_depthwise_vector (1 channel per thread"),
    ((1, 64, 14, 14), (128, 1, 3, 3), dict(padding=1, groups=64), "depthwise", "conv2d_depthwise_direct (unrolled 3x3)"),
    ((1, 64, 56, 56), (128, 1, 3, 3), dict(padding=1, groups=64), "depthwise", "conv2d_depthwise_window"),
    ((1, 32, 56, 56), (32, 1, 31, 31), dict(padding=15, groups=32), "depthwise", "conv2d_depthwise_window"),
    ((1, 32, 56, 56), (32, 1, 31, 31), dict(padding=15, stride=2, groups=32), "depthwise", "conv2d_depthwise_tiled"),
    ((8, 256, 14, 14), (1024, 256, 1, 1), {}, "pointwise", "conv2d_pointwise_nchw"),
    ((8, 128, 28, 28), (128, 4, 3, 3), dict(padding=1, groups=32), "direct", "conv2d_direct_tiled"),
    # dilated (Winograd refuses it), so the 128 x 64 tile of ResNet-50's 56x56 x 64 GEMM shows
    ((32, 64, 56, 56), (64, 64, 3, 3), dict(padding=2, dilation=2), "implicit_gemm", "conv2d_implicit_gemm_precomputed (tile 128, 64"),
])
def test_explain_reports_the_heuristic_choice(x_shape, w_shape, kwargs, algorithm, kernel, monkeypatch):
    monkeypatch.setattr(autotune, "_enabled", False)
    e = gpuconv.explain(x_shape, w_shape, **kwargs)
    assert e.algorithm == algorithm and e.source == "heuristic"
    assert e.kernel.startswith(kernel)
    text = str(e)
    assert f"algorithm: {algorithm} (heuristic)" in text and "reason: " in text
    assert e.refusals["direct"] is None and "implicit_gemm: can run" in text


@pytest.mark.parametrize("dtype, algorithm, kernel", [
    ("float32", "pointwise", "conv2d_pointwise_nchw"),
    ("float16", "implicit_gemm", "conv2d_implicit_gemm_precomputed_mma (tile 128, 128, 32, 64, 32"),
    ("bfloat16", "implicit_gemm", "conv2d_implicit_gemm_precomputed_mma"),
])
def test_16_bit_convolutions_take_the_tensor_cores(dtype, algorithm, kernel, monkeypatch):
    """A 1x1 layer goes to the CUDA-core pointwise kernels in float32 and to the implicit GEMM's
    tensor-core tiles in float16/bfloat16 (heuristics.py rule 2)."""
    if dtype == "bfloat16":
        pytest.importorskip("ml_dtypes")
    monkeypatch.setattr(autotune, "_enabled", False)
    e = gpuconv.explain((32, 256, 14, 14), (1024, 256, 1, 1), dtype=dtype)
    assert e.algorithm == algorithm and e.kernel.startswith(kernel)
    assert ("tensor cores" in e.kernel) == (dtype != "float32")


def test_explain_names_the_8_channel_kernel(monkeypatch):
    monkeypatch.setattr(autotune, "_enabled", False)
    nhwc = dict(padding=1, data_format="NHWC", dtype="float16")
    assert gpuconv.explain((32, 56, 56, 64), (64, 64, 3, 3), **nhwc).kernel.startswith(
        "conv2d_implicit_gemm_precomputed_mma_vec (8 channels per load")
    # 60 channels: not a multiple of 8; NCHW: channels are not contiguous
    assert gpuconv.explain((32, 56, 56, 60), (64, 60, 3, 3), **nhwc).kernel.startswith(
        "conv2d_implicit_gemm_precomputed_mma (")
    assert gpuconv.explain((32, 64, 56, 56), (64, 64, 3, 3), padding=1,
                           dtype="float16").kernel.startswith("conv2d_implicit_gemm_precomputed_mma (")


def test_explain_with_arrays_and_forced_algorithms(rng, monkeypatch):
    monkeypatch.setattr(autotune, "_enabled", False)
    case = CASE_BY_NAME["depthwise3x3"]
    x, w, _, _ = make_inputs(case, np.float64, "NHWC", "random", rng)
    e = gpuconv.explain(x, w, **case.kwargs, data_format="NHWC")
    assert e.algorithm == "depthwise" and e.executor == "reference" and "NumPy reference" in str(e)
    with gpuconv.simulate():
        assert gpuconv.explain(x, w, **case.kwargs, data_format="NHWC").executor == "simulator"
    forced = gpuconv.explain(x, w, **case.kwargs, data_format="NHWC", algorithm="im2col_gemm")
    assert (forced.algorithm, forced.source) == ("im2col_gemm", "forced")
    with pytest.raises(ValueError, match="pointwise needs a 1x1 filter"):
        gpuconv.explain(x, w, **case.kwargs, data_format="NHWC", algorithm="pointwise")
    with pytest.raises(TypeError, match="both be arrays or both be shapes"):
        gpuconv.explain(x, w.shape, **case.kwargs)


# ------------------------------------------------------------------------------------ autotune


@pytest.fixture
def autotune_cache(tmp_path, monkeypatch):
    path = tmp_path / "autotune.json"
    monkeypatch.setenv("GPUCONV_AUTOTUNE_CACHE", str(path))
    monkeypatch.setattr(autotune, "_enabled", None)
    autotune.clear_memory()
    yield path
    autotune.set_timer(None)
    autotune.clear_memory()


@pytest.fixture
def launched(monkeypatch):
    """The algorithms launch.run_algorithm ran, in order."""
    names = []
    real_run = launch.run_algorithm

    def spy(algorithm, call, **options):
        names.append(algorithm)
        return real_run(algorithm, call, **options)

    monkeypatch.setattr(launch, "run_algorithm", spy)
    return names


def test_autotune_times_candidates_once_and_caches_on_disk(autotune_cache, monkeypatch, rng,
                                                          launched):
    # A fake timer that makes im2col_gemm the fastest, which the heuristic never picks.
    fake_seconds = {"direct": 3.0, "im2col_gemm": 1.0, "implicit_gemm": 2.0,
                    "winograd_nonfused": 1.5}
    timed = []

    def fake_timer(run, executor):
        run()
        algorithm = launched[-1]
        timed.append(algorithm)
        return fake_seconds[algorithm]

    autotune.set_timer(fake_timer)
    monkeypatch.setenv("GPUCONV_AUTOTUNE", "1")
    case = CASE_BY_NAME["3x3_pad1"]
    x, w, b, r = make_inputs(case, np.float32, "NCHW", "random", rng)
    expected = reference(case, x, w, b, r, data_format="NCHW")

    actual = run_kernels(case, x, w, b, r, algorithm="auto", data_format="NCHW", executor="simulator")
    assert_close(actual, expected, np.float32)
    assert sorted(timed) == ["direct", "im2col_gemm", "implicit_gemm", "winograd_nonfused"]
    assert launched[-1] == "im2col_gemm"  # the real call ran the measured winner

    entries = json.loads(autotune_cache.read_text())
    (key, entry), = entries.items()
    assert entry["algorithm"] == "im2col_gemm" and entry["seconds"]["direct"] == 3.0
    key = json.loads(key)
    assert key["device"] == "simulator" and key["layout"] == "NCHW" and key["dtype"] == "float32"
    assert key["version"] == gpuconv.__version__ and key["geometry"]["K"] == 5

    # A new process (memory cleared) reads the file: nothing is timed again.
    autotune.clear_memory()
    timed.clear()
    with gpuconv.simulate():
        e = gpuconv.explain(x, w, **case.kwargs)
    assert (e.algorithm, e.source) == ("im2col_gemm", "autotune cache") and "measured:" in str(e)
    run_kernels(case, x, w, b, r, algorithm="auto", data_format="NCHW", executor="simulator")
    assert timed == [] and launched[-1] == "im2col_gemm"

    # Another layout is another case.
    x2, _, _, _ = make_inputs(case, np.float32, "NHWC", "random", rng)
    run_kernels(case, x2, w, None, None, algorithm="auto", data_format="NHWC", executor="simulator")
    assert len(timed) == 4 and len(json.loads(autotune_cache.read_text())) == 2


def test_autotune_measures_nothing_under_a_cuda_graph_capture(autotune_cache, monkeypatch, rng,
                                                             launched):
    # Timing waits for the device, which a capture forbids: a measured case keeps its choice, a
    # new one takes the heuristic's, and nothing is timed or cached (gpuconv/_capture.py).
    timed = []

    def fake_timer(run, executor):
        timed.append(1)
        run()
        return {"im2col_gemm": 1.0}.get(launched[-1], 2.0)

    autotune.set_timer(fake_timer)
    monkeypatch.setenv("GPUCONV_AUTOTUNE", "1")
    case = CASE_BY_NAME["3x3_pad1"]
    x, w, b, r = make_inputs(case, np.float32, "NCHW", "random", rng)
    expected = reference(case, x, w, b, r, data_format="NCHW")
    capturing = []
    monkeypatch.setattr(launch, "is_capturing", lambda executor: capturing.append(executor)
                        or True)
    actual = run_kernels(case, x, w, b, r, algorithm="auto", data_format="NCHW",
                         executor="simulator")
    assert_close(actual, expected, np.float32)
    assert capturing == ["simulator"] and timed == [] and not autotune_cache.exists()
    assert launched == [heuristics.choose(case.geom, np.float32).algorithm]

    monkeypatch.setattr(launch, "is_capturing", lambda executor: False)
    run_kernels(case, x, w, b, r, algorithm="auto", data_format="NCHW", executor="simulator")
    assert timed and launched[-1] == "im2col_gemm"       # measured outside the capture
    timed.clear()
    monkeypatch.setattr(launch, "is_capturing", lambda executor: True)
    run_kernels(case, x, w, b, r, algorithm="auto", data_format="NCHW", executor="simulator")
    assert timed == [] and launched[-1] == "im2col_gemm"


def test_set_autotune_overrides_the_environment(autotune_cache, monkeypatch):
    monkeypatch.setenv("GPUCONV_AUTOTUNE", "1")
    assert autotune.enabled()
    gpuconv.set_autotune(False)
    assert not autotune.enabled()
    e = gpuconv.explain((1, 8, 9, 9), (40, 8, 3, 3), padding=1)
    assert e.source == "heuristic"
    gpuconv.set_autotune(True)
    e = gpuconv.explain((1, 8, 9, 9), (40, 8, 3, 3), padding=1)
    assert e.source == "autotune pending" and "not measured yet" in e.reason
    with pytest.raises(TypeError, match="flag must be a bool"):
        gpuconv.set_autotune("yes")
    gpuconv.set_autotune(False)
