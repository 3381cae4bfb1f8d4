"""Eleventh contract audit (gpuconv.grad, the utilities, gpuconv.jax): randomized runs of every
pooling and ROI gradient (with and without ``indices=``, NCHW and NHWC, deterministic and not)
and of the convolution gradients (every padding form, NHWC, shapes as tuples, lists and
torch.Size) against torch autograd; the shape and cost formulas against torch's output shapes;
explain() against the kernels conv2d launches; gpuconv.jax against torch in float32/float64,
eager and under jax.jit. Values agreed; these disagreed:

- ``grad.max_pool2d(..., indices=)`` took -1 (the forward's "no element" index) anywhere, and
  sent that output's gradient nowhere. The forward puts -1 only in a window of padding alone
  (dilation past the input); elsewhere it is now a ValueError naming indices.
- ``set_autotune`` refused NumPy's bool ("flag must be a bool, got bool"), which
  ``set_deterministic`` and ``deterministic=`` take.
- ``conv_transpose2d(data_format="NHWC")`` read a 4-element NumPy ``output_size`` (N, H, W, C)
  as NCHW, (W, C) for (H, W): a ValueError, or a wrong output size where those fit.
- ``conv_transpose2d_output_shape`` had no ``data_format``, which conv_transpose2d takes.
- ``explain`` with shapes accepted a bias or residual whose dtype conv2d refuses (integer, or
  other than ``dtype``).
- ``gpuconv.jax.conv_transpose2d`` had no ``data_format`` (gpuconv.conv_transpose2d has).

Runs on both executors (tests/contract/conftest.py); expected values come from torch, or are
derived by hand where torch has no counterpart (each test says how).
"""
import numpy as np
import pytest

import gpuconv
from gpuconv import grad

torch = pytest.importorskip("torch")
F = torch.nn.functional

X = np.random.default_rng(0).standard_normal((2, 3, 7, 8))


def test_max_pool_gradient_refuses_no_index_outside_windows_of_padding():
    y, indices = gpuconv.max_pool2d(X, 3, 2, 1, return_indices=True)
    _, expected = F.max_pool2d(torch.from_numpy(X), 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(indices, expected.numpy())   # every window holds an element
    dy = np.ones(y.shape)
    bad = indices.copy()
    bad[1, 2, 3, 0] = -1
    with pytest.raises(ValueError, match=r"indices must hold flat positions .*\[0, 56\)"):
        grad.max_pool2d(dy, X, 3, 2, 1, indices=bad)


def test_max_pool_gradient_keeps_no_index_of_windows_of_padding():
    # One input row, windows of 3 rows dilated by 2 from row -1: taps at rows -1 and 1 (and 3),
    # never row 0. Every window is padding alone: index -1, and no element gets a gradient.
    x = np.arange(4.0).reshape(1, 1, 1, 4)
    args = ((3, 1), (3, 1), (1, 0), (2, 1), True)
    y, indices = gpuconv.max_pool2d(x, *args, return_indices=True)
    np.testing.assert_array_equal(indices, np.full((1, 1, 1, 4), -1))
    dy = np.ones(y.shape)
    np.testing.assert_array_equal(grad.max_pool2d(dy, x, *args, indices=indices), np.zeros(x.shape))


def test_set_autotune_takes_numpys_bool(monkeypatch):
    from gpuconv.conv import autotune
    monkeypatch.setattr(autotune, "_enabled", None)     # restored after the test
    gpuconv.set_autotune(np.bool_(False))
    assert autotune.enabled() is False
    with pytest.raises(TypeError, match="flag must be a bool, got int 1"):
        gpuconv.set_autotune(1)


def _transposed(stride, output_size):
    """torch's conv_transpose2d of X[:1] with a (3, 2, 3, 3) weight, output_size (H, W) given
    through the output padding it implies (padding 0, dilation 1)."""
    w = np.random.default_rng(1).standard_normal((3, 2, 3, 3))
    padding = tuple(o - ((n - 1) * stride + 3) for o, n in zip(output_size, X.shape[2:]))
    return w, F.conv_transpose2d(torch.from_numpy(X[:1]), torch.from_numpy(w), None, stride, 0,
                                 padding).numpy()


def test_nhwc_transposed_convolution_reads_a_numpy_output_size_in_nhwc_order():
    w, expected = _transposed(3, (22, 25))     # 7x8 -> 21..23 x 24..26
    y = gpuconv.conv_transpose2d(np.ascontiguousarray(X[:1].transpose(0, 2, 3, 1)), w, None, 3,
                                 data_format="NHWC", output_size=np.array([1, 22, 25, 2]))
    np.testing.assert_allclose(y, expected.transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-12)


def test_transposed_output_shape_takes_data_format():
    _, expected = _transposed(2, (16, 17))     # 7x8 -> 15..16 x 17..18
    for output_size in (None, (16, 17), np.array([1, 16, 17, 2])):
        shape = gpuconv.conv_transpose2d_output_shape((1, 7, 8, 3), (3, 2, 3, 3), 2, 0, (1, 0),
                                                      output_size=output_size,
                                                      data_format="NHWC")
        assert shape == expected.transpose(0, 2, 3, 1).shape
    with pytest.raises(ValueError, match="data_format"):
        gpuconv.conv_transpose2d_output_shape((1, 3, 7, 8), (3, 2, 3, 3), data_format="CHW")


@pytest.mark.parametrize("keywords, name", [
    ({"bias": np.zeros(8, np.float64)}, "bias"),
    ({"bias": np.zeros(8, np.int32)}, "bias"),
    ({"residual": np.zeros((1, 8, 6, 6), np.float64)}, "residual"),
])
def test_explain_with_shapes_refuses_an_epilogue_conv2d_refuses(keywords, name):
    x, w = np.zeros((1, 4, 8, 8), np.float32), np.zeros((8, 4, 3, 3), np.float32)
    with pytest.raises(TypeError, match=name):
        gpuconv.conv2d(x, w, **keywords)
    with pytest.raises(TypeError, match=name):
        gpuconv.explain(x.shape, w.shape, **keywords)
    assert gpuconv.explain(x.shape, w.shape, np.zeros(8, np.float32)).algorithm


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_jax_transposed_convolution_takes_nhwc(jit):
    jax = pytest.importorskip("jax")
    import gpuconv.jax as GJ
    w, b = np.random.default_rng(1).standard_normal((3, 4, 3, 3)), np.arange(4.0)
    xt, wt, bt = (torch.from_numpy(a).float().requires_grad_() for a in (X, w, b))
    yt = F.conv_transpose2d(xt, wt, bt, 2, 1, 1)
    g = np.random.default_rng(2).standard_normal(tuple(yt.shape)).transpose(0, 2, 3, 1)
    yt.backward(torch.from_numpy(g.transpose(0, 3, 1, 2)).float())

    def loss(x, w, b):
        y = GJ.conv_transpose2d(x, w, b, 2, 1, 1, data_format="NHWC")
        return (y * g.astype(np.float32)).sum(), y
    run = jax.value_and_grad(loss, (0, 1, 2), has_aux=True)
    (_, y), grads = (jax.jit(run) if jit else run)(
        *(jax.numpy.asarray(a, np.float32) for a in (X.transpose(0, 2, 3, 1), w, b)))
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)
    for got, expected in zip(grads, (xt.grad.numpy().transpose(0, 2, 3, 1), wt.grad, bt.grad)):
        np.testing.assert_allclose(got, np.asarray(expected), rtol=1e-4, atol=1e-4)
