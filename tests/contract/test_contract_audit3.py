"""Regressions of the third contract audit: gradients of the pooling, ROI and convolution
functions against torch autograd, layouts (NHWC, non-contiguous, negative strides, N == 0),
dtypes, determinism, the utilities, gpuconv.torch / gpuconv.jax; one precise test per finding.

Like every contract test, each runs on the NumPy reference and on the kernels executed by the
CPU simulator (tests/contract/conftest.py). Expected values come from torch, never from gpuconv.
"""
import numpy as np
import pytest

import gpuconv
from gpuconv import grad

torch = pytest.importorskip("torch")
F = torch.nn.functional


def random(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def nhwc(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


# ------------------------------------------------------------------------------------------
# 1. ``indices=`` of the max-pooling gradients (api.md: "may be passed to skip the
#    recomputation") routes each output's gradient to the element its index names, as torch's
#    backward does with the indices it is given -- also when that element is not the window's
#    maximum. An index outside its own output's window cannot come from the forward: the kernels
#    (a gather, like torch's CUDA backward) ignored it while the reference (a scatter, like
#    torch's CPU backward) routed the gradient there. It is now a ValueError naming indices.

X = random(2, 3, 6, 7)
MAX_ARGS = dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), dilation=(1, 2), ceil_mode=True)


def in_window_indices(seed):
    """For every max_pool2d(X, **MAX_ARGS) output, a tap of its window drawn at random (mostly
    not the maximum; the forward's index where the drawn tap is padding):
    (indices, grad_output, torch's gradient for these indices)."""
    rng = np.random.default_rng(seed)
    values, forward = F.max_pool2d(torch.tensor(X), return_indices=True, **MAX_ARGS)
    n, c, p, q = values.shape
    h = (np.arange(p)[:, None] * 2 - 1) + rng.integers(0, 3, (n, c, p, q))       # stride 2, pad 1
    w = (np.arange(q)[None, :] * 1 - 1) + 2 * rng.integers(0, 2, (n, c, p, q))   # dilation 2
    inside = (h >= 0) & (h < 6) & (w >= 0) & (w < 7)
    indices = np.where(inside, h * 7 + w, forward.numpy()).astype(np.int64)
    g = rng.standard_normal(values.shape)
    expected = torch.ops.aten.max_pool2d_with_indices_backward(
        torch.tensor(g), torch.tensor(X), [3, 2], [2, 1], [1, 1], [1, 2], True,
        torch.tensor(indices)).numpy()
    return indices, g, expected


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_max_pool2d_gradient_follows_given_in_window_indices_as_torch(data_format):
    indices, g, expected = in_window_indices(seed=1)
    if data_format == "NHWC":
        got = grad.max_pool2d(nhwc(g), nhwc(X), **MAX_ARGS, indices=nhwc(indices),
                              data_format="NHWC")
        expected = nhwc(expected)
    else:
        got = grad.max_pool2d(g, X, **MAX_ARGS, indices=indices)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_adaptive_max_pool2d_gradient_follows_given_in_window_indices_as_torch():
    rng = np.random.default_rng(2)
    # (6, 7) -> (4, 3): row bins [0,2) [1,3) [3,5) [4,6), column bins [0,3) [2,5) [4,7)
    rows = np.array([0, 1, 3, 4])[:, None] + rng.integers(0, 2, (2, 3, 4, 3))
    cols = np.array([0, 2, 4])[None, :] + rng.integers(0, 3, (2, 3, 4, 3))
    indices = (rows * 7 + cols).astype(np.int64)
    g = rng.standard_normal((2, 3, 4, 3))
    expected = torch.ops.aten.adaptive_max_pool2d_backward(
        torch.tensor(g), torch.tensor(X), torch.tensor(indices)).numpy()
    np.testing.assert_allclose(grad.adaptive_max_pool2d(g, X, (4, 3), indices=indices), expected,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_max_pool2d_indices_outside_their_window_are_a_value_error(data_format):
    indices, g, _ = in_window_indices(seed=3)
    indices[1, 2, 0, 0] = 6 * 7 - 1      # the last element: far from output (0, 0)'s window
    if data_format == "NHWC":
        g, x, indices = nhwc(g), nhwc(X), nhwc(indices)
    else:
        x = X
    with pytest.raises(ValueError, match="indices"):
        grad.max_pool2d(g, x, **MAX_ARGS, indices=indices, data_format=data_format)


def test_adaptive_max_pool2d_indices_outside_their_window_are_a_value_error():
    _, indices = F.adaptive_max_pool2d(torch.tensor(X), (4, 3), return_indices=True)
    indices = indices.numpy().copy()
    indices[0, 0, 0, 0] = 5 * 7 + 6      # bottom-right element: outside bin (0, 0)
    with pytest.raises(ValueError, match="indices"):
        grad.adaptive_max_pool2d(random(2, 3, 4, 3), X, (4, 3), indices=indices)


def test_max_pool2d_forward_indices_are_accepted_and_match_torch():
    xt = torch.tensor(X, requires_grad=True)
    values, indices = F.max_pool2d(xt, return_indices=True, **MAX_ARGS)
    g = random(*values.shape, seed=4)
    values.backward(torch.tensor(g))
    np.testing.assert_allclose(grad.max_pool2d(g, X, **MAX_ARGS, indices=indices.numpy()),
                               xt.grad.numpy(), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------
# 2. gpuconv.precompile: a scalar or a mapping where a list is expected, or None inside the
#    dtypes list (np.dtype(None) is float64), is a TypeError/ValueError naming the argument
#    (an int gave Python's "'int' object is not iterable"; [None] built the float64 kernels).


@pytest.mark.parametrize("kwargs, name", [
    (dict(families=3), "families"),
    (dict(families={"conv/direct.cu": 1}), "families"),
    (dict(dtypes=3), "dtypes"),
    (dict(dtypes={"float32": 1}), "dtypes"),
    (dict(dtypes=[None]), "dtypes"),
])
def test_precompile_argument_errors_name_the_argument(kwargs, name):
    with pytest.raises((TypeError, ValueError), match=name):
        gpuconv.precompile(**kwargs, executor="simulator")


# ------------------------------------------------------------------------------------------
# 3. gpuconv.explain takes conv2d's arguments and refuses what conv2d refuses (api.md: every
#    invalid argument is a ValueError/TypeError naming it), with shapes as with arrays.

@pytest.mark.parametrize("dtype", ["int32", complex, "no-such-dtype"])
def test_explain_refuses_a_dtype_conv2d_refuses(dtype):
    with pytest.raises(TypeError, match="dtype"):
        gpuconv.explain((1, 4, 8, 8), (8, 4, 3, 3), dtype=dtype)
    with pytest.raises(TypeError, match="dtype"):
        gpuconv.explain(np.zeros((1, 4, 8, 8), np.float32), np.zeros((8, 4, 3, 3), np.float32),
                        dtype=dtype)


@pytest.mark.parametrize("kwargs, error, name", [
    (dict(activation="gelu"), ValueError, "activation"),
    (dict(bias=np.zeros(3, np.float32)), ValueError, "bias"),
    (dict(residual=np.zeros((1, 8, 3, 3), np.float32)), ValueError, "residual"),
    (dict(bias=[0.0] * 8), TypeError, "bias"),
])
@pytest.mark.parametrize("as_shapes", [True, False], ids=["shapes", "arrays"])
def test_explain_refuses_what_conv2d_refuses(kwargs, error, name, as_shapes):
    x = np.zeros((1, 4, 8, 8), np.float32)
    w = np.zeros((8, 4, 3, 3), np.float32)
    with pytest.raises(error, match=name):
        gpuconv.conv2d(x, w, **kwargs)
    with pytest.raises(error, match=name):
        gpuconv.explain(*((x.shape, w.shape) if as_shapes else (x, w)), **kwargs)
