"""Fourth contract audit: cross-checks against torch of combinations the earlier contract tests
leave out, found to agree by a random fuzzer of every api.md function (reference and simulator):

- gradients of conv2d with ((top, bottom), (left, right)) padding and with "same" padding at any
  stride (TensorFlow's padding), against torch autograd through an explicit F.pad;
- NHWC pooling gradients (only NHWC forwards were checked against torch before);
- float16 and bfloat16 pooling and convolution against torch in the same dtype (output dtype =
  input dtype; indices identical);
- max_unpool2d with repeated indices (stride < kernel): the last writer in row-major order wins,
  as torch's CPU loop does when it runs on one thread.

Like every contract test, each runs on the NumPy reference and on the kernels executed by the CPU
simulator (tests/contract/conftest.py). Expected values come from torch, never from gpuconv.
"""
import numpy as np
import pytest

import gpuconv
from gpuconv import grad

torch = pytest.importorskip("torch")
F = torch.nn.functional


def random(rng, *shape):
    return rng.standard_normal(shape)


def nhwc(a):
    return np.ascontiguousarray(np.asarray(a).transpose(0, 2, 3, 1))


def torch_grads(function, grad_output, *inputs):
    """(output, d<output, grad_output>/d each input) of a torch function, in NumPy."""
    tensors = [torch.tensor(a, requires_grad=True) for a in inputs]
    out = function(*tensors)
    out.backward(torch.tensor(grad_output))
    return (out.detach().numpy(),) + tuple(t.grad.numpy() for t in tensors)


def close(got, expected, what, tol=1e-9):
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol, err_msg=what)


# ------------------------------------------------------------------------------------------
# 1. conv2d gradients with explicit asymmetric padding and with "same" padding at any stride.

def tensorflow_same_pads(size, stride, dilation, kernel):
    total = max((-(-size // stride) - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, groups", [
    ((2, 4, 7, 6), (6, 2, 3, 2), (2, 1), ((2, 0), (1, 3)), (1, 2), 2),
    ((1, 3, 5, 8), (2, 3, 2, 3), (1, 3), ((0, 3), (2, 1)), (2, 1), 1),
    ((2, 2, 9, 7), (4, 2, 4, 3), (3, 2), "same", (1, 2), 1),
    ((1, 4, 6, 5), (4, 1, 2, 2), (2, 2), "same", (2, 1), 4),
])
def test_conv2d_gradients_with_asymmetric_or_same_padding_match_torch(
        x_shape, w_shape, stride, padding, dilation, groups):
    rng = np.random.default_rng(1)
    x, w = random(rng, *x_shape), random(rng, *w_shape)
    if padding == "same":
        (top, bottom), (left, right) = (tensorflow_same_pads(n, s, d, k) for n, s, d, k in zip(
            x_shape[2:], stride, dilation, w_shape[2:]))
    else:
        (top, bottom), (left, right) = padding

    def torch_conv(xt, wt):
        return F.conv2d(F.pad(xt, (left, right, top, bottom)), wt, None, stride, 0, dilation, groups)

    out_shape = torch_conv(torch.tensor(x), torch.tensor(w)).shape
    g = random(rng, *out_shape)
    y, dx, dw = torch_grads(torch_conv, g, x, w)
    what = f"{x_shape} {w_shape} stride {stride} padding {padding}"
    close(gpuconv.conv2d(x, w, None, stride, padding, dilation, groups), y, "conv2d " + what)
    close(grad.conv2d_input(x_shape, w, g, stride, padding, dilation, groups), dx,
          "conv2d_input " + what)
    close(grad.conv2d_weight(x, w_shape, g, stride, padding, dilation, groups), dw,
          "conv2d_weight " + what)


# ------------------------------------------------------------------------------------------
# 2. NHWC pooling gradients against torch autograd (NCHW in torch, transposed).

X = np.random.default_rng(2).standard_normal((2, 3, 7, 6))
X_INT = np.round(X * 2)     # ties: the gradient must go to the first maximum, as in torch

NHWC_CASES = {
    "max_pool2d": (X_INT, (lambda t: F.max_pool2d(t, (3, 2), (2, 1), (1, 1), (1, 2), True)),
                   dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), dilation=(1, 2),
                        ceil_mode=True)),
    "avg_pool2d": (X, (lambda t: F.avg_pool2d(t, 3, 2, 1, True, False, None)),
                   dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                        count_include_pad=False)),
    "lp_pool2d": (np.abs(X) + 0.1, (lambda t: F.lp_pool2d(t, 3.5, (2, 3), (2, 1), True)),
                  dict(norm_type=3.5, kernel_size=(2, 3), stride=(2, 1), ceil_mode=True)),
    "adaptive_avg_pool2d": (X, (lambda t: F.adaptive_avg_pool2d(t, (4, None))),
                            dict(output_size=(4, None))),
    "adaptive_max_pool2d": (X_INT, (lambda t: F.adaptive_max_pool2d(t, (5, 4))),
                            dict(output_size=(5, 4))),
}


@pytest.mark.parametrize("name", sorted(NHWC_CASES))
def test_nhwc_pooling_gradient_matches_torch(name):
    x, torch_pool, kwargs = NHWC_CASES[name]
    out_shape = torch_pool(torch.tensor(x)).shape
    g = np.random.default_rng(3).standard_normal(out_shape)
    y, dx = torch_grads(torch_pool, g, x)
    close(getattr(gpuconv, name)(nhwc(x), **kwargs, data_format="NHWC"), nhwc(y), name)
    close(getattr(grad, name)(nhwc(g), nhwc(x), **kwargs, data_format="NHWC"), nhwc(dx),
          "grad." + name)


def test_nhwc_spatial_pyramid_gradient_matches_torch_composition():
    levels = (1, 3, 2)

    def torch_spp(t):   # NHWC flattening: each level's block ordered i, j, c
        return torch.cat([F.adaptive_max_pool2d(t, l).permute(0, 2, 3, 1).reshape(t.shape[0], -1)
                          for l in levels], 1)

    g = np.random.default_rng(4).standard_normal(torch_spp(torch.tensor(X_INT)).shape)
    y, dx = torch_grads(torch_spp, g, X_INT)
    close(gpuconv.spatial_pyramid_pool2d(nhwc(X_INT), levels, "max", data_format="NHWC"), y, "spp")
    close(grad.spatial_pyramid_pool2d(g, nhwc(X_INT), levels, "max", data_format="NHWC"),
          nhwc(dx), "grad.spatial_pyramid_pool2d")


# ------------------------------------------------------------------------------------------
# 3. Half precision against torch in the same dtype: same output dtype, same indices, values
#    within the rounding of one result (gpuconv accumulates float16 in float32 like torch's CPU).

def half_dtypes():
    dtypes = [(np.dtype(np.float16), torch.float16, 2e-3)]
    try:
        import ml_dtypes
        dtypes.append((np.dtype(ml_dtypes.bfloat16), torch.bfloat16, 1.6e-2))
    except ImportError:
        pass
    return dtypes


@pytest.mark.parametrize("dtype, torch_dtype, eps", half_dtypes(), ids=lambda v: str(v))
def test_half_precision_pooling_and_convolution_match_torch(dtype, torch_dtype, eps):
    rng = np.random.default_rng(5)
    x, w = random(rng, 2, 4, 9, 8).astype(dtype), random(rng, 6, 2, 3, 3).astype(dtype)

    def t(a):   # via float32: torch cannot read NumPy's bfloat16
        return torch.tensor(np.asarray(a, np.float32)).to(torch_dtype)

    def check(got, expected, what, scale=1.0):
        assert got.dtype == dtype, f"{what}: dtype {got.dtype}, expected {dtype}"
        np.testing.assert_allclose(np.asarray(got, np.float64), expected.float().numpy(),
                                   rtol=2 * eps, atol=2 * eps * scale, err_msg=what)

    values, indices = gpuconv.max_pool2d(x, 3, 2, 1, 2, True, True)
    t_values, t_indices = F.max_pool2d(t(x), 3, 2, 1, 2, True, True)
    check(values, t_values, "max_pool2d")
    np.testing.assert_array_equal(indices, t_indices.numpy())
    check(gpuconv.avg_pool2d(x, 3, 2, 1, True, False), F.avg_pool2d(t(x), 3, 2, 1, True, False),
          "avg_pool2d")
    check(gpuconv.lp_pool2d(np.abs(x), 2, 3), F.lp_pool2d(t(np.abs(x)), 2, 3), "lp_pool2d", 4)
    check(gpuconv.adaptive_avg_pool2d(x, (4, 5)), F.adaptive_avg_pool2d(t(x), (4, 5)),
          "adaptive_avg_pool2d")
    conv = gpuconv.conv2d(x, w, None, 2, 1, 1, 2, activation="relu")
    check(conv, torch.relu(F.conv2d(t(x), t(w), None, 2, 1, 1, 2)), "conv2d", 8)


# ------------------------------------------------------------------------------------------
# 4. max_unpool2d where windows overlap (stride 1 < kernel 3): several values name one output
#    position; the last in row-major order is kept, as torch's CPU loop on one thread keeps it
#    (with several threads torch's result depends on their timing).

def test_max_unpool2d_repeated_indices_keep_the_last_as_torch_single_threaded():
    rng = np.random.default_rng(6)
    source = torch.tensor(np.round(random(rng, 2, 3, 9, 6)))    # ties: many repeats
    _, indices = F.max_pool2d(source, 3, 1, 1, return_indices=True)
    x = random(rng, *indices.shape)
    flat = indices.numpy().reshape(6, -1)
    assert any(len(np.unique(row)) < row.size for row in flat)   # the case is really exercised
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        expected = F.max_unpool2d(torch.tensor(x), indices, 3, 1, 1, (9, 6)).numpy()
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(gpuconv.max_unpool2d(x, indices.numpy(), 3, 1, 1, (9, 6)),
                                  expected)
