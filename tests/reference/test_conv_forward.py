"""The NumPy reference of conv2d against simpler definitions: plain loops over the seeds'
formula, scipy's 2-D correlation, the worked example of the seeds and TensorFlow's "same" rule."""
import itertools
import math
import time
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import correlate2d

import gpuconv


@pytest.fixture(autouse=True, scope="module")
def _reference_executor():
    # These tests check the oracle itself: keep a GPUCONV_SIMULATE=1 environment out of them.
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("GPUCONV_SIMULATE", raising=False)
        yield


def conv2d_loops(x, w, stride=(1, 1), pads=((0, 0), (0, 0)), dilation=(1, 1), groups=1):
    """out[n, k, p, q] = sum over c, r, s of x[n, g*C/groups + c, p*sh - top + r*dh,
    q*sw - left + s*dw] * w[k, c, r, s], reads outside x being zero; one output at a time."""
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    (top, bottom), (left, right) = pads
    sh, sw = stride
    dh, dw = dilation
    P = (H + top + bottom - dh * (R - 1) - 1) // sh + 1
    Q = (W + left + right - dw * (S - 1) - 1) // sw + 1
    Kg = K // groups
    out = np.zeros((N, K, P, Q))
    for n, k, p, q in itertools.product(range(N), range(K), range(P), range(Q)):
        g = k // Kg
        total = 0.0
        for c, r, s in itertools.product(range(Cg), range(R), range(S)):
            h, v = p * sh - top + r * dh, q * sw - left + s * dw
            if 0 <= h < H and 0 <= v < W:
                total += float(x[n, g * Cg + c, h, v]) * float(w[k, c, r, s])
        out[n, k, p, q] = total
    return out


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def normal(rng, *shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------------------------------------
# the worked example and scipy

IMAGE = np.array([[1, 1, 1, 0, 0],
                  [0, 1, 1, 1, 0],
                  [0, 0, 1, 1, 1],
                  [0, 0, 1, 1, 0],
                  [0, 1, 1, 0, 0]], dtype=np.float64)
KERNEL = np.array([[1, 0, 1],
                   [0, 1, 0],
                   [1, 0, 1]], dtype=np.float64)


def test_worked_example_without_padding():
    y = gpuconv.conv2d(IMAGE[None, None], KERNEL[None, None])
    np.testing.assert_array_equal(y[0, 0], [[4, 3, 4], [2, 4, 3], [2, 3, 4]])


def test_worked_example_with_padding_one():
    y = gpuconv.conv2d(IMAGE[None, None], KERNEL[None, None], padding=1)
    # Computed by hand: the centre is the unpadded result, the border sees zeros outside.
    np.testing.assert_array_equal(y[0, 0], [[2, 2, 3, 1, 1],
                                            [1, 4, 3, 4, 1],
                                            [1, 2, 4, 3, 3],
                                            [1, 2, 3, 4, 1],
                                            [0, 2, 2, 1, 1]])


@pytest.mark.parametrize("mode, padding", [("valid", 0), ("same", 1), ("full", 2)])
def test_single_channel_matches_scipy_correlate2d(rng, mode, padding):
    image, kernel = normal(rng, 9, 11), normal(rng, 3, 3)
    y = gpuconv.conv2d(image[None, None], kernel[None, None], padding=padding)
    np.testing.assert_allclose(y[0, 0], correlate2d(image, kernel, mode=mode), rtol=1e-12, atol=1e-12)


def test_multi_channel_is_a_sum_of_scipy_correlations(rng):
    x, w = normal(rng, 2, 3, 8, 7), normal(rng, 4, 3, 3, 2)
    y = gpuconv.conv2d(x, w)
    expected = np.array([[sum(correlate2d(x[n, c], w[k, c], mode="valid") for c in range(3))
                          for k in range(4)] for n in range(2)])
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# against the loops

CASES = [  # x shape, weight shape, conv2d kwargs, explicit pads for the loops
    ((2, 3, 7, 6), (4, 3, 3, 3), dict(), ((0, 0), (0, 0))),
    ((1, 2, 8, 9), (3, 2, 3, 2), dict(stride=2, padding=1), ((1, 1), (1, 1))),
    ((1, 2, 9, 8), (2, 2, 2, 3), dict(stride=(3, 2), padding=(2, 0)), ((2, 2), (0, 0))),
    ((2, 2, 9, 9), (3, 2, 3, 3), dict(dilation=2, padding=((1, 3), (0, 2))), ((1, 3), (0, 2))),
    ((1, 4, 7, 7), (6, 2, 3, 3), dict(groups=2, padding=1, dilation=(1, 2)), ((1, 1), (1, 1))),
    ((2, 3, 6, 5), (3, 1, 3, 3), dict(groups=3, padding=1, stride=2), ((1, 1), (1, 1))),  # depthwise
    ((2, 5, 4, 6), (3, 5, 1, 1), dict(), ((0, 0), (0, 0))),  # pointwise
    ((1, 2, 5, 5), (2, 2, 3, 3), dict(padding="valid"), ((0, 0), (0, 0))),
]


@pytest.mark.parametrize("x_shape, w_shape, kwargs, pads", CASES)
def test_matches_loops(rng, x_shape, w_shape, kwargs, pads):
    x, w = normal(rng, *x_shape), normal(rng, *w_shape)
    y = gpuconv.conv2d(x, w, **kwargs)
    expected = conv2d_loops(x, w, pair(kwargs.get("stride", 1)), pads,
                            pair(kwargs.get("dilation", 1)), kwargs.get("groups", 1))
    assert y.dtype == np.float64 and y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@given(data=st.data())
@settings(max_examples=30, deadline=None)
def test_random_geometries_match_loops(data):
    groups = data.draw(st.integers(1, 3), label="groups")
    cg, kg = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    R, S = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    sh, sw, dh, dw = (data.draw(st.integers(1, 3)) for _ in range(4))
    pads = tuple(tuple(data.draw(st.integers(0, 2)) for _ in range(2)) for _ in range(2))
    # The input is at least as large as the dilated kernel so that the output is not empty.
    H = data.draw(st.integers(max(1, dh * (R - 1) + 1 - sum(pads[0])), 7))
    W = data.draw(st.integers(max(1, dw * (S - 1) + 1 - sum(pads[1])), 7))
    N = data.draw(st.integers(1, 2))
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    x, w = normal(rng, N, cg * groups, H, W), normal(rng, kg * groups, cg, R, S)
    y = gpuconv.conv2d(x, w, stride=(sh, sw), padding=pads, dilation=(dh, dw), groups=groups)
    expected = conv2d_loops(x, w, (sh, sw), pads, (dh, dw), groups)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def tensorflow_same_pads(size, stride, kernel, dilation):
    """TensorFlow's documented SAME rule (padding on the effective, dilated filter)."""
    effective = dilation * (kernel - 1) + 1
    if size % stride == 0:
        total = max(effective - stride, 0)
    else:
        total = max(effective - size % stride, 0)
    return (total // 2, total - total // 2)


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("size, kernel, dilation", [(7, 3, 1), (8, 4, 1), (6, 2, 2), (5, 1, 1), (9, 5, 1)])
def test_same_padding_follows_tensorflow(rng, stride, size, kernel, dilation):
    x, w = normal(rng, 1, 2, size, size + 1), normal(rng, 2, 2, kernel, kernel)
    y = gpuconv.conv2d(x, w, stride=stride, padding="same", dilation=dilation)
    assert y.shape[2:] == (math.ceil(size / stride), math.ceil((size + 1) / stride))
    pads = (tensorflow_same_pads(size, stride, kernel, dilation),
            tensorflow_same_pads(size + 1, stride, kernel, dilation))
    np.testing.assert_allclose(y, conv2d_loops(x, w, (stride, stride), pads, (dilation, dilation)),
                               rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# the epilogue: bias, residual, activation


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


@pytest.mark.parametrize("activation, function", [
    (None, lambda v: v), ("relu", lambda v: np.where(v > 0, v, 0.0)), ("tanh", np.tanh),
    ("sigmoid", sigmoid)])
def test_epilogue_is_activation_of_conv_plus_bias_plus_residual(rng, activation, function):
    x, w, b = normal(rng, 2, 3, 6, 6), normal(rng, 4, 3, 3, 3), normal(rng, 4)
    residual = normal(rng, 2, 4, 6, 6)
    y = gpuconv.conv2d(x, w, b, padding=1, activation=activation, residual=residual)
    linear = conv2d_loops(x, w, pads=((1, 1), (1, 1))) + b[None, :, None, None] + residual
    np.testing.assert_allclose(y, function(linear), rtol=1e-12, atol=1e-12)


def test_sigmoid_saturates_without_overflow():
    x = np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0]).reshape(1, 1, 1, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = gpuconv.conv2d(x, np.ones((1, 1, 1, 1)), activation="sigmoid")
    np.testing.assert_allclose(y.ravel(), [0.0, sigmoid(-30.0), 0.5, sigmoid(30.0), 1.0], rtol=1e-15, atol=0)


def test_nan_and_inf_propagate(rng):
    x = normal(rng, 1, 1, 4, 4)
    x[0, 0, 0, 0], x[0, 0, 3, 3] = np.nan, np.inf
    y = gpuconv.conv2d(x, np.ones((1, 1, 2, 2)), activation="relu")
    assert np.isnan(y[0, 0, 0, 0]) and np.isinf(y[0, 0, 2, 2]) and np.isfinite(y[0, 0, 0, 2])


# ---------------------------------------------------------------------------------------------
# layouts, dtypes, strides, out=


def test_nhwc_is_nchw_transposed(rng):
    x, w, b = normal(rng, 2, 3, 7, 5), normal(rng, 4, 3, 3, 2), normal(rng, 4)
    residual = normal(rng, 2, 4, 6, 4)
    kwargs = dict(stride=(1, 2), padding=((1, 0), (2, 1)), activation="tanh")
    y = gpuconv.conv2d(x, w, b, residual=residual, **kwargs)
    y_nhwc = gpuconv.conv2d(x.transpose(0, 2, 3, 1), w, b, residual=residual.transpose(0, 2, 3, 1),
                            data_format="NHWC", **kwargs)
    assert y_nhwc.flags.c_contiguous
    np.testing.assert_allclose(y_nhwc, y.transpose(0, 2, 3, 1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype, tolerance", [(np.float16, 2e-3), (np.float32, 1e-6), (np.float64, 1e-13)])
def test_dtype_is_kept_and_result_is_rounded_float64(rng, dtype, tolerance):
    x, w, b = normal(rng, 2, 3, 6, 6, dtype=dtype), normal(rng, 4, 3, 3, 3, dtype=dtype), normal(rng, 4, dtype=dtype)
    y = gpuconv.conv2d(x, w, b, padding=1)
    assert y.dtype == dtype
    expected = conv2d_loops(x.astype(np.float64), w.astype(np.float64), pads=((1, 1), (1, 1))) + b[None, :, None, None]
    np.testing.assert_allclose(y.astype(np.float64), expected, rtol=tolerance, atol=tolerance)


def test_float16_overflow_gives_inf_without_warning():
    x = np.full((1, 1, 3, 3), 60000.0, dtype=np.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = gpuconv.conv2d(x, np.ones((1, 1, 2, 2), dtype=np.float16))
    assert np.all(np.isinf(y))


@pytest.mark.parametrize("view", [
    lambda a: a[:, 1:, ::2, 1::2],             # strided
    lambda a: a[:, :3, ::-1, ::-1],            # negative strides
    lambda a: a[:, 1:].transpose(0, 1, 3, 2),  # permuted
    lambda a: a[::-1, 1:],                     # batch reversed, channel offset
])
def test_non_contiguous_inputs_give_the_contiguous_result(rng, view):
    base, w = normal(rng, 2, 4, 10, 9), normal(rng, 3, 3, 3, 2)
    x = view(base)
    x_contiguous = np.ascontiguousarray(x)
    w_view = np.ascontiguousarray(w[:, :, ::-1])[:, :, ::-1]   # a negatively strided weight too
    assert not x.flags.c_contiguous and w_view.strides[2] < 0
    np.testing.assert_array_equal(gpuconv.conv2d(x, w_view, padding=1), gpuconv.conv2d(x_contiguous, w, padding=1))


def test_out_receives_the_result(rng):
    x, w = normal(rng, 2, 3, 5, 5, dtype=np.float32), normal(rng, 4, 3, 3, 3, dtype=np.float32)
    out = np.full((2, 4, 3, 3), np.nan, dtype=np.float32)
    assert gpuconv.conv2d(x, w, out=out) is out
    np.testing.assert_array_equal(out, gpuconv.conv2d(x, w))


def test_out_may_be_a_channel_slice_of_a_contiguous_buffer(rng):
    x, w = normal(rng, 2, 3, 5, 5), normal(rng, 4, 3, 3, 3)
    buffer = np.full((2, 10, 5, 5), -7.0)
    result = gpuconv.conv2d(x, w, padding=1, out=buffer[:, 3:7])
    assert np.shares_memory(result, buffer)
    np.testing.assert_array_equal(buffer[:, 3:7], gpuconv.conv2d(x, w, padding=1))
    assert np.all(buffer[:, :3] == -7.0) and np.all(buffer[:, 7:] == -7.0)


def test_out_in_nhwc(rng):
    x, w = normal(rng, 1, 5, 6, 3), normal(rng, 2, 3, 2, 2)
    out = np.empty((1, 4, 5, 2))
    gpuconv.conv2d(x, w, data_format="NHWC", out=out)
    np.testing.assert_array_equal(out, gpuconv.conv2d(x, w, data_format="NHWC"))


# ---------------------------------------------------------------------------------------------
# edge cases


@pytest.mark.parametrize("data_format, x_shape, out_shape", [
    ("NCHW", (0, 3, 6, 6), (0, 4, 6, 6)), ("NHWC", (0, 6, 6, 3), (0, 6, 6, 4))])
def test_empty_batch_gives_an_empty_result(data_format, x_shape, out_shape):
    y = gpuconv.conv2d(np.zeros(x_shape, np.float32), np.zeros((4, 3, 3, 3), np.float32),
                       padding="same", data_format=data_format)
    assert y.shape == out_shape and y.dtype == np.float32


def test_one_by_one_spatial_input(rng):
    x, w = normal(rng, 3, 2, 1, 1), normal(rng, 4, 2, 3, 3)
    y = gpuconv.conv2d(x, w, padding=1)
    # Only the kernel's centre tap meets the single pixel.
    np.testing.assert_allclose(y[:, :, 0, 0], x[:, :, 0, 0] @ w[:, :, 1, 1].T, rtol=1e-12)
    pointwise = gpuconv.conv2d(x, np.ascontiguousarray(w[:, :, :1, :1]))
    np.testing.assert_allclose(pointwise[:, :, 0, 0], x[:, :, 0, 0] @ w[:, :, 0, 0].T, rtol=1e-12)


def test_kernel_as_large_as_the_padded_input(rng):
    x, w = normal(rng, 2, 3, 4, 5), normal(rng, 2, 3, 6, 7)
    y = gpuconv.conv2d(x, w, padding=1)
    assert y.shape == (2, 2, 1, 1)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    np.testing.assert_allclose(y[:, :, 0, 0], np.einsum("nchw,kchw->nk", padded, w), rtol=1e-12)


def test_resnet50_layer_is_fast_and_right():
    rng = np.random.default_rng(5)
    x, w = normal(rng, 1, 256, 56, 56, dtype=np.float32), normal(rng, 64, 256, 3, 3, dtype=np.float32)
    start = time.perf_counter()
    y = gpuconv.conv2d(x, w, padding=1)
    elapsed = time.perf_counter() - start
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    for k, p, q in [(0, 0, 0), (63, 55, 55), (17, 0, 55), (40, 31, 7)]:
        expected = np.sum(padded[0, :, p:p + 3, q:q + 3] * w[k])
        assert y[0, k, p, q] == pytest.approx(expected, rel=1e-5, abs=1e-4)
    assert elapsed < 10.0, f"the reference took {elapsed:.1f} s for one ResNet-50 layer"
