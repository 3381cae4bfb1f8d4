"""Audit 18 of gpuconv.jax (a code reading of the bindings). Fixed and pinned below:

1. The ReLU-fused conv2d's gradient was zero where the output is NaN (``y > 0`` is false for
   NaN); torch's threshold_backward, and gpuconv.torch, zero it only where y <= 0.
2. The pooling and ROI kernels' 32-bit size limit was checked only inside the callback, so under
   jax.jit it arrived as a runtime error after XLA allocated the output; it is now checked when
   traced wherever the call will run on the kernels (a GPU, or gpuconv.simulate()).
3. A torch tensor as max_unpool2d's indices was "Cannot interpret 'torch.int64' as a data type":
   now a TypeError naming `indices`.
4. setup.py allowed jax 0.4.20; the bindings need 0.4.35 (Array.committed, pure_callback's
   vmap_method). The extra now says so.
"""
import re
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

import gpuconv  # noqa: E402
import gpuconv.jax as GJ  # noqa: E402


def test_the_relu_gradient_passes_through_a_nan_output_as_torch_s():
    torch = pytest.importorskip("torch")
    x = np.ones((1, 1, 3, 3), np.float32)
    w = np.ones((1, 1, 1, 1), np.float32)
    r = np.zeros((1, 1, 3, 3), np.float32)
    r[0, 0, 1, 1] = np.nan
    dx, dr = jax.grad(lambda x, r: GJ.conv2d(x, w, activation="relu", residual=r).sum(),
                      argnums=(0, 1))(x, r)
    xt, rt = torch.tensor(x, requires_grad=True), torch.tensor(r, requires_grad=True)
    torch.relu(torch.nn.functional.conv2d(xt, torch.tensor(w)) + rt).sum().backward()
    np.testing.assert_array_equal(np.asarray(dx), xt.grad.numpy())
    np.testing.assert_array_equal(np.asarray(dr), rt.grad.numpy())
    assert np.asarray(dx)[0, 0, 1, 1] == 1.0


@pytest.mark.parametrize("call", [
    lambda x: GJ.adaptive_avg_pool2d(x, (50000, 50000)),
    lambda x: GJ.adaptive_max_pool2d(x, (50000, 50000)),
    lambda x: GJ.roi_align(x, jnp.zeros((1, 5), x.dtype), 50000),
    lambda x: GJ.roi_pool(x, jnp.zeros((1, 5), x.dtype), 50000),
], ids=["adaptive_avg", "adaptive_max", "roi_align", "roi_pool"])
def test_a_kernel_size_past_32_bits_is_refused_when_traced(call):
    x = jnp.ones((1, 1, 2, 2), jnp.float16)
    with gpuconv.simulate():
        for run in (lambda: jax.eval_shape(call, x), lambda: jax.jit(call)(x)):
            with pytest.raises(ValueError, match="the kernels index with 32-bit ints"):
                run()
    assert jax.eval_shape(call, x).shape[-1] == 50000     # the reference path has no such limit


def test_a_torch_tensor_as_unpool_indices_is_named():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"indices must have an integer dtype \(a JAX array of a "
                       r"NumPy integer dtype\), got Tensor of dtype torch.int64"):
        GJ.max_unpool2d(jnp.ones((1, 1, 2, 2)), torch.zeros(1, 1, 2, 2, dtype=torch.int64), 2)


def test_the_jax_extra_asks_for_the_release_the_bindings_need():
    setup = (Path(__file__).resolve().parents[2] / "setup.py").read_text()
    assert re.search(r'"jax": \["jax>=0\.4\.35"\]', setup)
    assert hasattr(jax.Array, "committed")
