"""Winograd with infinities and NaNs (kernels/conv/winograd.cu, winograd_direct_tile and the
weight gradient's direct fallback): an inf or NaN in a tile's input patch or in a filter reaches
every Winograd product of the tile, and the output transform's signed sums turn it into NaN over
the whole tile; the kernels then sum those tiles directly, so that exactly the outputs whose own
window holds the value are inf or NaN, as in the reference and in torch (seventh contract
audit: "auto" picks Winograd on common 3x3 layers). Under the simulator, every direction, both
output tiles, both layouts, groups."""
import numpy as np
import pytest

import gpuconv
from gpuconv.conv import launch_bwd_data, launch_bwd_weight, launch_winograd
from gpuconv.conv.geometry import conv2d_geometry

# a grouped case with tiles that overhang the plane (7 x 9 is no multiple of 2 or 4)
X_SHAPE, W_SHAPE, GROUPS, PADDING = (2, 4, 7, 9), (6, 2, 3, 3), 2, 1


def layout(a, data_format):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if data_format == "NHWC" else a


def assert_same_nonfinite_and_close(got, want, dtype):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    finite = np.isfinite(want)
    tolerance = 2e-2 if dtype == np.float16 else 1e-4
    np.testing.assert_allclose(got[finite], want[finite], rtol=tolerance, atol=tolerance)


def poisoned(rng, shape, dtype, where, value):
    a = rng.standard_normal(shape)
    a[where] = value
    return a.astype(dtype)


POISONS = {
    "inf": np.inf, "-inf": -np.inf, "nan": np.nan,
}


@pytest.fixture(params=launch_winograd.OUTPUT_TILES, ids=lambda m: f"F{m}x{m}")
def tile(request, monkeypatch):
    for direction in ("forward", "data_grad", "weight_grad"):
        monkeypatch.setitem(launch_winograd.AUTO_TILE, direction, request.param)
    return request.param


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16], ids=str)
@pytest.mark.parametrize("poison", list(POISONS))
def test_forward_with_a_nonfinite_input(rng, tile, data_format, dtype, poison):
    x = poisoned(rng, X_SHAPE, dtype, (1, 3, 2, 5), POISONS[poison])
    w = rng.standard_normal(W_SHAPE).astype(dtype)
    b = rng.standard_normal(W_SHAPE[0]).astype(dtype)
    kwargs = dict(padding=PADDING, groups=GROUPS, data_format=data_format)
    want = gpuconv.conv2d(layout(x, data_format), w, b, **kwargs)
    with gpuconv.simulate():
        got = gpuconv.conv2d(layout(x, data_format), w, b, algorithm="winograd_nonfused",
                             **kwargs)
    assert_same_nonfinite_and_close(got, want, dtype)
    assert np.isfinite(np.asarray(want, np.float64)).sum() > want.size // 2


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_forward_with_a_nonfinite_weight(rng, tile, data_format):
    """An inf tap: the reference multiplies the zero padding too (0 * inf = NaN at the border
    outputs that tap reads from the padding), as torch does."""
    x = rng.standard_normal(X_SHAPE)
    w = poisoned(rng, W_SHAPE, np.float64, (4, 1, 0, 2), np.inf)
    kwargs = dict(padding=PADDING, groups=GROUPS, data_format=data_format)
    want = gpuconv.conv2d(layout(x, data_format), w, **kwargs)
    with gpuconv.simulate():
        got = gpuconv.conv2d(layout(x, data_format), w, algorithm="winograd_nonfused", **kwargs)
    assert_same_nonfinite_and_close(got, want, np.float64)


def _data_gradient(w, dy, data_format, executor):
    geom = conv2d_geometry(X_SHAPE, W_SHAPE, 1, PADDING, 1, GROUPS)
    assert launch_winograd.data_gradient_refusal(geom) is None
    return launch_bwd_data.run("winograd_nonfused", geom, w, layout(dy, data_format), None,
                               data_format, executor)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=str)
@pytest.mark.parametrize("poisoned_operand", ["grad_output", "weight"])
def test_data_gradient_with_a_nonfinite_operand(rng, tile, data_format, dtype, poisoned_operand):
    """The data gradient adds only the pixels dy has: an inf tap reaches no pixel through the
    padding (finite there, as in the reference and torch)."""
    out_shape = (X_SHAPE[0], W_SHAPE[0], X_SHAPE[2], X_SHAPE[3])
    if poisoned_operand == "weight":
        w, dy = poisoned(rng, W_SHAPE, dtype, (1, 0, 0, 0), np.inf), rng.standard_normal(
            out_shape).astype(dtype)
    else:
        w = rng.standard_normal(W_SHAPE).astype(dtype)
        dy = poisoned(rng, out_shape, dtype, (0, 5, 6, 0), -np.inf)
    want = gpuconv.grad.conv2d_input(X_SHAPE, w, dy, padding=PADDING, groups=GROUPS)
    with gpuconv.simulate():
        got = _data_gradient(w, dy, data_format, "simulator")
    if data_format == "NHWC":
        got = got.transpose(0, 3, 1, 2)
    assert_same_nonfinite_and_close(got, want, dtype)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16], ids=str)
@pytest.mark.parametrize("poisoned_operand", ["x", "grad_output"])
def test_weight_gradient_with_a_nonfinite_operand(rng, tile, data_format, dtype,
                                                   poisoned_operand):
    out_shape = (X_SHAPE[0], W_SHAPE[0], X_SHAPE[2], X_SHAPE[3])
    x = rng.standard_normal(X_SHAPE).astype(dtype)
    dy = rng.standard_normal(out_shape).astype(dtype)
    if poisoned_operand == "x":
        x[1, 2, 0, 4] = np.inf
    else:
        dy[0, 1, 6, 8] = np.nan
    want = gpuconv.grad.conv2d_weight(x, W_SHAPE, dy, padding=PADDING, groups=GROUPS)
    geom = conv2d_geometry(X_SHAPE, W_SHAPE, 1, PADDING, 1, GROUPS)
    with gpuconv.simulate():
        got = launch_bwd_weight.run("winograd_nonfused", geom, layout(x, data_format),
                                    layout(dy, data_format), data_format, True, "simulator")
    assert_same_nonfinite_and_close(got, want, dtype)
    assert not np.isfinite(np.asarray(want, np.float64)).all()

