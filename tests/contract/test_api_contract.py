"""api.md, sentence by sentence, on NumPy arrays (the reference path and the simulated kernels,
see conftest.py): convolution, gradients, pooling, regions of interest and utilities. Oracles are
torch-free here: the formulas of api.md, explicit zero padding, loops written from the stated
definitions, and adjoint identities (<F(x), g> == <x, grad.F(g, x)> for an F linear in x). The
cross-checks against PyTorch are in test_contract_torch.py, the invalid arguments in
test_contract_errors.py, the rules every function shares (dtypes, layouts, N == 0) in
test_contract_arrays.py.

A test marked xfail(strict=True) states a finding of the audit (see its reason): the library
does not do what api.md says yet.
"""
import functools
import inspect
import itertools
import math

import numpy as np
import pytest

import gpuconv
from gpuconv import grad
from contract_support import case_named, inner

RNG = np.random.default_rng(20240611)


def rand(*shape, dtype=np.float64):
    return RNG.standard_normal(shape).astype(dtype)


def nhwc(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def nchw(a):
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def same_pads(size, stride, dilation, kernel):
    """TensorFlow's "SAME": output ceil(size / stride), the odd padding pixel at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def zero_pad(x, top, bottom, left, right):
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))


# ============================================================================================
# Convolution: padding forms


def test_padding_int_pair_and_pair_of_pairs_agree_with_explicit_zero_padding():
    x, w = rand(2, 3, 6, 7), rand(4, 3, 3, 2)
    explicit = gpuconv.conv2d(zero_pad(x, 1, 1, 2, 2), w)
    np.testing.assert_allclose(gpuconv.conv2d(x, w, padding=(1, 2)), explicit, rtol=1e-12)
    np.testing.assert_allclose(gpuconv.conv2d(x, w, padding=((1, 1), (2, 2))), explicit, rtol=1e-12)
    np.testing.assert_allclose(gpuconv.conv2d(x, w, padding=1), gpuconv.conv2d(zero_pad(x, 1, 1, 1, 1), w),
                               rtol=1e-12)
    # ((top, bottom), (left, right)), asymmetric, lists accepted as well as tuples
    for (t, b), (l, r) in [((0, 2), (1, 0)), ((3, 1), (0, 2)), ((2, 0), (0, 1))]:
        np.testing.assert_allclose(gpuconv.conv2d(x, w, padding=((t, b), (l, r))),
                                   gpuconv.conv2d(zero_pad(x, t, b, l, r), w), rtol=1e-12)
        np.testing.assert_allclose(gpuconv.conv2d(x, w, padding=[[t, b], [l, r]]),
                                   gpuconv.conv2d(zero_pad(x, t, b, l, r), w), rtol=1e-12)


def test_padding_valid_is_zero_padding():
    x, w = rand(1, 2, 5, 6), rand(3, 2, 2, 3)
    np.testing.assert_array_equal(gpuconv.conv2d(x, w, padding="valid"), gpuconv.conv2d(x, w, padding=0))
    np.testing.assert_array_equal(gpuconv.conv2d(x, w, None, 2, "valid", 2),
                                  gpuconv.conv2d(x, w, None, 2, 0, 2))


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_padding_same_gives_ceil_input_over_stride_with_extra_padding_last(stride):
    for (R, S), dilation, (H, W) in itertools.product(
            [(1, 2), (2, 3), (3, 4), (4, 1), (2, 2)], [1, 2, (1, 2)], [(1, 1), (5, 6), (8, 7)]):
        dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
        x, w = rand(1, 2, H, W), rand(3, 2, R, S)
        y = gpuconv.conv2d(x, w, stride=stride, padding="same", dilation=dilation)
        assert y.shape == (1, 3, -(-H // stride), -(-W // stride)), (R, S, dilation, H, W)
        (t, b), (l, r) = same_pads(H, stride, dh, R), same_pads(W, stride, dw, S)
        expected = gpuconv.conv2d(zero_pad(x, t, b, l, r), w, stride=stride, dilation=dilation)
        np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_padding_same_puts_the_odd_pixel_at_the_bottom_and_right():
    # A 2x2 all-ones filter on arange: the output at (i, j) sums x[i:i+2, j:j+2] with the missing
    # row/column below/right of the image counted as zero (TensorFlow), never above/left.
    x = np.arange(12.0).reshape(1, 1, 3, 4)
    y = gpuconv.conv2d(x, np.ones((1, 1, 2, 2)), padding="same")[0, 0]
    padded = np.pad(x[0, 0], ((0, 1), (0, 1)))
    expected = padded[:-1, :-1] + padded[1:, :-1] + padded[:-1, 1:] + padded[1:, 1:]
    np.testing.assert_array_equal(y, expected)


# ============================================================================================
# Convolution: stride/dilation/groups against a loop from the definition


def conv_loop(x, w, b, stride, pads, dilation, groups):
    """Cross-correlation straight from the definition (float64)."""
    (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = stride, pads, dilation
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    xp = zero_pad(x, pt, pb, pl, pr)
    P = (H + pt + pb - dh * (R - 1) - 1) // sh + 1
    Q = (W + pl + pr - dw * (S - 1) - 1) // sw + 1
    y = np.zeros((N, K, P, Q))
    Kg = K // groups
    for k in range(K):
        g = k // Kg
        for p in range(P):
            for q in range(Q):
                patch = xp[:, g * Cg:(g + 1) * Cg, p * sh:p * sh + dh * (R - 1) + 1:dh,
                           q * sw:q * sw + dw * (S - 1) + 1:dw]
                y[:, k, p, q] = np.einsum("ncrs,crs->n", patch, w[k])
    return y if b is None else y + b[None, :, None, None]


def test_conv2d_matches_the_definition_on_random_geometries():
    rng = np.random.default_rng(7)
    for _ in range(25):
        groups = int(rng.choice([1, 2, 3]))
        C, K = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
        R, S = (int(v) for v in rng.integers(1, 4, 2))
        stride = tuple(int(v) for v in rng.integers(1, 4, 2))
        dilation = tuple(int(v) for v in rng.integers(1, 3, 2))
        pads = tuple(tuple(int(v) for v in rng.integers(0, 3, 2)) for _ in range(2))
        H = int(rng.integers(dilation[0] * (R - 1) + 1, 9))
        W = int(rng.integers(dilation[1] * (S - 1) + 1, 9))
        x, w, b = rand(2, C, H, W), rand(K, C // groups, R, S), rand(K)
        y = gpuconv.conv2d(x, w, b, stride, pads, dilation, groups)
        np.testing.assert_allclose(y, conv_loop(x, w, b, stride, pads, dilation, groups),
                                   rtol=1e-10, atol=1e-10)


# ============================================================================================
# Convolution: fused epilogue


def sigmoid(v):
    e = np.exp(-np.abs(v))      # never overflows; no cancellation for large |v|
    return np.where(v >= 0, 1 / (1 + e), e / (1 + e))


ACTIVATIONS = {None: lambda v: v, "relu": lambda v: np.maximum(v, 0), "tanh": np.tanh,
               "sigmoid": sigmoid}


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_activation_of_conv_plus_bias_plus_residual(activation, data_format):
    x, w, b = rand(2, 3, 6, 5, dtype=np.float32), rand(4, 3, 3, 3, dtype=np.float32), rand(4, dtype=np.float32)
    residual = rand(2, 4, 4, 3, dtype=np.float32)
    conv = conv_loop(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                     (1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    expected = ACTIVATIONS[activation](conv + residual)
    if data_format == "NHWC":
        x, residual, expected = nhwc(x), nhwc(residual), nhwc(expected)
    y = gpuconv.conv2d(x, w, b, activation=activation, residual=residual, data_format=data_format)
    assert y.dtype == np.float32 and y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=2e-6, atol=2e-6)
    # without the residual (and without the bias)
    y = gpuconv.conv2d(x, w, activation=activation, data_format=data_format)
    expected = ACTIVATIONS[activation](conv - b.astype(np.float64)[None, :, None, None])
    np.testing.assert_allclose(y, nhwc(expected) if data_format == "NHWC" else expected,
                               rtol=2e-6, atol=2e-6)


def test_sigmoid_and_tanh_of_extreme_values_saturate_without_nan():
    x = np.array([-1e30, -800.0, -30.0, 0.0, 30.0, 800.0, 1e30]).reshape(1, 1, 1, 7)
    w = np.ones((1, 1, 1, 1))
    np.testing.assert_allclose(gpuconv.conv2d(x, w, activation="sigmoid")[0, 0, 0],
                               sigmoid(x[0, 0, 0]), rtol=1e-12, atol=1e-300)
    np.testing.assert_array_equal(gpuconv.conv2d(x, w, activation="tanh")[0, 0, 0], np.tanh(x[0, 0, 0]))
    x16 = np.array([-60000, -20, 0, 20, 60000], np.float16).reshape(1, 1, 1, 5)
    y16 = gpuconv.conv2d(x16, np.ones((1, 1, 1, 1), np.float16), activation="sigmoid")
    np.testing.assert_array_equal(y16[0, 0, 0], np.array([0, 2.06e-9, 0.5, 1, 1], np.float16))


def test_relu_propagates_nan_and_the_epilogue_order_is_conv_bias_residual_then_activation():
    x = np.array([[[[1.0, -2.0, np.nan]]]])
    w = np.full((1, 1, 1, 1), 2.0)
    b = np.array([1.0])
    residual = np.array([[[[-4.0, 3.0, 0.0]]]])
    # relu(2*1 + 1 - 4) = 0, relu(-4 + 1 + 3) = 0, nan
    y = gpuconv.conv2d(x, w, b, activation="relu", residual=residual)[0, 0, 0]
    np.testing.assert_array_equal(y[:2], [0.0, 0.0])
    assert np.isnan(y[2])


# ============================================================================================
# Convolution: algorithms


def test_conv_algorithms_lists_the_documented_names():
    assert isinstance(gpuconv.conv_algorithms, (tuple, list))
    assert {"direct", "im2col_gemm", "implicit_gemm", "pointwise", "depthwise"} <= set(gpuconv.conv_algorithms)
    assert all(isinstance(a, str) for a in gpuconv.conv_algorithms)
    assert "auto" not in gpuconv.conv_algorithms


RUNNABLE = {   # a case each algorithm can run: (x shape, weight shape, kwargs)
    "direct": ((2, 4, 6, 7), (5, 4, 3, 3), dict(padding=1)),
    "im2col_gemm": ((2, 4, 6, 7), (5, 4, 3, 3), dict(padding=1, stride=2)),
    "implicit_gemm": ((2, 4, 6, 7), (6, 2, 3, 2), dict(groups=2, dilation=2)),
    "pointwise": ((2, 4, 6, 7), (5, 4, 1, 1), dict()),
    "depthwise": ((2, 4, 6, 7), (8, 1, 3, 3), dict(groups=4, padding=1)),
}


@pytest.mark.parametrize("algorithm", sorted(RUNNABLE))
def test_every_algorithm_name_gives_the_auto_result(algorithm):
    xs, ws, kwargs = RUNNABLE[algorithm]
    x, w, b = rand(*xs), rand(*ws), rand(ws[0])
    expected = gpuconv.conv2d(x, w, b, **kwargs)
    np.testing.assert_allclose(gpuconv.conv2d(x, w, b, algorithm=algorithm, **kwargs), expected,
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gpuconv.conv2d(x, w, b, algorithm="auto", **kwargs), expected,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("algorithm", ["winograd", "fft", "", "AUTO", "Direct", None, 3, ("direct",)])
def test_unknown_algorithm_is_a_value_error_naming_it(algorithm):
    x, w = rand(1, 2, 5, 5), rand(2, 2, 3, 3)
    with pytest.raises(ValueError, match="algorithm"):
        gpuconv.conv2d(x, w, algorithm=algorithm)


@pytest.mark.parametrize("algorithm, weight_shape, kwargs, why", [
    ("pointwise", (4, 4, 3, 3), dict(padding=1), "1x1"),
    ("pointwise", (4, 4, 1, 1), dict(padding=1), "pad"),
    ("depthwise", (4, 4, 3, 3), dict(), "groups|depthwise"),
    ("depthwise", (4, 2, 3, 3), dict(groups=2), "groups|depthwise"),
])
def test_forcing_an_algorithm_that_cannot_run_the_case_is_a_value_error(algorithm, weight_shape,
                                                                        kwargs, why):
    x, w = rand(1, 4, 6, 6), rand(*weight_shape)
    with pytest.raises(ValueError, match=why):
        gpuconv.conv2d(x, w, algorithm=algorithm, **kwargs)


@pytest.mark.parametrize("algorithm, weight_shape, kwargs, why", [
    ("pointwise", (4, 4, 3, 3), dict(padding=1), "1x1"),
    ("depthwise", (4, 4, 3, 3), dict(), "C/groups == 1|depthwise"),
    ("depthwise", (4, 2, 3, 3), dict(groups=2), "C/groups == 1|depthwise"),
])
def test_forcing_a_gradient_algorithm_that_cannot_run_the_case_is_a_value_error(
        algorithm, weight_shape, kwargs, why):
    # api.md: algorithm= works for the backward passes as for the forward one, on every executor.
    x, w = rand(1, 4, 6, 6), rand(*weight_shape)
    dy = np.ones(gpuconv.conv2d_output_shape(x.shape, w.shape, **kwargs))
    with pytest.raises(ValueError, match=why):
        grad.conv2d_input(x.shape, w, dy, algorithm=algorithm, **kwargs)
    with pytest.raises(ValueError, match=why):
        grad.conv2d_weight(x, w.shape, dy, algorithm=algorithm, **kwargs)


def test_every_forward_algorithm_name_runs_the_gradients_of_a_case_it_fits():
    x, dy = rand(2, 4, 5, 5), rand(2, 6, 5, 5)
    for algorithm in ("direct", "im2col_gemm", "implicit_gemm", "pointwise"):
        w = rand(6, 4, 1, 1)
        np.testing.assert_allclose(grad.conv2d_input(x.shape, w, dy, algorithm=algorithm),
                                   grad.conv2d_input(x.shape, w, dy), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(grad.conv2d_weight(x, w.shape, dy, algorithm=algorithm),
                                   grad.conv2d_weight(x, w.shape, dy), rtol=1e-9, atol=1e-9)


def test_explain_says_which_algorithm_auto_picks_and_why():
    x = rand(1, 8, 9, 9, dtype=np.float32)
    text = str(gpuconv.explain(x, rand(8, 1, 3, 3, dtype=np.float32), groups=8))
    assert "depthwise" in text
    text = str(gpuconv.explain(x, rand(16, 8, 1, 1, dtype=np.float32)))
    assert any(a in text for a in gpuconv.conv_algorithms)


# ============================================================================================
# Convolution: layouts and out=


@pytest.mark.parametrize("groups", [1, 2])
def test_nhwc_conv_is_nchw_conv_transposed_with_kcrs_weights(groups):
    x, w, b = rand(2, 4, 6, 5), rand(6, 4 // groups, 3, 2), rand(6)
    residual = rand(2, 6, 3, 4)   # (6 + 1 - 3) // 2 + 1, (5 + 1 - 2 - 1) // 1 + 1
    kwargs = dict(stride=(2, 1), padding=((1, 0), (1, 0)), dilation=(1, 2), groups=groups)
    expected = gpuconv.conv2d(x, w, b, activation="relu", residual=residual, **kwargs)
    got = gpuconv.conv2d(nhwc(x), w, b, activation="relu", residual=nhwc(residual),
                         data_format="NHWC", **kwargs)
    np.testing.assert_allclose(got, nhwc(expected), rtol=1e-12, atol=1e-12)
    # an NHWC view of an NCHW buffer (what x.permute(0, 2, 3, 1) gives in PyTorch)
    got = gpuconv.conv2d(x.transpose(0, 2, 3, 1), w, b, activation="relu",
                         residual=residual.transpose(0, 2, 3, 1), data_format="NHWC", **kwargs)
    np.testing.assert_allclose(got, nhwc(expected), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_out_contiguous_is_filled_and_returned(data_format):
    x, w, b = rand(2, 3, 6, 5, dtype=np.float32), rand(4, 3, 3, 3, dtype=np.float32), rand(4, dtype=np.float32)
    if data_format == "NHWC":
        x = nhwc(x)
    expected = gpuconv.conv2d(x, w, b, padding=1, activation="tanh", data_format=data_format)
    out = np.full(expected.shape, np.nan, np.float32)
    result = gpuconv.conv2d(x, w, b, padding=1, activation="tanh", data_format=data_format, out=out)
    assert result is out
    np.testing.assert_array_equal(out, expected)


def test_out_channel_slices_concatenate_without_a_copy():
    # Inception: three branches written into one buffer, each into its channel slice.
    x = rand(2, 3, 6, 5, dtype=np.float32)
    branches = [(rand(4, 3, 1, 1, dtype=np.float32), 0), (rand(2, 3, 3, 3, dtype=np.float32), 1),
                (rand(3, 3, 5, 5, dtype=np.float32), 2)]
    buf = np.full((2, 12, 6, 5), 7.0, np.float32)
    c0 = 1
    expected = []
    for w, pad in branches:
        c1 = c0 + w.shape[0]
        residual = rand(2, w.shape[0], 6, 5, dtype=np.float32)
        result = gpuconv.conv2d(x, w, padding=pad, residual=residual, activation="relu",
                                out=buf[:, c0:c1])
        assert np.shares_memory(result, buf) and result.shape == (2, c1 - c0, 6, 5)
        expected.append(gpuconv.conv2d(x, w, padding=pad, residual=residual, activation="relu"))
        c0 = c1
    np.testing.assert_array_equal(buf[:, 1:c0], np.concatenate(expected, axis=1))
    np.testing.assert_array_equal(buf[:, :1], 7.0)      # outside the slices: untouched
    np.testing.assert_array_equal(buf[:, c0:], 7.0)


def test_out_with_an_empty_batch_is_returned():
    out = np.empty((0, 4, 5, 5), np.float32)
    assert gpuconv.conv2d(np.empty((0, 3, 5, 5), np.float32), rand(4, 3, 1, 1, dtype=np.float32),
                          out=out) is out


@pytest.mark.parametrize("out, error", [
    (np.zeros((2, 4, 6, 6), np.float32), ValueError),                 # wrong shape
    (np.zeros((2, 4, 6, 5), np.float64), TypeError),                  # wrong dtype
    (np.zeros((2, 4, 6, 5), np.int32), TypeError),
    (np.zeros((5, 6, 4, 2), np.float32).T, ValueError),                # not contiguous
    (np.zeros((2, 4, 6, 10), np.float32)[..., ::2], ValueError),       # not a channel slice
    (np.zeros((2, 4, 6, 5), np.float32).tolist(), TypeError),
    (np.broadcast_to(np.float32(0), (2, 4, 6, 5)), ValueError),        # read-only
])
def test_invalid_out_is_an_error_naming_out(out, error):
    x, w = rand(2, 3, 6, 5, dtype=np.float32), rand(4, 3, 1, 1, dtype=np.float32)
    with pytest.raises(error, match="out"):
        gpuconv.conv2d(x, w, out=out)


# ============================================================================================
# Transposed convolution


@pytest.mark.parametrize("stride, padding, output_padding, groups, dilation", [
    (1, 0, 0, 1, 1), (2, 1, 1, 1, 1), (3, (1, 0), (2, 1), 2, 1), ((2, 1), 2, 0, 1, (2, 3)),
    (2, 0, 1, 2, 2), (1, 1, 1, 1, 2),   # output_padding < dilation (not < stride): PyTorch allows it
])
def test_conv_transpose2d_is_the_input_gradient_of_conv2d(stride, padding, output_padding, groups, dilation):
    # weight (C_in, K_out/groups, R, S): the forward weight of the convolution it transposes.
    x, w, b = rand(2, 4, 5, 4), rand(4, 3, 3, 2), rand(3 * groups)
    y = gpuconv.conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation)
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    oh, ow = (output_padding, output_padding) if isinstance(output_padding, int) else output_padding
    dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
    H = (5 - 1) * sh - 2 * ph + dh * (3 - 1) + oh + 1
    W = (4 - 1) * sw - 2 * pw + dw * (2 - 1) + ow + 1
    assert y.shape == (2, 3 * groups, H, W)
    # The rows/columns that output_padding adds receive the taps that reach them: the input
    # gradient of a forward conv whose input is that big (its output then has the size of x;
    # when output_padding >= stride the forward output would be larger, and the extra rows of
    # grad_output count as zero).
    forward = gpuconv.conv2d_output_shape((2, 3 * groups, H, W), (4, 3, 3, 2), stride, padding,
                                          dilation, groups)
    g = np.zeros(forward)
    g[:, :, :5, :4] = x
    expected = grad.conv2d_input((2, 3 * groups, H, W), w, g, stride, padding, dilation, groups)
    np.testing.assert_allclose(y, expected + b[None, :, None, None], rtol=1e-12, atol=1e-12)


def test_conv_transpose2d_output_size_picks_the_output_padding():
    x, w = rand(1, 2, 4, 5), rand(2, 3, 3, 3)
    base = gpuconv.conv_transpose2d(x, w, stride=3, padding=1)
    assert base.shape == (1, 3, 10, 13)
    for extra_h, extra_w in [(0, 0), (1, 2), (2, 1)]:
        expected = gpuconv.conv_transpose2d(x, w, stride=3, padding=1, output_padding=(extra_h, extra_w))
        size = (10 + extra_h, 13 + extra_w)
        np.testing.assert_array_equal(gpuconv.conv_transpose2d(x, w, stride=3, padding=1, output_size=size),
                                      expected)
        np.testing.assert_array_equal(
            gpuconv.conv_transpose2d(x, w, stride=3, padding=1, output_size=(1, 3) + size), expected)
    with pytest.raises(ValueError, match="output_size"):
        gpuconv.conv_transpose2d(x, w, stride=3, padding=1, output_size=(13, 13))
    with pytest.raises(TypeError):      # keyword-only, as in api.md
        gpuconv.conv_transpose2d(x, w, None, 3, 1, 0, 1, 1, (10, 13))


# ============================================================================================
# Gradients of the convolution


@pytest.mark.parametrize("stride, padding, dilation, groups", [
    (1, 0, 1, 1), (2, 1, 1, 1), ((2, 3), "same", (1, 2), 2), (3, "same", 1, 1), (1, "valid", 2, 3),
    (2, ((0, 2), (1, 0)), 1, 3), (1, (2, 1), 2, 1),
])
def test_conv_gradients_are_the_adjoints_of_conv2d(stride, padding, dilation, groups):
    x, w = rand(2, 6, 7, 8), rand(3 * groups, 6 // groups, 3, 2)
    y = gpuconv.conv2d(x, w, None, stride, padding, dilation, groups)
    g = rand(*y.shape)
    dx = grad.conv2d_input(x.shape, w, g, stride, padding, dilation, groups)
    dw = grad.conv2d_weight(x, w.shape, g, stride, padding, dilation, groups)
    assert dx.shape == x.shape and dw.shape == w.shape
    np.testing.assert_allclose(inner(x, dx), inner(y, g), rtol=1e-10)
    np.testing.assert_allclose(inner(w, dw), inner(y, g), rtol=1e-10)
    np.testing.assert_allclose(grad.conv2d_bias(g), g.sum(axis=(0, 2, 3)), rtol=1e-12)
    # keyword forms of torch.nn.grad
    dx2 = grad.conv2d_input(input_shape=x.shape, weight=w, grad_output=g, stride=stride,
                            padding=padding, dilation=dilation, groups=groups)
    dw2 = grad.conv2d_weight(x=x, weight_shape=w.shape, grad_output=g, stride=stride,
                             padding=padding, dilation=dilation, groups=groups)
    np.testing.assert_array_equal(dx2, dx)
    np.testing.assert_array_equal(dw2, dw)


def test_conv_gradient_shapes_accept_lists_and_weight_gradient_of_a_1x1_conv():
    x, g = rand(2, 3, 4, 4), rand(2, 5, 4, 4)
    dw = grad.conv2d_weight(x, [5, 3, 1, 1], g)
    np.testing.assert_allclose(dw[:, :, 0, 0], np.einsum("nkhw,nchw->kc", g, x), rtol=1e-12)
    w = rand(5, 3, 1, 1)
    np.testing.assert_allclose(grad.conv2d_input([2, 3, 4, 4], w, g),
                               np.einsum("nkhw,kc->nchw", g, w[:, :, 0, 0]), rtol=1e-12)


# ============================================================================================
# Gradients: the deterministic keyword and set_deterministic


GRADIENTS = list(grad.__all__)


def test_every_gradient_takes_a_deterministic_keyword():
    for name in GRADIENTS:
        parameter = inspect.signature(getattr(grad, name)).parameters.get("deterministic")
        assert parameter is not None, name
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, name


@pytest.mark.parametrize("name", [
    "grad.conv2d_input", "grad.conv2d_weight", "grad.conv2d_bias", "grad.max_pool2d",
    "grad.avg_pool2d", "grad.adaptive_max_pool2d", "grad.roi_align", "grad.roi_pool",
    "grad.spatial_pyramid_pool2d[max]", "grad.max_unpool2d"])
def test_deterministic_backward_is_bitwise_reproducible(name, monkeypatch, contract_executor):
    case = case_named(name, np.float32)
    function = name.split(".")[1].split("[")[0]
    original = getattr(grad, function)
    monkeypatch.setattr(grad, function, functools.partial(original, deterministic=True))
    reference = case.run()
    for flag in (True, False, None):
        # the case calls grad.<function>(...): give that call the keyword
        monkeypatch.setattr(grad, function, functools.partial(original, deterministic=flag))
        for _ in range(2):
            if flag or contract_executor == "reference":   # the reference has no atomics
                np.testing.assert_array_equal(case.run(), reference)
            else:   # the default backward may sum with float atomics, in any order
                np.testing.assert_allclose(case.run(), reference, rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(grad, function, original)
    gpuconv.set_deterministic(True)
    assert gpuconv.is_deterministic() is True
    np.testing.assert_array_equal(case.run(), reference)
    gpuconv.set_deterministic(False)
    assert gpuconv.is_deterministic() is False


@pytest.mark.parametrize("flag", ["yes", 1, 0, None])
def test_set_deterministic_takes_a_bool(flag):
    with pytest.raises(TypeError, match="bool"):
        gpuconv.set_deterministic(flag)


def test_deterministic_keyword_takes_a_bool():
    x, g = rand(1, 2, 4, 4), rand(1, 2, 2, 2)
    with pytest.raises(TypeError, match="deterministic"):
        grad.max_pool2d(g, x, 2, deterministic="yes")
    with pytest.raises(TypeError, match="deterministic"):
        grad.conv2d_bias(g, deterministic=1)


# ============================================================================================
# Pooling: indices, NaN, layouts


def test_max_pool_indices_are_flat_h_times_w_plus_w_within_each_plane():
    # arange is increasing along rows and columns: every window's maximum is its bottom-right
    # input element, whose flat position is easy to state.
    N, C, H, W = 2, 3, 7, 9
    x = np.arange(N * C * H * W, dtype=np.float64).reshape(N, C, H, W)
    for kernel, stride, padding, dilation, ceil_mode in [
            (2, 2, 0, 1, False), (3, 2, 1, 1, True), ((2, 3), (1, 2), (1, 1), (2, 1), False)]:
        values, indices = gpuconv.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode, True)
        (R, S), (sh, sw), (ph, pw), (dh, dw) = (
            (v, v) if isinstance(v, int) else v for v in (kernel, stride, padding, dilation))
        P, Q = values.shape[2:]
        # the last tap inside the image along each axis
        h = np.array([max(r for r in range(p * sh - ph, p * sh - ph + (R - 1) * dh + 1, dh) if r < H)
                      for p in range(P)])
        w = np.array([max(c for c in range(q * sw - pw, q * sw - pw + (S - 1) * dw + 1, dw) if c < W)
                      for q in range(Q)])
        expected = h[:, None] * W + w[None, :]
        assert indices.dtype == np.int64
        np.testing.assert_array_equal(indices, np.broadcast_to(expected, indices.shape))
        np.testing.assert_array_equal(values, np.take_along_axis(
            x.reshape(N, C, -1), indices.reshape(N, C, -1), axis=2).reshape(values.shape))
        # NHWC: the same flat positions, laid out (N, P, Q, C)
        v2, i2 = gpuconv.max_pool2d(nhwc(x), kernel, stride, padding, dilation, ceil_mode, True,
                                    data_format="NHWC")
        np.testing.assert_array_equal(i2, nhwc(indices))
        np.testing.assert_array_equal(v2, nhwc(values))


def test_adaptive_max_pool_indices_are_flat_positions():
    x = np.arange(2 * 5 * 7, dtype=np.float64).reshape(1, 2, 5, 7)
    values, indices = gpuconv.adaptive_max_pool2d(x, (2, 3), return_indices=True)
    # windows [floor(i*H/P), ceil((i+1)*H/P)): rows [0,3) [2,5), columns [0,3) [2,5) [4,7)
    expected = np.array([[2 * 7 + 2, 2 * 7 + 4, 2 * 7 + 6], [4 * 7 + 2, 4 * 7 + 4, 4 * 7 + 6]])
    np.testing.assert_array_equal(indices[0, 0], expected)
    np.testing.assert_array_equal(indices[0, 1], expected)
    np.testing.assert_array_equal(values[0, 1], 35 + expected)


def test_max_pooling_propagates_nan():
    x = RNG.standard_normal((1, 2, 6, 6))
    x[0, 0, 1, 4] = np.nan
    v, i = gpuconv.max_pool2d(x, 2, return_indices=True)
    assert np.isnan(v[0, 0, 0, 2]) and i[0, 0, 0, 2] == 1 * 6 + 4
    assert np.isnan(v).sum() == 1
    v, i = gpuconv.max_pool2d(x, 3, stride=1, padding=1, return_indices=True)
    assert np.isnan(v[0, 0, 0:3, 3:6]).all() and np.isnan(v).sum() == 9
    assert (i[0, 0, 0:3, 3:6] == 10).all()
    v, i = gpuconv.adaptive_max_pool2d(x, 3, return_indices=True)
    assert np.isnan(v[0, 0, 0, 2]) and np.isnan(v).sum() == 1 and i[0, 0, 0, 2] == 10
    g = gpuconv.global_max_pool2d(x)
    assert np.isnan(g[0, 0, 0, 0]) and not np.isnan(g[0, 1, 0, 0])
    s = gpuconv.spatial_pyramid_pool2d(x, (1, 2), "max")
    assert np.isnan(s[0, [0, 2 + 1]]).all() and np.isnan(s).sum() == 2
    # gradients go to the NaN, as PyTorch routes them
    d = grad.max_pool2d(np.ones((1, 2, 3, 3)), x, 2)
    assert d[0, 0, 1, 4] == 1 and d[0, 0, 0:2, 4:6].sum() == 1
    # a NaN that no window reads (skipped by the dilation) changes nothing
    z = np.zeros((1, 1, 5, 5))
    z[0, 0, 1, 1] = np.nan
    np.testing.assert_array_equal(gpuconv.max_pool2d(z, 3, stride=1, dilation=2), [[[[0.0]]]])


def test_global_pools_reduce_whole_planes():
    x = rand(2, 3, 5, 4)
    np.testing.assert_allclose(gpuconv.global_avg_pool2d(x), x.mean(axis=(2, 3), keepdims=True), rtol=1e-12)
    np.testing.assert_array_equal(gpuconv.global_max_pool2d(x), x.max(axis=(2, 3), keepdims=True))
    np.testing.assert_allclose(gpuconv.global_avg_pool2d(nhwc(x), data_format="NHWC"),
                               nhwc(x.mean(axis=(2, 3), keepdims=True)), rtol=1e-12)
    assert gpuconv.global_max_pool2d(nhwc(x), data_format="NHWC").shape == (2, 1, 1, 3)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_spatial_pyramid_layout(mode):
    x = rand(2, 3, 9, 7)
    levels = (1, 3, 2)
    adaptive = gpuconv.adaptive_max_pool2d if mode == "max" else gpuconv.adaptive_avg_pool2d
    expected = np.concatenate([adaptive(x, l).reshape(2, 3 * l * l) for l in levels], axis=1)
    got = gpuconv.spatial_pyramid_pool2d(x, levels, mode)
    assert got.shape == (2, 3 * (1 + 9 + 4))
    # Not bitwise: a one-bin adaptive pooling is a global reduction (another summation order).
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    # default levels (1, 2, 4), default mode "max"
    if mode == "max":
        default = np.concatenate([adaptive(x, l).reshape(2, -1) for l in (1, 2, 4)], axis=1)
        np.testing.assert_array_equal(gpuconv.spatial_pyramid_pool2d(x), default)
    # NHWC: the NHWC adaptive pooling (N, l, l, C) reshaped to (N, C*l*l)
    nhwc_expected = np.concatenate([nhwc(adaptive(x, l)).reshape(2, -1) for l in levels], axis=1)
    np.testing.assert_allclose(gpuconv.spatial_pyramid_pool2d(nhwc(x), levels, mode, data_format="NHWC"),
                               nhwc_expected, rtol=1e-12, atol=0)


POOLS_NHWC = [
    ("max_pool2d", (3, 2, 1, 2, True, True)), ("avg_pool2d", (3, 2, 1, True, False, 5)),
    ("lp_pool2d", (3.0, 2, 1, True)), ("adaptive_avg_pool2d", ((3, 4),)),
    ("adaptive_max_pool2d", ((4, 3), True)), ("global_avg_pool2d", ()), ("global_max_pool2d", ()),
]


@pytest.mark.parametrize("name, args", POOLS_NHWC, ids=[p[0] for p in POOLS_NHWC])
def test_every_pooling_function_accepts_nhwc(name, args):
    x = np.abs(rand(2, 3, 7, 8)) + 0.1
    function = getattr(gpuconv, name)
    expected = function(x, *args)
    got = function(nhwc(x), *args, data_format="NHWC")
    expected, got = (expected, got) if isinstance(expected, tuple) else ((expected,), (got,))
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, nhwc(e), rtol=1e-12)
    # gradients: grad.F(grad_output, <F's arguments>) in the same layout
    g_out = rand(*expected[0].shape)
    expected_grad = getattr(grad, name)(g_out, x, *args)
    got_grad = getattr(grad, name)(nhwc(g_out), nhwc(x), *args, data_format="NHWC")
    np.testing.assert_allclose(got_grad, nhwc(expected_grad), rtol=1e-12, atol=1e-15)


def test_max_unpool_nhwc_takes_nhwc_indices():
    x = rand(2, 3, 6, 8)
    v, i = gpuconv.max_pool2d(x, 2, return_indices=True)
    expected = gpuconv.max_unpool2d(v, i, 2)
    got = gpuconv.max_unpool2d(nhwc(v), nhwc(i), 2, data_format="NHWC")
    np.testing.assert_array_equal(got, nhwc(expected))
    g = rand(*expected.shape)
    np.testing.assert_array_equal(grad.max_unpool2d(nhwc(g), nhwc(v), nhwc(i), 2, data_format="NHWC"),
                                  nhwc(grad.max_unpool2d(g, v, i, 2)))


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_spatial_pyramid_gradient_in_nhwc(mode):
    x, levels = rand(2, 3, 7, 6), (1, 2, 3)
    g_nhwc = rand(2, 3 * 14)
    # the same gradient in NCHW feature order: each level's block (l, l, C) -> (C, l, l)
    blocks, start = [], 0
    for l in levels:
        block = g_nhwc[:, start:start + 3 * l * l].reshape(2, l, l, 3)
        blocks.append(block.transpose(0, 3, 1, 2).reshape(2, -1))
        start += 3 * l * l
    expected = grad.spatial_pyramid_pool2d(np.concatenate(blocks, axis=1), x, levels, mode)
    got = grad.spatial_pyramid_pool2d(g_nhwc, nhwc(x), levels, mode, data_format="NHWC")
    np.testing.assert_allclose(got, nhwc(expected), rtol=1e-12, atol=1e-15)


# ============================================================================================
# Pooling: max_unpool2d


def test_max_unpool_puts_each_value_at_its_index():
    v, i = gpuconv.max_pool2d(rand(2, 3, 6, 8), 2, stride=2, return_indices=True)
    u = gpuconv.max_unpool2d(v, i, 2)
    assert u.shape == (2, 3, 6, 8)          # (P - 1) * stride + kernel_size - 2 * padding
    expected = np.zeros((2, 3, 6 * 8))
    np.put_along_axis(expected, i.reshape(2, 3, -1), v.reshape(2, 3, -1), axis=2)
    np.testing.assert_array_equal(u, expected.reshape(2, 3, 6, 8))
    v, i = gpuconv.max_pool2d(rand(2, 3, 7, 9), 2, stride=2, return_indices=True)
    # the original input size through output_size, as (H, W) or (N, C, H, W)
    u7 = gpuconv.max_unpool2d(v, i, 2, output_size=(7, 9))
    np.testing.assert_array_equal(u7, gpuconv.max_unpool2d(v, i, 2, output_size=(2, 3, 7, 9)))
    flat = np.zeros((2, 3, 7 * 9))
    np.put_along_axis(flat, i.reshape(2, 3, -1), v.reshape(2, 3, -1), axis=2)
    np.testing.assert_array_equal(u7, flat.reshape(2, 3, 7, 9))
    # the gradient with respect to x gathers grad_output at the indices
    g = rand(2, 3, 7, 9)
    np.testing.assert_array_equal(grad.max_unpool2d(g, v, i, 2, output_size=(7, 9)),
                                  np.take_along_axis(g.reshape(2, 3, -1), i.reshape(2, 3, -1),
                                                     axis=2).reshape(v.shape))


# ============================================================================================
# Pooling gradients: grad.F(grad_output, <F's own arguments>)


LINEAR_POOLS = [
    ("avg_pool2d", (3, 2, 1)), ("avg_pool2d", ((2, 3), (1, 2), (1, 1), True, False)),
    ("avg_pool2d", (3, 2, 1, True, True, 7)), ("adaptive_avg_pool2d", ((4, 3),)),
    ("adaptive_avg_pool2d", ((9, 11),)), ("global_avg_pool2d", ()),
    ("spatial_pyramid_pool2d", ((1, 2, 3), "avg")),
]


@pytest.mark.parametrize("name, args", LINEAR_POOLS)
def test_gradients_of_linear_poolings_are_their_adjoints(name, args):
    x = rand(2, 3, 7, 8)
    y = getattr(gpuconv, name)(x, *args)
    g = rand(*y.shape)
    dx = getattr(grad, name)(g, x, *args)
    assert dx.shape == x.shape
    np.testing.assert_allclose(inner(x, dx), inner(y, g), rtol=1e-10)


MAX_POOLS = [
    ("max_pool2d", (3, 2, 1), True), ("max_pool2d", ((2, 3), 1, (1, 0), (1, 2), True), True),
    ("adaptive_max_pool2d", ((4, 3),), True), ("adaptive_max_pool2d", (9,), True),
    ("global_max_pool2d", (), False), ("spatial_pyramid_pool2d", ((1, 2, 3), "max"), False),
]


@pytest.mark.parametrize("name, args, has_indices", MAX_POOLS)
def test_gradients_of_max_poolings_route_to_the_maxima(name, args, has_indices):
    # integer values: many ties, which must go where the forward's index says (first maximum)
    x = RNG.integers(-3, 4, (2, 3, 7, 8)).astype(np.float64)
    y = getattr(gpuconv, name)(x, *args)
    g = rand(*y.shape)
    dx = getattr(grad, name)(g, x, *args)
    np.testing.assert_allclose(inner(x, dx), inner(y, g), rtol=1e-10)
    if has_indices:
        values, indices = getattr(gpuconv, name)(x, *args, return_indices=True)
        expected = np.zeros((2, 3, 7 * 8))
        for n, c in itertools.product(range(2), range(3)):
            np.add.at(expected[n, c], indices[n, c].ravel(), g[n, c].ravel())
        np.testing.assert_allclose(dx, expected.reshape(x.shape), rtol=1e-12)
        # indices= skips the recomputation and gives the same gradient
        np.testing.assert_array_equal(getattr(grad, name)(g, x, *args, indices=indices), dx)


def test_global_max_gradient_accepts_indices():
    x = rand(2, 3, 4, 5)
    _, indices = gpuconv.adaptive_max_pool2d(x, 1, return_indices=True)
    g = rand(2, 3, 1, 1)
    np.testing.assert_array_equal(grad.global_max_pool2d(g, x, indices=indices),
                                  grad.global_max_pool2d(g, x))


@pytest.mark.parametrize("norm_type, args", [(2, (2,)), (3.0, ((2, 3), (1, 2), True)), (1.5, (3, 2))])
def test_lp_pool_gradient_matches_finite_differences(norm_type, args):
    x = np.abs(rand(1, 2, 5, 6)) + 0.5
    y = gpuconv.lp_pool2d(x, norm_type, *args)
    g = rand(*y.shape)
    dx = grad.lp_pool2d(g, x, norm_type, *args)
    direction = rand(*x.shape)
    eps = 1e-6
    numeric = (inner(gpuconv.lp_pool2d(x + eps * direction, norm_type, *args), g)
               - inner(gpuconv.lp_pool2d(x - eps * direction, norm_type, *args), g)) / (2 * eps)
    np.testing.assert_allclose(inner(dx, direction), numeric, rtol=1e-6)


def test_lp_pool_is_the_p_norm_of_each_window():
    x = rand(1, 2, 6, 6)
    for p in (1.0, 2.0, 3.0):
        y = gpuconv.lp_pool2d(np.abs(x), p, 2)
        windows = np.abs(x).reshape(1, 2, 3, 2, 3, 2)
        np.testing.assert_allclose(y, (windows ** p).sum(axis=(3, 5)) ** (1 / p), rtol=1e-12)


# ============================================================================================
# Regions of interest


def c_round(v):
    """C's round(): halves away from zero."""
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def roi_pool_loop(x, rois, output_size, spatial_scale):
    """torchvision's roi_pool (float64), from the definition: corners rounded half away from
    zero, size max(end - start + 1, 1), bins [floor(p*bin), ceil((p+1)*bin)) shifted and clipped,
    an empty bin gives 0, otherwise the max."""
    N, C, H, W = x.shape
    PH, PW = output_size
    out = np.zeros((len(rois), C, PH, PW))
    for k, (b, x1, y1, x2, y2) in enumerate(rois):
        sw, sh = (c_round(v * spatial_scale) for v in (x1, y1))
        ew, eh = (c_round(v * spatial_scale) for v in (x2, y2))
        rh, rw = max(eh - sh + 1, 1), max(ew - sw + 1, 1)
        for ph, pw in itertools.product(range(PH), range(PW)):
            h0 = min(max(math.floor(ph * rh / PH) + sh, 0), H)
            h1 = min(max(math.ceil((ph + 1) * rh / PH) + sh, 0), H)
            w0 = min(max(math.floor(pw * rw / PW) + sw, 0), W)
            w1 = min(max(math.ceil((pw + 1) * rw / PW) + sw, 0), W)
            if h1 > h0 and w1 > w0:
                out[k, :, ph, pw] = x[int(b), :, h0:h1, w0:w1].max(axis=(1, 2))
    return out


def test_roi_pool_matches_the_torchvision_definition():
    x = rand(2, 3, 9, 11)
    rois = np.array([[0, 0, 0, 10, 8], [1, 2.2, 1.7, 7.9, 6.4], [1, -3, -2, 4, 3], [0, 6, 5, 30, 30],
                     [1, 4, 4, 4, 4], [0, 8.6, 2.4, 3.3, 7.7]])
    for scale, size in [(1.0, (2, 3)), (0.5, 3), (2.0, (4, 1))]:
        np.testing.assert_array_equal(gpuconv.roi_pool(x, rois, size, scale),
                                      roi_pool_loop(x, rois, (size, size) if isinstance(size, int) else size, scale))


@pytest.mark.parametrize("aligned", [False, True])
def test_roi_align_of_a_linear_ramp_is_the_ramp_at_each_bin_centre(aligned):
    # Bilinear interpolation reproduces a linear function exactly, and a bin's samples are
    # symmetric about its centre: the output is the ramp at the bin centre (boxes inside the
    # image, so no sample is clamped).
    H, W = 9, 12
    a, b, c = 0.75, -1.25, 3.0
    hh, ww = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    x = np.broadcast_to(a * hh + b * ww + c, (2, 2, H, W)).copy()
    x[:, 1] *= 2
    # the last box is smaller than a feature pixel: without ``aligned`` it is widened to 1 pixel
    rois = np.array([[0, 2.0, 2.0, 18.0, 14.0], [1, 4.5, 3.0, 20.0, 15.5], [1, 2.0, 2.2, 9.0, 6.0],
                     [0, 6.0, 5.0, 6.5, 5.4]])
    scale, (PH, PW) = 0.5, (3, 4)
    offset = 0.5 if aligned else 0.0
    for sampling_ratio in (1, 2, -1, 0):
        y = gpuconv.roi_align(x, rois, (PH, PW), scale, sampling_ratio, aligned)
        assert y.shape == (4, 2, PH, PW)
        for k, (_, x1, y1, x2, y2) in enumerate(rois):
            sw, sh = x1 * scale - offset, y1 * scale - offset
            rw, rh = x2 * scale - offset - sw, y2 * scale - offset - sh
            if not aligned:
                rw, rh = max(rw, 1.0), max(rh, 1.0)
            centre_h = sh + (np.arange(PH) + 0.5) * rh / PH
            centre_w = sw + (np.arange(PW) + 0.5) * rw / PW
            expected = a * centre_h[:, None] + b * centre_w[None, :] + c
            np.testing.assert_allclose(y[k, 0], expected, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(y[k, 1], 2 * expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name, args", [("roi_align", ((2, 3), 0.5, 2, False)),
                                        ("roi_align", (3, 0.25, -1, True)),
                                        ("roi_pool", ((3, 2), 0.5))])
def test_roi_boxes_forms_and_gradients(name, args):
    x = rand(3, 2, 8, 9)
    rng = np.random.default_rng(3)
    per_image = [np.sort(rng.uniform(0, 30, (k, 2, 2)), axis=1).transpose(0, 2, 1).reshape(k, 4)[:, [0, 2, 1, 3]]
                 for k in (2, 0, 3)]
    # (K, 5) rows [batch_index, x1, y1, x2, y2] == a list of (K_i, 4) arrays, one per image
    rows = np.concatenate([np.concatenate([np.full((len(b), 1), i), b], axis=1)
                           for i, b in enumerate(per_image)])
    function, gradient = getattr(gpuconv, name), getattr(grad, name)
    y = function(x, rows, *args)
    assert y.shape[:2] == (5, 2)
    np.testing.assert_array_equal(function(x, per_image, *args), y)
    np.testing.assert_array_equal(function(x, tuple(per_image), *args), y)
    # the rows of the (K, 5) form are independent: shuffling them shuffles the output
    order = rng.permutation(5)
    np.testing.assert_array_equal(function(x, rows[order], *args), y[order])
    # the gradient: both box forms, and the adjoint of the (piecewise) linear map x -> F(x)
    g = rand(*y.shape)
    dx = gradient(g, x, rows, *args)
    np.testing.assert_array_equal(gradient(g, x, per_image, *args), dx)
    np.testing.assert_allclose(inner(x, dx), inner(y, g), rtol=1e-10)


@pytest.mark.parametrize("name", ["roi_align", "roi_pool"])
@pytest.mark.parametrize("boxes, match", [
    (np.array([[2, 0, 0, 3, 3]], float), "batch"),            # index N
    (np.array([[-1, 0, 0, 3, 3]], float), "batch"),
    (np.array([[0, 0, 0, 3, 3], [7, 0, 0, 3, 3]], float), "batch"),
    (np.array([[-0.5, 0, 0, 3, 3]], float), "batch"),         # below 0 (torchvision: int(-0.5) = 0)
    (np.zeros((2, 4)), "boxes"), (np.zeros((2, 6)), "boxes"), (np.zeros(5), "boxes"),
    (np.zeros((1, 2, 5)), "boxes"),
    ([np.zeros((1, 4)), np.zeros((1, 4)), np.zeros((1, 4))], "boxes"),   # 3 lists for 2 images
    ([np.zeros((1, 5))], "boxes"), ([np.zeros(4)], "boxes"), ([np.zeros((2, 3))], "boxes"),
])
def test_batch_index_outside_the_batch_or_a_wrong_box_shape_is_a_value_error(name, boxes, match):
    x = rand(2, 3, 6, 6)
    with pytest.raises(ValueError, match=match):
        getattr(gpuconv, name)(x, boxes, 2)
    with pytest.raises(ValueError, match=match):
        getattr(grad, name)(rand(1, 3, 2, 2), x, boxes, 2)


# ============================================================================================
# Utilities


def test_output_shape_flops_params_and_bytes_formulas():
    rng = np.random.default_rng(11)
    for _ in range(60):
        groups = int(rng.choice([1, 2, 4]))
        N, C, K = int(rng.integers(0, 3)), groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
        R, S = (int(v) for v in rng.integers(1, 5, 2))
        stride = tuple(int(v) for v in rng.integers(1, 4, 2))
        dilation = tuple(int(v) for v in rng.integers(1, 3, 2))
        padding = [int(rng.integers(0, 3)), "same", "valid", ((1, 0), (0, 2)),
                   tuple(int(v) for v in rng.integers(0, 3, 2))][int(rng.integers(0, 5))]
        H = int(rng.integers(dilation[0] * (R - 1) + 1, 12))
        W = int(rng.integers(dilation[1] * (S - 1) + 1, 12))
        xs, ws = (N, C, H, W), (K, C // groups, R, S)
        args = (stride, padding, dilation, groups)
        y = gpuconv.conv2d(np.zeros(xs, np.float32), np.zeros(ws, np.float32), None, *args)
        assert gpuconv.conv2d_output_shape(xs, ws, *args) == y.shape
        assert gpuconv.conv2d_output_shape((N, H, W, C), ws, *args, data_format="NHWC") == \
            (N, y.shape[2], y.shape[3], K)
        P, Q = y.shape[2:]
        flops = 2 * N * K * P * Q * (C // groups) * R * S
        assert gpuconv.conv2d_flops(xs, ws, *args) == flops
        assert gpuconv.conv2d_flops((N, H, W, C), ws, *args, data_format="NHWC") == flops
        assert gpuconv.conv2d_params(ws) == K * (C // groups) * R * S + K
        assert gpuconv.conv2d_params(ws, bias=False) == K * (C // groups) * R * S
        moved = N * C * H * W + K * (C // groups) * R * S + N * K * P * Q
        assert gpuconv.conv2d_bytes(xs, ws, *args) == 4 * moved
        assert gpuconv.conv2d_bytes(xs, ws, *args, itemsize=2, bias=True) == 2 * (moved + K)


def test_conv_transpose2d_output_shape_is_the_result_shape():
    rng = np.random.default_rng(12)
    for _ in range(40):
        groups = int(rng.choice([1, 2]))
        C, K = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
        R, S = (int(v) for v in rng.integers(1, 4, 2))
        stride = tuple(int(v) for v in rng.integers(1, 4, 2))
        dilation = tuple(int(v) for v in rng.integers(1, 3, 2))
        padding = tuple(int(v) for v in rng.integers(0, 2, 2))
        output_padding = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
        xs, ws = (int(rng.integers(0, 3)), C, int(rng.integers(2, 6)), int(rng.integers(2, 6))), (C, K // groups, R, S)
        args = (stride, padding, output_padding, groups, dilation)
        try:
            y = gpuconv.conv_transpose2d(np.zeros(xs), np.zeros(ws), None, *args)
        except ValueError:
            with pytest.raises(ValueError):
                gpuconv.conv_transpose2d_output_shape(xs, ws, *args)
            continue
        assert gpuconv.conv_transpose2d_output_shape(xs, ws, *args) == y.shape
        H = (xs[2] - 1) * stride[0] - 2 * padding[0] + dilation[0] * (R - 1) + output_padding[0] + 1
        W = (xs[3] - 1) * stride[1] - 2 * padding[1] + dilation[1] * (S - 1) + output_padding[1] + 1
        assert y.shape == (xs[0], K, H, W)


@pytest.mark.parametrize("call, match", [
    (lambda: gpuconv.conv2d_output_shape((1, 3, 5), (2, 3, 3, 3)), "input_shape"),
    (lambda: gpuconv.conv2d_output_shape((1, 3, 5, 5), (2, 4, 3, 3)), "weight_shape|input_shape"),
    (lambda: gpuconv.conv2d_output_shape((1, 3, 2, 2), (2, 3, 3, 3)), "input_shape"),
    (lambda: gpuconv.conv2d_output_shape((1, 3, 5, 5.0), (2, 3, 3, 3)), "input_shape"),
    (lambda: gpuconv.conv2d_output_shape((1, 3, 5, 5), (2, 3, 3, 3), stride=0), "stride"),
    (lambda: gpuconv.conv2d_output_shape(None, (2, 3, 3, 3)), "input_shape"),
    (lambda: gpuconv.conv2d_flops((1, 3, 5, 5), (2, 3, 3, 3), padding="full"), "padding"),
    (lambda: gpuconv.conv2d_flops((1, 3, 5, 5), (2, 3, 3, 3), groups=2), "groups"),
    (lambda: gpuconv.conv2d_flops((1, 3, 5, 5), (2, 3, 3, 3), data_format="CHWN"), "data_format"),
    (lambda: gpuconv.conv2d_params((2, 3, 3)), "weight_shape"),
    (lambda: gpuconv.conv2d_params((2, 3, 3, 3), bias="yes"), "bias"),
    (lambda: gpuconv.conv2d_bytes((1, 3, 5, 5), (2, 3, 3, 3), itemsize=0), "itemsize"),
    (lambda: gpuconv.conv2d_bytes((1, 3, 5, 5), (2, 3, 3, 3), itemsize=2.5), "itemsize"),
    (lambda: gpuconv.conv_transpose2d_output_shape((1, 3, 5, 5), (3, 2, 3, 3), output_padding=1), "output_padding"),
    (lambda: gpuconv.conv_transpose2d_output_shape((1, 3, 5, 5), (4, 2, 3, 3)), "weight_shape|input_shape"),
])
def test_invalid_utility_arguments_name_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
