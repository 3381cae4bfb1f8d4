"""The reference gradients of conv2d and the reference transposed convolution, against central
finite differences, the adjoint identities and a scatter loop written from PyTorch's definition."""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuconv
from gpuconv import grad


@pytest.fixture(autouse=True, scope="module")
def _reference_executor():
    # These tests check the oracle itself: keep a GPUCONV_SIMULATE=1 environment out of them.
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("GPUCONV_SIMULATE", raising=False)
        yield


def normal(rng, *shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def finite_difference_gradient(loss, a, eps=1e-6):
    """d loss / d a by central differences, one element of ``a`` at a time (a is modified in
    place and restored)."""
    gradient = np.zeros_like(a)
    for index in np.ndindex(a.shape):
        original = a[index]
        a[index] = original + eps
        above = loss()
        a[index] = original - eps
        below = loss()
        a[index] = original
        gradient[index] = (above - below) / (2 * eps)
    return gradient


# ---------------------------------------------------------------------------------------------
# conv2d gradients


GRAD_CASES = [  # x shape (in data_format), weight shape, kwargs
    ((2, 3, 5, 6), (4, 3, 3, 3), dict(stride=2, padding=1)),
    ((1, 2, 7, 6), (2, 2, 3, 2), dict(dilation=2, padding=((2, 0), (1, 3)))),
    ((2, 4, 5, 5), (6, 2, 3, 3), dict(groups=2, padding=1)),
    ((1, 2, 9, 8), (3, 2, 2, 2), dict(stride=3)),  # strides past the kernel: skipped pixels
    ((1, 2, 6, 7), (2, 2, 4, 3), dict(stride=2, padding="same")),  # asymmetric "same" pads
    ((2, 5, 4, 3), (2, 3, 3, 2), dict(padding=1, data_format="NHWC")),
]


@pytest.mark.parametrize("x_shape, w_shape, kwargs", GRAD_CASES)
def test_gradients_match_finite_differences(rng, x_shape, w_shape, kwargs):
    x, w = normal(rng, *x_shape), normal(rng, *w_shape)
    b = normal(rng, w_shape[0])
    y_shape = gpuconv.conv2d(x, w, b, **kwargs).shape
    weights_of_outputs = normal(rng, *y_shape)

    def loss():  # a non-linear scalar function of the convolution
        return float(np.sum(weights_of_outputs * np.tanh(gpuconv.conv2d(x, w, b, **kwargs))))

    grad_output = weights_of_outputs * (1 - np.tanh(gpuconv.conv2d(x, w, b, **kwargs)) ** 2)
    np.testing.assert_allclose(grad.conv2d_input(x.shape, w, grad_output, **kwargs),
                               finite_difference_gradient(loss, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grad.conv2d_weight(x, w.shape, grad_output, **kwargs),
                               finite_difference_gradient(loss, w), rtol=1e-6, atol=1e-8)
    bias_kwargs = {"data_format": kwargs["data_format"]} if "data_format" in kwargs else {}
    np.testing.assert_allclose(grad.conv2d_bias(grad_output, **bias_kwargs),
                               finite_difference_gradient(loss, b), rtol=1e-6, atol=1e-8)


@st.composite
def conv_problems(draw):
    """A random small valid convolution: (x shape, weight shape, conv2d kwargs)."""
    groups = draw(st.integers(1, 3))
    cg, kg = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    R, S = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    pads = tuple(tuple(draw(st.integers(0, 2)) for _ in range(2)) for _ in range(2))
    H = draw(st.integers(max(1, dilation[0] * (R - 1) + 1 - sum(pads[0])), 8))
    W = draw(st.integers(max(1, dilation[1] * (S - 1) + 1 - sum(pads[1])), 8))
    x_shape = (draw(st.integers(1, 2)), cg * groups, H, W)
    kwargs = dict(stride=stride, padding=pads, dilation=dilation, groups=groups)
    return x_shape, (kg * groups, cg, R, S), kwargs


@given(problem=conv_problems(), seed=st.integers(0, 2 ** 32 - 1))
@settings(max_examples=30, deadline=None)
def test_adjoint_identities(problem, seed):
    x_shape, w_shape, kwargs = problem
    rng = np.random.default_rng(seed)
    x, w = normal(rng, *x_shape), normal(rng, *w_shape)
    y = gpuconv.conv2d(x, w, **kwargs)
    g = normal(rng, *y.shape)
    # <conv(x, w), g> = <x, conv2d_input(g)> = <w, conv2d_weight(x, g)>
    inner = np.vdot(y, g)
    np.testing.assert_allclose(np.vdot(x, grad.conv2d_input(x.shape, w, g, **kwargs)), inner, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.vdot(w, grad.conv2d_weight(x, w.shape, g, **kwargs)), inner, rtol=1e-10, atol=1e-10)


def test_bias_gradient_sums_all_but_channels(rng):
    g = normal(rng, 3, 4, 5, 2)
    np.testing.assert_allclose(grad.conv2d_bias(g), g.sum(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(grad.conv2d_bias(g, data_format="NHWC"), g.sum(axis=(0, 1, 2)), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_gradient_dtypes_follow_the_inputs(rng, dtype):
    x, w = normal(rng, 2, 3, 5, 5, dtype=dtype), normal(rng, 4, 3, 3, 3, dtype=dtype)
    g = normal(rng, 2, 4, 5, 5, dtype=dtype)
    dx = grad.conv2d_input(x.shape, w, g, padding=1)
    dw = grad.conv2d_weight(x, w.shape, g, padding=1)
    db = grad.conv2d_bias(g)
    assert dx.dtype == dw.dtype == db.dtype == dtype
    x64, w64, g64 = (a.astype(np.float64) for a in (x, w, g))
    tolerance = 2e-3 if dtype == np.float16 else 1e-5
    np.testing.assert_allclose(dx, grad.conv2d_input(x.shape, w64, g64, padding=1), rtol=tolerance, atol=tolerance)
    # Weight gradients sum N*P*Q = 50 products and reach ~10: their float16 rounding is ~5e-3.
    np.testing.assert_allclose(dw, grad.conv2d_weight(x64, w.shape, g64, padding=1),
                               rtol=tolerance, atol=tolerance * 10)


def test_gradients_accept_negatively_strided_arrays(rng):
    x, w, g = normal(rng, 2, 3, 6, 6), normal(rng, 4, 3, 3, 3), normal(rng, 2, 4, 6, 6)
    x_rev, w_rev, g_rev = (np.ascontiguousarray(a[:, :, ::-1])[:, :, ::-1] for a in (x, w, g))
    np.testing.assert_array_equal(grad.conv2d_input(x.shape, w_rev, g_rev, padding=1),
                                  grad.conv2d_input(x.shape, w, g, padding=1))
    np.testing.assert_array_equal(grad.conv2d_weight(x_rev, w.shape, g_rev, padding=1),
                                  grad.conv2d_weight(x, w.shape, g, padding=1))


def test_empty_batch_gradients():
    w = np.ones((4, 3, 3, 3), np.float32)
    g = np.ones((0, 4, 5, 5), np.float32)
    dx = grad.conv2d_input((0, 3, 5, 5), w, g, padding=1)
    assert dx.shape == (0, 3, 5, 5) and dx.dtype == np.float32
    dw = grad.conv2d_weight(np.ones((0, 3, 5, 5), np.float32), w.shape, g, padding=1)
    np.testing.assert_array_equal(dw, np.zeros((4, 3, 3, 3), np.float32))
    np.testing.assert_array_equal(grad.conv2d_bias(g), np.zeros(4, np.float32))


@pytest.mark.parametrize("deterministic", [None, True, False])
def test_deterministic_flag_is_accepted_and_reproducible(rng, deterministic):
    x, w, g = normal(rng, 1, 2, 5, 5), normal(rng, 3, 2, 3, 3), normal(rng, 1, 3, 3, 3)
    first = grad.conv2d_weight(x, w.shape, g, deterministic=deterministic)
    second = grad.conv2d_weight(x, w.shape, g, deterministic=deterministic)
    np.testing.assert_array_equal(first, second)


# ---------------------------------------------------------------------------------------------
# transposed convolution


def conv_transpose2d_loops(x, w, b, stride, padding, output_padding, groups, dilation):
    """PyTorch's definition: input pixel (i, j) of channel c adds x * w[c, k, r, s] to output
    pixel (i*s - p + r*d, j*s - p + s*d) of channel g*K/groups + k, where g is c's group."""
    N, C, H, W = x.shape
    _, Kg, R, S = w.shape
    (sh, sw), (ph, pw), (oh, ow), (dh, dw) = stride, padding, output_padding, dilation
    H_out = (H - 1) * sh - 2 * ph + dh * (R - 1) + oh + 1
    W_out = (W - 1) * sw - 2 * pw + dw * (S - 1) + ow + 1
    out = np.zeros((N, Kg * groups, H_out, W_out))
    Cg = C // groups
    for n, c, i, j, k, r, s in itertools.product(range(N), range(C), range(H), range(W),
                                                 range(Kg), range(R), range(S)):
        h, v = i * sh - ph + r * dh, j * sw - pw + s * dw
        if 0 <= h < H_out and 0 <= v < W_out:
            out[n, (c // Cg) * Kg + k, h, v] += x[n, c, i, j] * w[c, k, r, s]
    if b is not None:
        out += b[None, :, None, None]
    return out


TRANSPOSE_CASES = [  # x shape, weight shape, stride, padding, output_padding, groups, dilation
    ((2, 3, 4, 3), (3, 2, 3, 3), (1, 1), (0, 0), (0, 0), 1, (1, 1)),
    ((1, 2, 3, 4), (2, 3, 3, 3), (2, 2), (1, 1), (1, 1), 1, (1, 1)),
    ((1, 4, 3, 3), (4, 2, 2, 3), (3, 2), (1, 0), (2, 1), 2, (1, 2)),
    ((1, 2, 4, 3), (2, 1, 3, 2), (1, 1), (0, 1), (1, 2), 1, (2, 3)),  # output_padding >= stride, < dilation
    ((2, 3, 3, 3), (3, 1, 3, 3), (2, 2), (2, 2), (0, 1), 3, (1, 1)),  # depthwise, large padding
]


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, output_padding, groups, dilation", TRANSPOSE_CASES)
def test_transpose_matches_loops(rng, x_shape, w_shape, stride, padding, output_padding, groups, dilation):
    x, w = normal(rng, *x_shape), normal(rng, *w_shape)
    b = normal(rng, w_shape[1] * groups)
    y = gpuconv.conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation)
    expected = conv_transpose2d_loops(x, w, b, stride, padding, output_padding, groups, dilation)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


# With output_padding >= stride, a forward conv of the transposed conv's output size would have
# more rows than the transposed conv's input: no conv2d_input call has that geometry.
@pytest.mark.parametrize("x_shape, w_shape, stride, padding, output_padding, groups, dilation",
                         [case for case in TRANSPOSE_CASES if all(o < s for o, s in zip(case[4], case[2]))])
def test_transpose_is_conv2d_input_of_the_same_geometry(rng, x_shape, w_shape, stride, padding,
                                                         output_padding, groups, dilation):
    x, w = normal(rng, *x_shape), normal(rng, *w_shape)
    y = gpuconv.conv_transpose2d(x, w, None, stride, padding, output_padding, groups, dilation)
    dx = grad.conv2d_input(y.shape, w, x, stride, padding, dilation, groups)
    np.testing.assert_array_equal(y, dx)


@pytest.mark.parametrize("case", [TRANSPOSE_CASES[1], TRANSPOSE_CASES[2], TRANSPOSE_CASES[3]])
def test_transpose_gradients_match_finite_differences(rng, case):
    x_shape, w_shape, *args = case
    x, w = normal(rng, *x_shape), normal(rng, *w_shape)
    b = normal(rng, w_shape[1] * args[3])
    y = gpuconv.conv_transpose2d(x, w, b, *args)
    g = normal(rng, *y.shape)

    def loss():
        return float(np.vdot(g, gpuconv.conv_transpose2d(x, w, b, *args)))

    # The transposed conv is the adjoint of the forward conv with the same arguments, so its
    # input gradient is that forward conv of g, and its weight gradient the forward conv's weight
    # gradient with the roles of x and g swapped. When output_padding >= stride the forward conv
    # of g has extra rows/columns, which meet no input pixel: crop them (and zero-extend x).
    stride, padding, output_padding, groups, dilation = args
    forward = gpuconv.conv2d(g, w, None, stride, padding, dilation, groups)
    H, W = x.shape[2:]
    np.testing.assert_allclose(forward[:, :, :H, :W], finite_difference_gradient(loss, x), rtol=1e-6, atol=1e-8)
    x_extended = np.zeros(forward.shape)
    x_extended[:, :, :H, :W] = x
    np.testing.assert_allclose(grad.conv2d_weight(g, w.shape, x_extended, stride, padding, dilation, groups),
                               finite_difference_gradient(loss, w), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(g.sum(axis=(0, 2, 3)), finite_difference_gradient(loss, b), rtol=1e-6)


@given(seed=st.integers(0, 2 ** 32 - 1), data=st.data())
@settings(max_examples=25, deadline=None)
def test_random_transposes_match_loops(seed, data):
    groups = data.draw(st.integers(1, 2))
    cg, kg = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    R, S = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    stride = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    dilation = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    output_padding = tuple(data.draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    padding = (data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2)))
    H, W = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    sizes = [(n - 1) * s - 2 * p + d * (k - 1) + o + 1
             for n, s, p, d, k, o in zip((H, W), stride, padding, dilation, (R, S), output_padding)]
    if min(sizes) < 1:
        with pytest.raises(ValueError, match="padding"):
            gpuconv.conv_transpose2d(np.zeros((1, cg * groups, H, W)), np.zeros((cg * groups, kg, R, S)),
                                     None, stride, padding, output_padding, groups, dilation)
        return
    rng = np.random.default_rng(seed)
    x, w = normal(rng, 2, cg * groups, H, W), normal(rng, cg * groups, kg, R, S)
    y = gpuconv.conv_transpose2d(x, w, None, stride, padding, output_padding, groups, dilation)
    expected = conv_transpose2d_loops(x, w, None, stride, padding, output_padding, groups, dilation)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_output_size_selects_the_output_padding(rng):
    x, w = normal(rng, 1, 2, 3, 4), normal(rng, 2, 3, 3, 3)
    # stride 3: the output can be 7..9 rows and 10..12 columns.
    for size in [(7, 10), (8, 12), (9, 11), (1, 3, 9, 10)]:
        y = gpuconv.conv_transpose2d(x, w, stride=3, padding=1, output_size=size)
        expected = conv_transpose2d_loops(x, w, None, (3, 3), (1, 1), (size[-2] - 7, size[-1] - 10), 1, (1, 1))
        np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_transpose_dtype_and_empty_batch(rng):
    x, w = normal(rng, 1, 2, 3, 3, dtype=np.float16), normal(rng, 2, 3, 3, 3, dtype=np.float16)
    y = gpuconv.conv_transpose2d(x, w, stride=2)
    assert y.dtype == np.float16
    np.testing.assert_allclose(y, conv_transpose2d_loops(x.astype(np.float64), w.astype(np.float64), None,
                                                         (2, 2), (0, 0), (0, 0), 1, (1, 1)), rtol=2e-3, atol=2e-3)
    empty = gpuconv.conv_transpose2d(np.zeros((0, 2, 3, 3), np.float32), np.zeros((2, 3, 3, 3), np.float32),
                                     stride=2, output_padding=1)
    assert empty.shape == (0, 3, 8, 8) and empty.dtype == np.float32
