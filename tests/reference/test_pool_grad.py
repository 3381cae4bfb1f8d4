"""Pooling gradients (gpuconv.grad.*, reference executor): central finite differences for every
function where it is differentiable, and PyTorch's routing where it is not (ties, NaN, relu's
mask in lp_pool2d's expression)."""
import numpy as np
import pytest

import gpuconv
from gpuconv import grad


def numerical_grad(forward, x, cotangent, eps=1e-6):
    """d/dx of sum(forward(x) * cotangent), one central difference per element."""
    x = np.array(x, dtype=np.float64)
    result = np.empty_like(x)
    for i in range(x.size):
        original = x.flat[i]
        x.flat[i] = original + eps
        up = np.sum(forward(x) * cotangent)
        x.flat[i] = original - eps
        down = np.sum(forward(x) * cotangent)
        x.flat[i] = original
        result.flat[i] = (up - down) / (2 * eps)
    return result


def check_gradient(forward, backward, x, rng, rtol=1e-5, atol=1e-6):
    cotangent = rng.standard_normal(forward(x).shape)
    analytic = backward(cotangent, x)
    assert analytic.shape == x.shape and analytic.dtype == x.dtype
    np.testing.assert_allclose(analytic, numerical_grad(forward, x, cotangent), rtol=rtol, atol=atol)


# --------------------------------------------------------------------------------------------
# finite differences

AVG_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), ceil_mode=True, count_include_pad=False),
    dict(kernel_size=2, stride=1, padding=1, divisor_override=3),
    dict(kernel_size=4, stride=3, padding=2, ceil_mode=True),
]


@pytest.mark.parametrize("kwargs", AVG_CASES)
def test_avg_pool_gradient(kwargs, rng):
    x = rng.standard_normal((1, 2, 5, 6))
    check_gradient(lambda a: gpuconv.avg_pool2d(a, **kwargs),
                   lambda g, a: grad.avg_pool2d(g, a, **kwargs), x, rng)


@pytest.mark.parametrize("norm_type", [1.0, 1.5, 2.0, 3.0])
@pytest.mark.parametrize("kwargs", [dict(kernel_size=2), dict(kernel_size=(3, 2), stride=(2, 1)),
                                    dict(kernel_size=2, ceil_mode=True)])
def test_lp_pool_gradient(norm_type, kwargs, rng):
    x = rng.uniform(0.5, 2.0, size=(1, 2, 5, 5))
    check_gradient(lambda a: gpuconv.lp_pool2d(a, norm_type, **kwargs),
                   lambda g, a: grad.lp_pool2d(g, a, norm_type, **kwargs), x, rng)


def test_lp_pool_gradient_of_signed_sum(rng):
    # p = 1 keeps negative sums (the expression is the signed window sum times kernel/divisor).
    x = rng.uniform(-2.0, -0.5, size=(1, 2, 4, 4))
    check_gradient(lambda a: gpuconv.lp_pool2d(a, 1, 2), lambda g, a: grad.lp_pool2d(g, a, 1, 2), x, rng)


@pytest.mark.parametrize("output_size", [(3, 3), (5, 4), (2, None), 1])
def test_adaptive_avg_gradient(output_size, rng):
    x = rng.standard_normal((1, 2, 5, 3))
    check_gradient(lambda a: gpuconv.adaptive_avg_pool2d(a, output_size),
                   lambda g, a: grad.adaptive_avg_pool2d(g, a, output_size), x, rng)


def test_global_gradients(rng):
    x = rng.standard_normal((2, 2, 3, 4))
    check_gradient(gpuconv.global_avg_pool2d, grad.global_avg_pool2d, x, rng)
    check_gradient(gpuconv.global_max_pool2d, grad.global_max_pool2d, x, rng)


MAX_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=1, padding=1),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0), dilation=(2, 1), ceil_mode=True),
]


@pytest.mark.parametrize("kwargs", MAX_CASES)
def test_max_pool_gradient_without_ties(kwargs, rng):
    x = rng.standard_normal((1, 2, 5, 6))    # distinct values: no ties, argmax stable under eps
    check_gradient(lambda a: gpuconv.max_pool2d(a, **kwargs),
                   lambda g, a: grad.max_pool2d(g, a, **kwargs), x, rng)


@pytest.mark.parametrize("output_size", [(3, 3), (4, 5), 2])
def test_adaptive_max_gradient_without_ties(output_size, rng):
    x = rng.standard_normal((1, 2, 5, 4))
    check_gradient(lambda a: gpuconv.adaptive_max_pool2d(a, output_size),
                   lambda g, a: grad.adaptive_max_pool2d(g, a, output_size), x, rng)


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_spatial_pyramid_gradient(mode, data_format, rng):
    x = rng.standard_normal((1, 5, 4, 2) if data_format == "NHWC" else (1, 2, 5, 4))
    kwargs = dict(levels=(1, 2, 3), mode=mode, data_format=data_format)
    check_gradient(lambda a: gpuconv.spatial_pyramid_pool2d(a, **kwargs),
                   lambda g, a: grad.spatial_pyramid_pool2d(g, a, **kwargs), x, rng)


def test_max_unpool_gradient(rng):
    pooled_from = rng.standard_normal((1, 2, 6, 4))
    _, indices = gpuconv.max_pool2d(pooled_from, 2, return_indices=True)
    x = rng.standard_normal(indices.shape)
    check_gradient(lambda a: gpuconv.max_unpool2d(a, indices, 2),
                   lambda g, a: grad.max_unpool2d(g, a, indices, 2), x, rng)


# --------------------------------------------------------------------------------------------
# where finite differences do not apply: PyTorch's routing


def test_max_ties_go_to_first_maximum_and_accumulate():
    x = np.ones((1, 1, 3, 3))
    g = grad.max_pool2d(np.ones((1, 1, 3, 3)), x, 3, 1, 1)
    # forward indices are [[0, 0, 1], [0, 0, 1], [3, 3, 4]]: overlapping windows add up there
    np.testing.assert_array_equal(g[0, 0], [[4, 2, 0], [2, 1, 0], [0, 0, 0]])
    adaptive = grad.adaptive_max_pool2d(np.ones((1, 1, 2, 2)), x, 2)
    np.testing.assert_array_equal(adaptive[0, 0], [[1, 1, 0], [1, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(grad.global_max_pool2d(np.full((1, 1, 1, 1), 7.0), x)[0, 0],
                                  [[7, 0, 0], [0, 0, 0], [0, 0, 0]])


def test_max_gradient_goes_to_the_nan():
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    x[0, 0, 0, 0] = x[0, 0, 1, 0] = np.nan       # torch reports (and routes to) the last NaN
    g = grad.max_pool2d(np.ones((1, 1, 2, 2)), x, 2)
    assert g[0, 0, 1, 0] == 1 and g[0, 0, 0, 0] == 0
    assert g.sum() == 4


def test_max_gradient_with_given_indices_matches_recomputation(rng):
    x = rng.integers(0, 3, size=(2, 3, 6, 5)).astype(np.float64)
    out, indices = gpuconv.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True)
    g = rng.standard_normal(out.shape)
    np.testing.assert_array_equal(grad.max_pool2d(g, x, 3, 2, 1, ceil_mode=True, indices=indices),
                                  grad.max_pool2d(g, x, 3, 2, 1, ceil_mode=True))
    # given indices are used as they are, not recomputed: here each window's top-left element
    # (an index outside its own window is a ValueError, see test_contract_audit3.py)
    P, Q = out.shape[2:]
    rows, cols = np.maximum(np.arange(P) * 2 - 1, 0), np.maximum(np.arange(Q) * 2 - 1, 0)
    top_left = np.broadcast_to(rows[:, None] * 5 + cols[None, :], indices.shape).astype(np.int64)
    expected = np.zeros_like(x)
    for p in range(P):
        for q in range(Q):
            expected[:, :, rows[p], cols[q]] += g[:, :, p, q]
    routed = grad.max_pool2d(g, x, 3, 2, 1, ceil_mode=True, indices=top_left)
    np.testing.assert_allclose(routed, expected, rtol=1e-12, atol=1e-12)


def test_max_gradient_of_padding_only_window_goes_nowhere():
    x = np.ones((1, 1, 2, 2))
    out, indices = gpuconv.max_pool2d(x, 2, 1, 1, 3, return_indices=True)
    assert indices[0, 0, 0, 0] == -1
    np.testing.assert_array_equal(grad.max_pool2d(np.ones_like(out), x, 2, 1, 1, 3, indices=indices), 0)


def test_lp_pool_zero_window_gets_zero_gradient_like_torch():
    # f = 0: torch's relu backward masks the (inf * 0 = NaN) term coming from pow(1/p)'s derivative
    x = np.zeros((1, 1, 2, 4))
    x[0, 0, :, 2:] = 1.0
    for p in (1.0, 2.0, 3.0):
        g = grad.lp_pool2d(np.ones((1, 1, 1, 2)), x, p, 2)
        np.testing.assert_array_equal(g[0, 0, :, :2], 0)
        assert np.all(np.isfinite(g))


def test_unpool_gradient_gathers_for_repeated_indices():
    x = np.array([[[[1.0, 2.0]]]])
    indices = np.array([[[[1, 1]]]])
    g = np.array([[[[10.0, 20.0, 30.0]]]])
    np.testing.assert_array_equal(grad.max_unpool2d(g, x, indices, (1, 2), output_size=(1, 3)),
                                  [[[[20.0, 20.0]]]])


def test_avg_gradient_worked_example():
    # kernel 2, stride 1 on 3x3: the centre belongs to four windows, a corner to one.
    g = grad.avg_pool2d(np.ones((1, 1, 2, 2)), np.zeros((1, 1, 3, 3)), 2, 1)
    np.testing.assert_array_equal(g[0, 0], [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])


def test_avg_gradient_infinity_stays_in_its_window():
    # Padding taps alias clipped input positions in the reference's tables; an infinite gradient
    # must reach only the window's real inputs (as torch), never turn into inf * 0 = NaN elsewhere.
    g = np.ones((1, 1, 3, 3))
    g[0, 0, 0, 0] = np.inf
    result = grad.avg_pool2d(g, np.zeros((1, 1, 3, 3)), 3, 1, 1)
    assert not np.isnan(result).any()
    np.testing.assert_array_equal(np.isinf(result[0, 0]), [[1, 1, 0], [1, 1, 0], [0, 0, 0]])


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_gradient_dtype_follows_input(dtype, rng):
    x = rng.standard_normal((1, 2, 4, 4)).astype(dtype)
    g = np.ones((1, 2, 2, 2), dtype=dtype)
    for result in (grad.max_pool2d(g, x, 2), grad.avg_pool2d(g, x, 2), grad.lp_pool2d(g, np.abs(x), 2, 2),
                   grad.adaptive_avg_pool2d(g, x, 2), grad.adaptive_max_pool2d(g, x, 2)):
        assert result.dtype == dtype and result.shape == x.shape
