"""The CUDA-core GEMM tiles filled by cp.async (kernels/common/async_gemm.cuh: SimtTileAsync and
its element loaders; launcher option ``loads``) against the register-staged kernels: the forward
implicit GEMM and pointwise kernels, and the implicit-GEMM data gradient.

Both fill the same k-major shared-memory tiles with the same elements (zeros where the gather
reads padding or runs past the GEMM) and multiply them in the same order, so the results must be
equal bit for bit: any difference is a copy that landed in the wrong place, too late (the
simulator poisons a copy's destination until its wait), or not at all. Checked under
``gpuconv.simulate()`` in every thread order, float32 and float64, both layouts, with split-K
and the fused epilogue; plus the option's refusals and what "auto" picks.
"""
from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from gpuconv.conv import launch, launch_bwd_data, launch_common, launch_pointwise
from gpuconv.conv.geometry import conv2d_geometry, layout_shape

ORDERS = ("forward", "reverse", "random")
LAYOUTS = ("NCHW", "NHWC")

# (name, x NCHW, w KCRS, conv kwargs): taps missing the image on every side, stride, dilation,
# groups, a k not a multiple of the k-tile (8), several row tiles of the large tile.
IMPLICIT_CASES = [
    ("pad_every_side", (2, 3, 5, 6), (4, 3, 3, 3), dict(padding=((2, 3), (3, 2)))),
    ("stride2_dil2_groups2", (1, 8, 9, 11), (6, 4, 3, 3),
     dict(stride=2, dilation=2, padding=((3, 1), (0, 2)), groups=2)),
    ("5x3_stride3_same", (1, 5, 11, 8), (7, 5, 5, 3), dict(stride=3, padding="same")),
    ("multi_tile", (2, 9, 11, 37), (70, 9, 3, 3), dict(padding=1)),
]
POINTWISE_CASES = [
    ("pointwise_groups", (3, 10, 9, 13), (58, 5, 1, 1), dict(groups=2)),
    ("pointwise_stride2_ragged_k", (2, 11, 17, 19), (61, 11, 1, 1), dict(stride=2)),
]


def _inputs(x_shape, w_shape, kwargs, dtype, data_format, seed=7):
    rng = np.random.default_rng(seed)
    geom = conv2d_geometry(x_shape, w_shape, **kwargs)
    x = rng.standard_normal(x_shape)
    if data_format == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(geom.K).astype(dtype)
    r = rng.standard_normal(layout_shape(geom.output_shape, data_format)).astype(dtype)
    return geom, x.astype(dtype), w, b, r


def _run(geom, x, w, b, r, *, algorithm, data_format, order, **options):
    out = np.full(r.shape, np.nan, dtype=x.dtype)
    with gpuconv.simulate(order=order, seed=3):
        launch.conv2d(geom, x, w, b, residual=r, activation="relu", algorithm=algorithm,
                      data_format=data_format, out=out, executor="simulator", **options)
    assert not np.isnan(out).any(), "an output element was never written"
    return out


def _same_bits(case, algorithm, dtype, data_format, order, launched_names, **options):
    _, x_shape, w_shape, kwargs = case
    geom, x, w, b, r = _inputs(x_shape, w_shape, kwargs, dtype, data_format)
    copied = _run(geom, x, w, b, r, algorithm=algorithm, data_format=data_format, order=order,
                  loads="cp_async", **options)
    assert any("_async<" in n for n in launched_names), launched_names
    staged = _run(geom, x, w, b, r, algorithm=algorithm, data_format=data_format, order=order,
                  loads="registers", **options)
    np.testing.assert_array_equal(copied.view(np.uint8), staged.view(np.uint8))
    expected = gpuconv.conv2d(x, w, b, **kwargs, residual=r, activation="relu",
                              data_format=data_format)
    tolerance = (1e-4 if dtype == np.float32 else 1e-10) * max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(copied, expected, rtol=0, atol=tolerance)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=("float32", "float64"))
@pytest.mark.parametrize("case", IMPLICIT_CASES, ids=lambda c: c[0])
def test_implicit_gemm_copies_match_register_loads(case, dtype, data_format, order,
                                                   launched_names):
    _same_bits(case, "implicit_gemm", dtype, data_format, order, launched_names,
               iterator="precomputed")


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=("float32", "float64"))
@pytest.mark.parametrize("case", POINTWISE_CASES, ids=lambda c: c[0])
def test_pointwise_copies_match_register_loads(case, dtype, data_format, order, launched_names):
    _same_bits(case, "pointwise", dtype, data_format, order, launched_names)


@pytest.mark.parametrize("algorithm, case", [("implicit_gemm", IMPLICIT_CASES[3]),
                                             ("pointwise", POINTWISE_CASES[1])])
@pytest.mark.parametrize("data_format", LAYOUTS)
def test_copies_with_split_k_and_the_large_tile(algorithm, case, data_format, monkeypatch,
                                                launched_names):
    # One SM: the large tile; three splits: a split's first k-tile is not the GEMM's.
    monkeypatch.setattr(launch_common, "multiprocessor_count", lambda executor: 1)
    _same_bits(case, algorithm, np.float32, data_format, "random", launched_names, split_k=3)
    assert any("split_k_epilogue" in n for n in launched_names), launched_names


@pytest.mark.parametrize("dtype", ("float16", "bfloat16"))
def test_cp_async_refuses_16_bit_operands(dtype):
    with pytest.raises(ValueError, match="loads='cp_async' copies float32 or float64"):
        launch_common.choose_loads(dtype, "cp_async")


def test_cp_async_refuses_tensor_cores_and_the_analytic_iterator():
    geom, x, w, b, r = _inputs((1, 4, 6, 6), (5, 4, 3, 3), dict(padding=1), np.float32, "NCHW")
    with pytest.raises(ValueError, match="iterator 'analytic'"):
        _run(geom, x, w, b, r, algorithm="implicit_gemm", data_format="NCHW", order="forward",
             loads="cp_async", iterator="analytic")
    with pytest.raises(ValueError, match="tensor cores"):
        launch_common.choose_loads("float16", "cp_async", tensor_cores=True)


@pytest.mark.parametrize("loads", ("async", "", None, 1))
def test_unknown_loads_option_is_refused(loads):
    geom, x, w, b, r = _inputs((1, 4, 6, 6), (5, 4, 1, 1), {}, np.float32, "NCHW")
    with pytest.raises((ValueError, TypeError), match="loads"):
        _run(geom, x, w, b, r, algorithm="pointwise", data_format="NCHW", order="forward",
             loads=loads)


def test_auto_copies_in_the_pointwise_kernels_of_both_layouts():
    assert launch_pointwise.pick_loads(np.dtype("float32"), nhwc=True) == "cp_async"
    assert launch_pointwise.pick_loads(np.dtype("float64"), nhwc=True) == "cp_async"
    assert launch_pointwise.pick_loads(np.dtype("float32"), nhwc=False) == "cp_async"
    assert launch_pointwise.pick_loads(np.dtype("float32"), nhwc=False, loads="registers") \
        == "registers"
    assert launch_pointwise.pick_loads(np.dtype("float16"), nhwc=True) == "registers"
    assert launch_pointwise.pick_loads(np.dtype("float32"), nhwc=True, loads="registers") \
        == "registers"
    assert launch_common.choose_loads("float32") == "registers"   # the implicit GEMM's auto
    nhwc = gpuconv.explain((2, 7, 7, 64), (32, 64, 1, 1), data_format="NHWC")
    assert nhwc.kernel.startswith("conv2d_pointwise_nhwc_async"), nhwc.kernel
    nchw = gpuconv.explain((2, 64, 7, 7), (32, 64, 1, 1), algorithm="pointwise")
    assert nchw.kernel.startswith("conv2d_pointwise_nchw_async"), nchw.kernel
    half = gpuconv.explain((2, 7, 7, 64), (32, 64, 1, 1), data_format="NHWC", dtype="float16",
                           algorithm="pointwise")
    assert half.kernel.startswith("conv2d_pointwise_nhwc "), half.kernel


# ------------------------------------------------------------------------------------ data gradient

# (name, x NCHW, w KCRS, conv kwargs): stride phases with 1, 2 and 4 taps and phases with none
# (dilation 2 at stride 2), groups, two pixel tiles per phase, a ragged last k-tile.
DGRAD_CASES = [
    ("3x3_stride2_grouped", (2, 6, 17, 19), (70, 3, 3, 3), dict(stride=2, padding=1, groups=2)),
    ("3x3_s2_dil2_bias", (1, 5, 9, 8), (7, 5, 3, 3), dict(stride=2, dilation=2, padding=2)),
    ("1x5_stride1", (2, 4, 6, 11), (9, 4, 1, 5), dict(padding=(0, 2))),
]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=("float32", "float64"))
@pytest.mark.parametrize("case", DGRAD_CASES, ids=lambda c: c[0])
def test_data_gradient_copies_match_register_loads(case, dtype, data_format, order,
                                                   launched_names):
    _, x_shape, w_shape, kwargs = case
    geom = conv2d_geometry(x_shape, w_shape, **kwargs)
    rng = np.random.default_rng(11)
    w = rng.standard_normal(w_shape).astype(dtype)
    dy = rng.standard_normal(layout_shape(geom.output_shape, data_format)).astype(dtype)
    bias = rng.standard_normal(geom.C).astype(dtype)   # conv_transpose2d's bias epilogue

    def run(loads):
        with gpuconv.simulate(order=order, seed=5):
            return launch_bwd_data.run("implicit_gemm", geom, w, dy, bias, data_format,
                                       "simulator", loads=loads)
    copied = run("cp_async")
    assert launched_names[-1].startswith("conv2d_dgrad_implicit_gemm_async<"), launched_names
    staged = run("registers")
    assert launched_names[-1].startswith("conv2d_dgrad_implicit_gemm<"), launched_names
    np.testing.assert_array_equal(copied.view(np.uint8), staged.view(np.uint8))
    grad_x = gpuconv.grad.conv2d_input(layout_shape(x_shape, data_format), w, dy, **kwargs,
                                       data_format=data_format)
    expected = grad_x + (bias[None, :, None, None] if data_format == "NCHW" else bias)
    tolerance = (1e-4 if dtype == np.float32 else 1e-10) * max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(copied, expected, rtol=0, atol=tolerance)


def test_data_gradient_auto_copies_in_nchw_only():
    f32, f16 = np.dtype("float32"), np.dtype("float16")
    assert launch_bwd_data.pick_loads(f32, nhwc=False, tensor_cores=False) == "cp_async"
    assert launch_bwd_data.pick_loads(f32, nhwc=True, tensor_cores=False) == "registers"
    assert launch_bwd_data.pick_loads(f16, nhwc=False, tensor_cores=True) == "registers"
    assert launch_bwd_data.pick_loads(f16, nhwc=False, tensor_cores=False) == "registers"
    geom = conv2d_geometry((1, 4, 6, 6), (5, 4, 3, 3), padding=1)
    w = np.ones((5, 4, 3, 3), np.float16)
    dy = np.ones((1, 6, 6, 5), np.float16)
    with pytest.raises(ValueError, match="loads='cp_async'"), gpuconv.simulate():
        launch_bwd_data.run("implicit_gemm", geom, w, dy, None, "NHWC", "simulator",
                            loads="cp_async")
    with pytest.raises(ValueError, match="loads"), gpuconv.simulate():
        launch_bwd_data.run("direct", geom, w.astype(np.float32), dy.astype(np.float32), None,
                            "NHWC", "simulator", loads="later")


# ------------------------------------------------------------------------------------ on the GPU

def _gpu_pair(run):
    """``run(loads)`` on the GPU for both loads: cp.async equals registers bit for bit."""
    import cupy
    copied, staged = (cupy.asnumpy(run(loads)) for loads in ("cp_async", "registers"))
    np.testing.assert_array_equal(copied.view(np.uint8), staged.view(np.uint8))
    return copied


@pytest.mark.gpu
@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=("float32", "float64"))
@pytest.mark.parametrize("algorithm, case", [("implicit_gemm", IMPLICIT_CASES[3]),
                                             ("implicit_gemm", IMPLICIT_CASES[1]),
                                             ("pointwise", POINTWISE_CASES[0]),
                                             ("pointwise", POINTWISE_CASES[1])],
                         ids=lambda v: v if isinstance(v, str) else v[0])
def test_forward_copies_on_the_gpu(algorithm, case, dtype, data_format):
    import cupy
    _, x_shape, w_shape, kwargs = case
    geom, x, w, b, r = _inputs(x_shape, w_shape, kwargs, dtype, data_format)

    def run(loads):
        return launch.conv2d(geom, *(cupy.asarray(a) for a in (x, w, b)),
                             residual=cupy.asarray(r), activation="relu", algorithm=algorithm,
                             data_format=data_format, executor="cupy", loads=loads)
    copied = _gpu_pair(run)
    expected = gpuconv.conv2d(x, w, b, **kwargs, residual=r, activation="relu",
                              data_format=data_format)
    tolerance = (1e-4 if dtype == np.float32 else 1e-10) * max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(copied, expected, rtol=0, atol=tolerance)


@pytest.mark.gpu
@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("case", DGRAD_CASES[:2], ids=lambda c: c[0])
def test_data_gradient_copies_on_the_gpu(case, data_format):
    import cupy
    _, x_shape, w_shape, kwargs = case
    geom = conv2d_geometry(x_shape, w_shape, **kwargs)
    rng = np.random.default_rng(11)
    w = rng.standard_normal(w_shape).astype(np.float32)
    dy = rng.standard_normal(layout_shape(geom.output_shape, data_format)).astype(np.float32)

    def run(loads):
        return launch_bwd_data.run("implicit_gemm", geom, cupy.asarray(w), cupy.asarray(dy), None,
                                   data_format, "cupy", loads=loads)
    copied = _gpu_pair(run)
    expected = gpuconv.grad.conv2d_input(layout_shape(x_shape, data_format), w, dy, **kwargs,
                                         data_format=data_format)
    np.testing.assert_allclose(copied, expected, rtol=0,
                               atol=1e-4 * max(1.0, float(np.abs(expected).max())))
