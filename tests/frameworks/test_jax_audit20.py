"""Audit 20 of gpuconv.jax: forward-mode differentiation (jax.jvp, jax.jacfwd, jax.hessian) of
any gpuconv.jax function raised JAX's generic "can't apply forward-mode autodiff (jvp) to a
custom_vjp function" TypeError, naming no gpuconv function and never reaching the message that
says what to use; it is now a NotImplementedError that does. (jax.linearize returns a function
that raises JAX's TypeError when applied, outside any gpuconv call: it stays JAX's.)"""
import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

import gpuconv.jax as GJ  # noqa: E402

X = jnp.asarray(np.random.default_rng(0).standard_normal((1, 2, 4, 4)), jnp.float32)
W = jnp.ones((2, 2, 3, 3), jnp.float32)
FUNCTIONS = {
    "conv2d": lambda x: GJ.conv2d(x, W, padding=1),
    "conv_transpose2d": lambda x: GJ.conv_transpose2d(x, W, None, 2),
    "max_pool2d": lambda x: GJ.max_pool2d(x, 2),
    "max_pool2d indices": lambda x: GJ.max_pool2d(x, 2, return_indices=True)[0],
    "avg_pool2d": lambda x: GJ.avg_pool2d(x, 2),
    "max_unpool2d": lambda x: GJ.max_unpool2d(x, jnp.zeros((1, 2, 4, 4), jnp.int32), 2),
    "roi_align": lambda x: GJ.roi_align(x, jnp.array([[0, 0, 0, 2, 2.0]]), 2),
}
MODES = {
    "jvp": lambda f: jax.jvp(f, (X,), (X,)),
    "jacfwd": lambda f: jax.jacfwd(f)(X),
    "hessian": lambda f: jax.hessian(lambda x: jnp.sum(f(x) ** 2))(X),
    "jit(jacfwd)": lambda f: jax.jit(jax.jacfwd(f))(X),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", FUNCTIONS)
def test_forward_mode_says_to_use_reverse_mode(name, mode):
    with pytest.raises(NotImplementedError, match=r"forward-mode .* jax\.jacrev"):
        MODES[mode](FUNCTIONS[name])


@pytest.mark.parametrize("name", FUNCTIONS)
def test_a_linearized_function_is_refused_when_applied(name):
    _, linear = jax.linearize(FUNCTIONS[name], X)
    with pytest.raises((TypeError, NotImplementedError), match="forward-mode"):
        linear(X)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_reverse_mode_still_works(name):
    f = FUNCTIONS[name]
    jacobian = jax.jacrev(f)(X)
    assert jacobian.shape == f(X).shape + X.shape
    assert jax.grad(lambda x: jnp.sum(f(x)))(X).shape == X.shape
