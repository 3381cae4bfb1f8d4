"""gpuconv.jax on CPU JAX arrays: values against the NumPy API (and jax.lax where it has the
operation), jax.grad against gpuconv.grad on the same cotangent, the same under jax.jit
(pure_callback), and a numerical gradient check in float64."""
import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy

import gpuconv  # noqa: E402
import gpuconv.jax as GJ  # noqa: E402
from jax.test_util import check_grads  # noqa: E402


def rand(*shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


X = rand(2, 4, 7, 8)
W, B, WT = rand(6, 2, 3, 3, seed=1), rand(6, seed=2), rand(4, 3, 3, 3, seed=3)
BOXES = np.array([[0, 1.0, 1.5, 5.0, 6.0], [1, 0.5, 2.0, 6.5, 4.0]], dtype=np.float32)
MAX_VALUES, MAX_INDICES = gpuconv.max_pool2d(X, 2, return_indices=True)

# name -> (gpuconv.jax call, the same call on NumPy arrays, the gpuconv.grad of x or None).
# Every forward takes x first; ``g`` is the cotangent.
CASES = {
    "conv2d": (lambda m, x: m.conv2d(x, W, B, 2, 1, 1, 2),
               lambda g, x: gpuconv.grad.conv2d_input(x.shape, W, g, 2, 1, 1, 2)),
    "conv2d_nhwc": (lambda m, x: m.conv2d(x.transpose(0, 2, 3, 1), W, B, 1, "same", 1, 2,
                                          data_format="NHWC"), None),
    "conv_transpose2d": (lambda m, x: m.conv_transpose2d(x, WT, None, 2, 1, 1),
                         lambda g, x: gpuconv.conv2d(g, WT, None, 2, 1)),
    "max_pool2d": (lambda m, x: m.max_pool2d(x, 3, 2, 1, ceil_mode=True),
                   lambda g, x: gpuconv.grad.max_pool2d(g, x, 3, 2, 1, ceil_mode=True)),
    "avg_pool2d": (lambda m, x: m.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
                   lambda g, x: gpuconv.grad.avg_pool2d(g, x, 3, 2, 1, count_include_pad=False)),
    "lp_pool2d": (lambda m, x: m.lp_pool2d(x, 2, 2),
                  lambda g, x: gpuconv.grad.lp_pool2d(g, x, 2, 2)),
    "adaptive_avg_pool2d": (lambda m, x: m.adaptive_avg_pool2d(x, (3, 5)),
                            lambda g, x: gpuconv.grad.adaptive_avg_pool2d(g, x, (3, 5))),
    "adaptive_max_pool2d": (lambda m, x: m.adaptive_max_pool2d(x, (3, 5)),
                            lambda g, x: gpuconv.grad.adaptive_max_pool2d(g, x, (3, 5))),
    "global_avg_pool2d": (lambda m, x: m.global_avg_pool2d(x),
                          lambda g, x: gpuconv.grad.global_avg_pool2d(g, x)),
    "global_max_pool2d": (lambda m, x: m.global_max_pool2d(x),
                          lambda g, x: gpuconv.grad.global_max_pool2d(g, x)),
    "spatial_pyramid_pool2d": (
        lambda m, x: m.spatial_pyramid_pool2d(x, (1, 2), "avg"),
        lambda g, x: gpuconv.grad.spatial_pyramid_pool2d(g, x, (1, 2), "avg")),
    "max_unpool2d": (
        lambda m, x: m.max_unpool2d(x[:, :, :3, :4], MAX_INDICES, 2, output_size=(7, 8)), None),
    "roi_align": (lambda m, x: m.roi_align(x, BOXES, 2, 1.0, 2),
                  lambda g, x: gpuconv.grad.roi_align(g, x, BOXES, 2, 1.0, 2)),
    "roi_align_list": (lambda m, x: m.roi_align(x, [BOXES[:1, 1:], BOXES[1:, 1:]], (2, 3), 0.5),
                       lambda g, x: gpuconv.grad.roi_align(g, x, [BOXES[:1, 1:], BOXES[1:, 1:]],
                                                           (2, 3), 0.5)),
    "roi_pool": (lambda m, x: m.roi_pool(x, BOXES, 2),
                 lambda g, x: gpuconv.grad.roi_pool(g, x, BOXES, 2)),
}


def _cotangent(shape):
    return np.linspace(-1, 1, int(np.prod(shape)), dtype=np.float32).reshape(shape)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_values_and_grad_match_gpuconv(name, jit):
    fn, grad_fn = CASES[name]
    expected = fn(gpuconv, X)
    call = jax.jit(lambda x: fn(GJ, x)) if jit else (lambda x: fn(GJ, x))
    actual = call(jnp.asarray(X))
    assert isinstance(actual, jax.Array) and actual.dtype == expected.dtype
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=1e-6, atol=1e-6)

    g = _cotangent(expected.shape)
    vjp = jax.grad(lambda x: jnp.sum(fn(GJ, x) * g))
    grad = (jax.jit(vjp) if jit else vjp)(jnp.asarray(X))
    if grad_fn is not None:
        np.testing.assert_allclose(np.asarray(grad), grad_fn(g, X), rtol=1e-6, atol=1e-6)
    else:  # checked numerically below and against jax.lax; here: it runs and has x's shape
        assert grad.shape == X.shape


def test_conv2d_and_max_pool_match_jax_lax():
    x = jnp.asarray(X)
    expected = jax.lax.conv_general_dilated(x, W, (2, 2), ((1, 1), (1, 1)), rhs_dilation=(1, 1),
                                            feature_group_count=2) + B[None, :, None, None]
    np.testing.assert_allclose(GJ.conv2d(x, W, B, 2, 1, 1, 2), expected, rtol=1e-5, atol=1e-5)
    pooled = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
    np.testing.assert_allclose(GJ.max_pool2d(x, 2), pooled)

    def loss(conv, x, w, b):
        return jnp.sum(jnp.tanh(conv(x, w, b)) ** 2)

    ours = jax.grad(lambda *a: loss(lambda x, w, b: GJ.conv2d(x, w, b, 2, 1, 1, 2), *a),
                    argnums=(0, 1, 2))(x, W, B)
    lax = jax.grad(lambda *a: loss(
        lambda x, w, b: jax.lax.conv_general_dilated(x, w, (2, 2), ((1, 1), (1, 1)),
                                                     feature_group_count=2)
        + b[None, :, None, None], *a), argnums=(0, 1, 2))(x, W, B)
    for a, e in zip(ours, lax):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-5)


def test_fused_activation_and_residual_gradients():
    x, r = jnp.asarray(X[:, :, :5, :5]), jnp.asarray(rand(2, 6, 5, 5, seed=5))
    for activation, fn in (("relu", jax.nn.relu), ("sigmoid", jax.nn.sigmoid)):
        def ours(x, w, b, r):
            return jnp.sum(GJ.conv2d(x, w, b, 1, 1, 1, 2, activation=activation, residual=r) ** 2)

        def plain(x, w, b, r):
            y = jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), feature_group_count=2)
            return jnp.sum(fn(y + b[None, :, None, None] + r) ** 2)
        for a, e in zip(jax.grad(ours, (0, 1, 2, 3))(x, W, B, r),
                        jax.grad(plain, (0, 1, 2, 3))(x, W, B, r)):
            np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fn", [
    lambda x, w, b: GJ.conv2d(x, w, b, (1, 2), 1, (2, 1), 2, activation="tanh"),
    lambda x, w, b: GJ.conv_transpose2d(x, w[:4, :2], b[:2], 1, 0, 1, 1, 2)[:, :, :5, :5].sum()
    + GJ.max_unpool2d(*GJ.max_pool2d(x, 2, return_indices=True), 2, output_size=(5, 5)).sum(),
    lambda x, w, b: GJ.roi_pool(x, BOXES.astype(np.float64), 2)
    + GJ.spatial_pyramid_pool2d(x, (1, 2), "max").sum() + GJ.lp_pool2d(x, 2, 2).sum(),
])
def test_numerical_gradients_float64(fn):
    with jax.enable_x64(True):
        x, w, b = (jnp.asarray(a.astype(np.float64)) for a in (X[:, :, :5, :5], W, B))
        check_grads(fn, (x, w, b), order=1, modes=["rev"], atol=1e-5, rtol=1e-5)


def test_indices_are_jax_default_integers_and_roundtrip():
    values, indices = GJ.max_pool2d(jnp.asarray(X), 2, return_indices=True)
    assert indices.dtype == jnp.int32
    np.testing.assert_array_equal(indices, MAX_INDICES)
    restored = GJ.max_unpool2d(values, indices, 2, output_size=(7, 8))
    np.testing.assert_array_equal(restored, gpuconv.max_unpool2d(MAX_VALUES, MAX_INDICES, 2,
                                                                 output_size=(7, 8)))


def test_vmap_and_bfloat16():
    batched = jax.vmap(lambda x: GJ.avg_pool2d(x[None], 2)[0])(jnp.asarray(X))
    np.testing.assert_allclose(batched, gpuconv.avg_pool2d(X, 2), rtol=1e-6)
    y = GJ.conv2d(jnp.asarray(X, jnp.bfloat16), jnp.asarray(W, jnp.bfloat16), None, 1, 1, 1, 2)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y, np.float32), gpuconv.conv2d(X, W, None, 1, 1, 1, 2),
                               rtol=5e-2, atol=5e-2)


def test_errors_are_raised_when_traced():
    with pytest.raises(ValueError, match="stride"):
        jax.jit(lambda x: GJ.conv2d(x, W, stride=0))(jnp.asarray(X[:, :2]))
    with pytest.raises(ValueError, match="activation"):
        jax.jit(lambda x: GJ.conv2d(x, W[:, :2], activation="gelu"))(jnp.asarray(X[:, :2]))
    with pytest.raises(ValueError, match="padding"):
        jax.jit(lambda x: GJ.max_pool2d(x, 2, padding=3))(jnp.asarray(X))


@pytest.mark.parametrize("call, error, match", [
    (lambda x, w: GJ.conv2d(x, w, jnp.ones(w.shape[0] + 1)), ValueError, "bias"),
    (lambda x, w: GJ.conv2d(x, w, jnp.ones((w.shape[0], 1))), ValueError, "bias"),
    (lambda x, w: GJ.conv2d(x, w, residual=jnp.ones((1, 3, 4, 4))), ValueError, "residual"),
    (lambda x, w: GJ.conv2d(x, w, algorithm="pointwise"), ValueError, "pointwise"),
    (lambda x, w: GJ.conv_transpose2d(x, jnp.ones((x.shape[1], 2, 3, 3)), jnp.ones(5)),
     ValueError, "bias"),
    (lambda x, w: GJ.avg_pool2d(x, 2, divisor_override=0), ValueError, "divisor_override"),
    (lambda x, w: GJ.avg_pool2d(x, 2, count_include_pad="yes"), TypeError, "count_include_pad"),
    (lambda x, w: GJ.lp_pool2d(x, 0, 2), ValueError, "norm_type"),
    (lambda x, w: GJ.lp_pool2d(x, "2", 2), TypeError, "norm_type"),
    (lambda x, w: GJ.max_unpool2d(x, jnp.zeros((1, 2, 4, 4), jnp.int32), 2), ValueError,
     "indices"),
    (lambda x, w: GJ.max_pool2d(x, 2, return_indices="yes"), TypeError, "return_indices"),
    (lambda x, w: GJ.adaptive_max_pool2d(x, 2, return_indices="yes"), TypeError,
     "return_indices"),
])
def test_every_argument_check_runs_when_traced(call, error, match):
    """The wrappers run the fronts' own check functions (conv.api.check_conv2d_arguments,
    pool.api.check_*) on stand-ins: every option a front checks fails at trace time under jit,
    with eager mode's error, not as a JaxRuntimeError from inside the callback."""
    x, w = jnp.asarray(X[:, :2], jnp.float32), jnp.asarray(W[:, :2], jnp.float32)
    with pytest.raises(error, match=match):
        jax.jit(call)(x, w)
    with pytest.raises(error, match=match):
        call(x, w)


@pytest.mark.parametrize("call, match", [
    (lambda x, w: GJ.conv2d(x.astype(jnp.int32), w.astype(jnp.int32)), "floating dtype"),
    (lambda x, w: GJ.conv2d(x, w.astype(jnp.float16)), "weight has dtype float16"),
    (lambda x, w: GJ.conv2d(x, w, jnp.ones(w.shape[0], jnp.float16)), "bias has dtype"),
    (lambda x, w: GJ.conv_transpose2d(x.astype(jnp.int32), jnp.ones((x.shape[1], 2, 3, 3),
                                                                    jnp.int32)),
     "floating dtype"),
    (lambda x, w: GJ.max_pool2d(x.astype(jnp.int32), 2), "floating dtype"),
    (lambda x, w: GJ.roi_align(x, jnp.zeros((1, 5), jnp.float16), 2), "boxes must have"),
    (lambda x, w: GJ.roi_pool(x, [jnp.zeros((1, 4), jnp.float16)], 2), r"boxes\[0\]"),
    (lambda x, w: GJ.max_unpool2d(x, x, 2), "indices must have an integer dtype"),
], ids=["int-conv", "mixed-conv", "bias", "int-transposed", "int-pool", "boxes", "box-list",
        "float-indices"])
def test_dtype_errors_are_type_errors_when_traced(call, match):
    """Under jit the arrays reach gpuconv only inside the host callback, where its TypeError
    would surface as a JaxRuntimeError: the wrappers check at trace time, as in eager mode."""
    x, w = jnp.asarray(X[:, :2], jnp.float32), jnp.asarray(W[:, :2], jnp.float32)
    with pytest.raises(TypeError, match=match):
        jax.jit(call)(x, w)
    with pytest.raises(TypeError, match=match):
        call(x, w)


def test_max_pool_backward_trusts_its_own_forwards_indices(monkeypatch):
    # As gpuconv.torch: the indices kept from the forward are not scanned again.
    import gpuconv.pool.geometry as geometry

    def no_scan(*args, **kwargs):
        raise AssertionError("the forward's own indices were scanned")
    monkeypatch.setattr(geometry, "check_indices", no_scan)
    monkeypatch.setattr(geometry, "check_indices_in_windows", no_scan)
    g = jax.grad(lambda x: (GJ.max_pool2d(x, 3, 2, 1) ** 2).sum())(jnp.asarray(X))
    y, i = gpuconv.max_pool2d(X, 3, 2, 1, return_indices=True)
    np.testing.assert_allclose(np.asarray(g), gpuconv.grad.max_pool2d(2 * y, X, 3, 2, 1),
                               rtol=1e-6, atol=1e-6)
