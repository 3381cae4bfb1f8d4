"""Split-K of the forward GEMM kernels (kernels/common/split_k.cuh, gpuconv/conv/split_k.py):
the k-tiles of each output tile shared out among several blocks, their partial sums added in
split order by conv2d_split_k_epilogue, which also applies the fused epilogue.

Every GEMM kernel that takes splits (the implicit GEMM's analytic and precomputed gathers on CUDA
cores and tensor cores, its 8-channel cp.async kernel, the two pointwise kernels) runs with splits
forced through ``launch.conv2d(..., split_k=s)`` under the simulator, against the reference, with
bias, residual and an activation, k-tiles that do not divide among the splits (the last split
empty), groups (grid z = group * splits + split) and a channel slice as ``out``. Then: the
result's bits do not depend on the thread order (no atomics), and "auto"'s model splits exactly
the under-filled GEMMs it was written for. The same for the pointwise data gradient
(kernels/conv/dgrad_pointwise.cu), whose second pass scatters to the pixels a stride reaches.
"""
from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from gpuconv.conv import autotune, launch, launch_bwd_data, launch_implicit_gemm, split_k
from gpuconv.conv.geometry import conv2d_geometry
from gpuconv.reference import conv as reference_conv

from kernel_support import BFLOAT16, to_layout
from test_conv_implicit_gemm_iterators import Case

TOLERANCE = {"float16": 4e-3, "bfloat16": 3e-2, "float32": 2e-5, "float64": 1e-12}
EPILOGUE_KERNEL = "conv2d_split_k_epilogue"


# C*R*S/groups = 63: eight k-tiles of 8 on CUDA cores (5 splits of 2: the last split gets none),
# two of 32 on the tensor cores.
DENSE = Case("groups2_3x3_stride2", (2, 14, 9, 8), (6, 7, 3, 3),
             dict(stride=2, padding=1, groups=2))
# Dilation 3 on a short plane: the precomputed gather skips taps that read only padding, so its
# k (live taps) is shorter than C*R*S and differs between the blocks of one launch.
DILATED = Case("dilated_dead_taps", (1, 9, 5, 11), (5, 9, 3, 3), dict(dilation=3, padding=3))
# C/groups = 16: the 8-channel cp.async kernel (NHWC, tensor cores).
VECTOR = Case("vector_channels", (1, 16, 6, 5), (12, 16, 3, 3), dict(padding=1))
POINTWISE = Case("pointwise_groups", (2, 70, 5, 7), (10, 35, 1, 1), dict(groups=2))

# (case, algorithm, launcher options, dtype, layout, splits)
RUNS = [
    (DENSE, "implicit_gemm", dict(iterator="analytic"), "float32", "NCHW", 5),
    (DENSE, "implicit_gemm", dict(iterator="precomputed"), "float32", "NHWC", 3),
    (DENSE, "implicit_gemm", dict(iterator="precomputed"), "float64", "NCHW", 4),
    (DENSE, "implicit_gemm", dict(iterator="analytic"), "float16", "NHWC", 2),
    (DENSE, "implicit_gemm", dict(iterator="precomputed"), "float16", "NCHW", 2),
    (DILATED, "implicit_gemm", dict(iterator="precomputed"), "float32", "NCHW", 6),
    (DILATED, "implicit_gemm", dict(iterator="precomputed", math="cuda_cores"), "float16",
     "NHWC", 3),
    (VECTOR, "implicit_gemm", dict(iterator="precomputed"), "float16", "NHWC", 3),
    (POINTWISE, "pointwise", {}, "float32", "NCHW", 3),
    (POINTWISE, "pointwise", {}, "float32", "NHWC", 5),
    (POINTWISE, "pointwise", {}, "float64", "NHWC", 2),
    (POINTWISE, "pointwise", {}, "float16", "NCHW", 4),
] + [(DENSE, "implicit_gemm", dict(iterator="precomputed"), d.name, "NHWC", 2) for d in BFLOAT16]


def inputs(case: Case, dtype, data_format: str, rng):
    g = case.geom
    x = to_layout(rng.standard_normal(case.x), data_format).astype(dtype)
    w = rng.standard_normal(case.w).astype(dtype)
    b = rng.standard_normal(g.K).astype(dtype)
    r = to_layout(rng.standard_normal(g.output_shape), data_format).astype(dtype)
    return x, w, b, r


def run(case: Case, x, w, b, r, *, algorithm, data_format, splits, order="forward", out=None,
        **options):
    with gpuconv.simulate(order=order, seed=5):
        return launch.conv2d(case.geom, x, w, b, residual=r, activation="tanh",
                             algorithm=algorithm, data_format=data_format, out=out,
                             executor="simulator", split_k=splits, **options)


def assert_close(y, expected, dtype):
    y64, e64 = y.astype(np.float64), expected.astype(np.float64)
    scale = max(1.0, float(np.abs(e64).max()))
    assert np.isfinite(y64).all()
    assert np.abs(y64 - e64).max() <= TOLERANCE[np.dtype(dtype).name] * scale


@pytest.mark.parametrize("case, algorithm, options, dtype, data_format, splits", RUNS,
                         ids=lambda v: getattr(v, "name", None))
def test_split_k_matches_reference(case, algorithm, options, dtype, data_format, splits, rng,
                                   launched_names):
    x, w, b, r = inputs(case, dtype, data_format, rng)
    y = run(case, x, w, b, r, algorithm=algorithm, data_format=data_format, splits=splits,
            **options)
    assert launched_names[-1].startswith(EPILOGUE_KERNEL + "<")
    expected = gpuconv.conv2d(x, w, b, residual=r, activation="tanh", data_format=data_format,
                              **case.kwargs)
    assert_close(y, expected, dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("case, algorithm, options, dtype, data_format, splits", RUNS,
                         ids=lambda v: getattr(v, "name", None))
def test_split_k_on_the_gpu(case, algorithm, options, dtype, data_format, splits, rng):
    import cupy
    x, w, b, r = inputs(case, dtype, data_format, rng)
    y = launch.conv2d(case.geom, *(cupy.asarray(a) for a in (x, w, b)),
                      residual=cupy.asarray(r), activation="tanh", algorithm=algorithm,
                      data_format=data_format, executor="cupy", split_k=splits, **options)
    expected = gpuconv.conv2d(x, w, b, residual=r, activation="tanh", data_format=data_format,
                              **case.kwargs)
    assert_close(cupy.asnumpy(y), expected, dtype)


@pytest.mark.parametrize("algorithm, case", [("implicit_gemm", DENSE), ("pointwise", POINTWISE)])
def test_split_k_into_a_channel_slice(algorithm, case, rng):
    # The epilogue pass writes through `out`'s own strides: channels 3 .. 3+K of a wider buffer,
    # the channels around it untouched.
    g = case.geom
    x, w, b, r = inputs(case, np.float32, "NCHW", rng)
    buffer = np.full((g.N, g.K + 5, g.P, g.Q), 7.0, dtype=np.float32)
    out = buffer[:, 3:3 + g.K]
    y = run(case, x, w, b, r, algorithm=algorithm, data_format="NCHW", splits=3, out=out)
    assert y is out
    expected = gpuconv.conv2d(x, w, b, residual=r, activation="tanh", **case.kwargs)
    assert_close(buffer[:, 3:3 + g.K], expected, np.float32)
    assert (buffer[:, :3] == 7.0).all() and (buffer[:, 3 + g.K:] == 7.0).all()


@pytest.mark.parametrize("algorithm, case, data_format",
                         [("implicit_gemm", DENSE, "NCHW"), ("implicit_gemm", DILATED, "NHWC"),
                          ("pointwise", POINTWISE, "NHWC")])
def test_split_k_bits_do_not_depend_on_thread_order(algorithm, case, data_format, rng):
    x, w, b, r = inputs(case, np.float32, data_format, rng)
    results = [run(case, x, w, b, r, algorithm=algorithm, data_format=data_format, splits=4,
                   order=order) for order in ("forward", "reverse", "random")]
    for y in results[1:]:
        assert y.tobytes() == results[0].tobytes()


@pytest.mark.parametrize("iterator, dtype, data_format",
                         [("precomputed", "float32", "NCHW"), ("precomputed", "float32", "NHWC"),
                          ("precomputed", "float16", "NHWC"), ("analytic", "float64", "NCHW")])
def test_splits_left_without_k_tiles(iterator, dtype, data_format, rng):
    # The first 80 output pixels read only padding: that 64-pixel tile has no live tap (k = 0,
    # every split empty), the next tiles few (most splits empty); 9 splits for 2 x 3 x 3 taps.
    case = Case("padding_only_tile", (1, 2, 3, 8), (3, 2, 3, 3), dict(padding=((12, 0), (1, 1))))
    x, w, b, r = inputs(case, dtype, data_format, rng)
    y = run(case, x, w, b, r, algorithm="implicit_gemm", data_format=data_format, splits=9,
            iterator=iterator)
    expected = gpuconv.conv2d(x, w, b, residual=r, activation="tanh", data_format=data_format,
                              **case.kwargs)
    assert_close(y, expected, dtype)


def test_forced_splits_past_the_k_tiles_are_capped(rng, launched_names):
    # 63 k of 8 per tile on CUDA cores: 8 k-tiles, so 50 splits run as 8 (one k-tile each).
    x, w, b, r = inputs(DENSE, np.float32, "NCHW", rng)
    y = run(DENSE, x, w, b, r, algorithm="implicit_gemm", data_format="NCHW", splits=50)
    expected = gpuconv.conv2d(x, w, b, residual=r, activation="tanh", **DENSE.kwargs)
    assert_close(y, expected, np.float32)
    assert launched_names[-1].startswith(EPILOGUE_KERNEL + "<")


def test_one_split_launches_no_epilogue_pass(rng, launched_names):
    x, w, b, r = inputs(DENSE, np.float32, "NCHW", rng)
    run(DENSE, x, w, b, r, algorithm="implicit_gemm", data_format="NCHW", splits=1)
    assert not any(n.startswith(EPILOGUE_KERNEL) for n in launched_names)


@pytest.mark.parametrize("value, error", [(0, ValueError), (-2, ValueError), ("four", ValueError),
                                          (2.5, TypeError), (None, TypeError)])
def test_split_k_option_is_checked(value, error, rng):
    x, w, b, r = inputs(DENSE, np.float32, "NCHW", rng)
    with pytest.raises(error, match="split_k"):
        run(DENSE, x, w, b, r, algorithm="implicit_gemm", data_format="NCHW", splits=value)


# ------------------------------------------------------------------------------ "auto"'s model


def auto_splits(n, c, plane, k, r, dtype="float32"):
    """(splits, tiles) of the implicit GEMM's launch of a square layer on the simulated H100."""
    geom = conv2d_geometry((n, c, plane, plane), (k, c, r, r), padding=r // 2)
    tensor_cores = dtype == "float16"
    tile = launch_implicit_gemm.pick_tile(geom, np.dtype(dtype), "simulator",
                                          tensor_cores=tensor_cores)
    tiles = -(-geom.gemm_m // tile.block_m) * -(-k // tile.block_n)
    splits = launch_implicit_gemm.splits(geom, tile, np.dtype(dtype), tensor_cores, "simulator")
    return splits, tiles


def test_auto_splits_the_under_filled_gemms(monkeypatch):
    # ResNet-50 at batch 1: layer4's 3x3 (49 pixels x 512 filters, k = 4608) is 8 blocks of the
    # small tile for 132 SMs (measured 370 us unsplit on an H100); split, its blocks fill about
    # one wave.
    splits, tiles = auto_splits(1, 512, 7, 512, 3)
    assert splits > 1 and 0.5 * 132 <= tiles * splits <= 132
    # layer4's 1x1 2048 -> 512 (164 us unsplit), layer3's 3x3 (156 us), on the tensor cores
    assert auto_splits(1, 2048, 7, 512, 1)[0] > 1
    assert auto_splits(1, 256, 14, 256, 3)[0] > 1
    assert auto_splits(1, 512, 7, 512, 3, dtype="float16")[0] > 1
    # A kernel shorter than the call's host time gains nothing (layer2's 1x1 512 -> 128 at batch
    # 1: 49 us unsplit, 87 split), nor do grids that fill the GPU (batch 32), nor short k.
    assert auto_splits(1, 512, 28, 128, 1)[0] == 1
    assert auto_splits(32, 256, 14, 256, 3)[0] == 1
    assert auto_splits(32, 512, 7, 512, 3)[0] == 1
    assert auto_splits(1, 12, 7, 10, 3)[0] == 1
    # The partials must fit in the workspace limit, forced splits too.
    monkeypatch.setenv("GPUCONV_WORKSPACE_BYTES", str(3 * 49 * 512 * 4))
    assert auto_splits(1, 512, 7, 512, 3)[0] == 3
    geom = conv2d_geometry((1, 512, 7, 7), (512, 512, 3, 3), padding=1)
    tile = launch_implicit_gemm.pick_tile(geom, np.dtype(np.float32), "simulator")
    assert launch_implicit_gemm.splits(geom, tile, np.dtype(np.float32), False, "simulator",
                                       split_k=16) == 3


def test_explain_says_when_the_k_dimension_is_split(monkeypatch):
    monkeypatch.setattr(autotune, "_enabled", False)
    # batch 1, layer4 3x3: auto runs the implicit GEMM (< 1024 output pixels for Winograd), split
    # as the model says (9 ways: 8 blocks of 64 x 64, the GEMM then under the call's host time)
    e = gpuconv.explain((1, 512, 7, 7), (512, 512, 3, 3), padding=1)
    assert e.algorithm == "implicit_gemm"
    assert "k split 9 ways" in e.kernel and "conv2d_split_k_epilogue" in e.kernel
    # the 1x1 kernel too; batch 32 does not split
    assert "k split" in gpuconv.explain((1, 2048, 7, 7), (512, 2048, 1, 1)).kernel
    assert "k split" not in gpuconv.explain((32, 2048, 7, 7), (512, 2048, 1, 1)).kernel


def test_auto_split_runs_through_the_public_call(monkeypatch, rng, launched_names):
    # On a 4-SM device one output tile with k = 576 leaves 3 SMs idle: "auto" shares its
    # k-tiles out (no host time, so that the model weighs the GEMM alone).
    monkeypatch.setattr(split_k, "multiprocessor_count", lambda executor: 4)
    monkeypatch.setattr(split_k, "LAUNCH_SECONDS", 0.0)
    monkeypatch.setattr(split_k, "CALL_HOST_SECONDS", 0.0)
    split_k._gemm_splits.cache_clear()
    case = Case("long_k", (1, 64, 4, 4), (8, 64, 3, 3), dict(padding=1))
    x, w, b, r = inputs(case, np.float32, "NCHW", rng)
    try:
        with gpuconv.simulate():
            y = gpuconv.conv2d(x, w, b, residual=r, activation="tanh", padding=1,
                               algorithm="implicit_gemm")
    finally:
        split_k._gemm_splits.cache_clear()   # choices made under the patched model
    assert any(n.startswith(EPILOGUE_KERNEL) for n in launched_names)
    expected = gpuconv.conv2d(x, w, b, residual=r, activation="tanh", padding=1)
    assert_close(y, expected, np.float32)


# ---------------------------------------------------------------- the pointwise data gradient

SPLIT_DX_KERNEL = "conv2d_dgrad_pointwise_split_epilogue"


def data_gradient(x_shape, w_shape, dtype, data_format, rng, *, stride=1, padding=0, groups=1,
                  bias=False, splits="auto", order="forward"):
    """(dx from launch_bwd_data.pointwise with ``splits``, the float64 reference's dx)."""
    geom = conv2d_geometry(x_shape, w_shape, stride, padding, 1, groups)
    dy = rng.standard_normal((geom.N, geom.K, geom.P, geom.Q)).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(geom.C).astype(dtype) if bias else None
    with gpuconv.simulate(order=order, seed=3):
        call = launch_bwd_data._Call(geom, w, to_layout(dy, data_format), b, data_format,
                                     "simulator")
        launch_bwd_data.pointwise(call, split_k=splits)
    dx = call.dx.transpose(0, 3, 1, 2) if data_format == "NHWC" else call.dx
    expected = reference_conv.conv2d_input(geom, w.astype(np.float64), dy.astype(np.float64))
    if bias:
        expected = expected + b.astype(np.float64)[None, :, None, None]
    return dx, expected


@pytest.mark.parametrize("data_format", ("NCHW", "NHWC"))
@pytest.mark.parametrize("dtype", ["float32", "float16", "float64"] + [d.name for d in BFLOAT16])
@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 0), (2, 1)])
def test_pointwise_data_gradient_split(dtype, data_format, stride, padding, rng, launched_names):
    # 20 filters per group: three k-tiles of 8, one per split; stride 2 with padding 1 leaves dx
    # pixels no output reaches (pre-filled) and dy pixels that reach only padding.
    for bias, order in ((False, "forward"), (True, "reverse"), (True, "random")):
        dx, expected = data_gradient((2, 10, 7, 9), (40, 5, 1, 1), dtype, data_format, rng,
                                     stride=stride, padding=padding, groups=2, bias=bias,
                                     splits=3, order=order)
        assert launched_names[-1].startswith(SPLIT_DX_KERNEL + "<")
        assert_close(dx, expected, dtype)


def test_pointwise_data_gradient_split_bits_do_not_depend_on_thread_order(rng):
    results = []
    for order in ("forward", "reverse", "random"):
        dx, _ = data_gradient((2, 6, 5, 5), (48, 6, 1, 1), "float32", "NCHW",
                              np.random.default_rng(9), splits=4, order=order)
        results.append(dx)
    assert all(r.tobytes() == results[0].tobytes() for r in results[1:])


def test_pointwise_data_gradient_auto_splits():
    def splits(n, c, plane, k, stride=1):
        geom = conv2d_geometry((n, c, plane, plane), (k, c, 1, 1), stride)
        return launch_bwd_data.pointwise_splits(geom, n, False, np.dtype(np.float32),
                                                "simulator")
    # ResNet-50 at batch 1: the data gradients of layer4's 512 -> 2048 and 1024 -> 2048 (s2)
    # 1x1 layers (196-202 us on an H100, cuDNN 82-85: bench/results/20261122T1604Z) reduce over
    # 2048 filters in 4-8 blocks of 128 x 64.
    assert splits(1, 512, 7, 2048) > 1
    assert splits(1, 1024, 14, 2048, stride=2) > 1
    # batch 32, and short reductions: no split
    assert splits(32, 512, 7, 2048) == 1
    assert splits(1, 256, 56, 64) == 1


def test_public_data_gradient_splits_where_auto_says(monkeypatch, rng, launched_names):
    monkeypatch.setattr(split_k, "multiprocessor_count", lambda executor: 4)
    monkeypatch.setattr(split_k, "LAUNCH_SECONDS", 0.0)
    monkeypatch.setattr(split_k, "CALL_HOST_SECONDS", 0.0)
    split_k._gemm_splits.cache_clear()
    x_shape, w = (1, 8, 4, 4), rng.standard_normal((256, 8, 1, 1)).astype(np.float32)
    dy = rng.standard_normal((1, 256, 4, 4)).astype(np.float32)
    try:
        with gpuconv.simulate():
            dx = gpuconv.grad.conv2d_input(x_shape, w, dy, algorithm="pointwise")
    finally:
        split_k._gemm_splits.cache_clear()
    assert any(n.startswith(SPLIT_DX_KERNEL) for n in launched_names)
    assert_close(dx, gpuconv.grad.conv2d_input(x_shape, w, dy), np.float32)


@pytest.mark.gpu
@pytest.mark.parametrize("data_format", ("NCHW", "NHWC"))
def test_pointwise_data_gradient_split_on_the_gpu(data_format, rng):
    import cupy
    geom = conv2d_geometry((2, 10, 7, 9), (40, 5, 1, 1), 2, 1, 1, 2)
    dy = rng.standard_normal((geom.N, geom.K, geom.P, geom.Q)).astype(np.float32)
    w = rng.standard_normal((40, 5, 1, 1)).astype(np.float32)
    b = rng.standard_normal(geom.C).astype(np.float32)
    call = launch_bwd_data._Call(geom, cupy.asarray(w), cupy.asarray(to_layout(dy, data_format)),
                                 cupy.asarray(b), data_format, "cupy")
    launch_bwd_data.pointwise(call, split_k=3)
    dx = cupy.asnumpy(call.dx)
    dx = dx.transpose(0, 3, 1, 2) if data_format == "NHWC" else dx
    expected = reference_conv.conv2d_input(geom, w.astype(np.float64), dy.astype(np.float64))
    assert_close(dx, expected + b.astype(np.float64)[None, :, None, None], np.float32)
