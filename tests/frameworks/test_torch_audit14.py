"""Audit 14 of the framework fronts (gpuconv.torch and gpuconv.jax against torch 2.13 CPU, through
the reference and under gpuconv.simulate()). Findings, each fixed and pinned below:

1. ``torch.jit.trace`` recorded a gpuconv.torch call made without autograd (inference, a layer
   without parameters) as a constant: the traced module gave the example input's result for
   every input, with only a TracerWarning; with parameters needing grad the trace's own check
   failed. Under tracing the calls now go through the autograd Function (a node of the trace
   that runs it again) and the computation through the operator ``gpuconv::compute_traced``
   (gpuconv/torch/_custom_op.py): the traced module computes, and differentiates, as the
   module.
2. A vectorized backward (``torch.autograd.grad(is_grads_batched=True)``,
   ``jacobian(vectorize=True)``: autograd's own batched tensors) failed with torch's internal
   "Batching rule not implemented for aten::detach"; it is now the NotImplementedError that
   names torch.func transforms and says what to use instead.
3. An input of the wrong rank or dtype was named ``x`` (gpuconv's array checks) and "must be
   4-D" where 3-D (unbatched) inputs are taken; the messages now name ``input`` and its ranks.
4. Spellings torch takes: an integer tensor of one element (``stride=torch.tensor([2])``,
   ``groups=torch.tensor([2])``), a range as a pair (adaptive output sizes, max_unpool2d's
   kernel_size), 0-d integer tensors inside ConvTranspose2d's ``output_size``.
5. roi_align / roi_pool of a channels_last input returned a channels_last result; torchvision's
   is contiguous (a detection head may ``view`` it).
6. gpuconv.jax: a bias, residual or box that is not an array was refused as "must be a
   numpy.ndarray or cupy.ndarray"; it now asks for a JAX array.
"""
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import gpuconv  # noqa: E402
import gpuconv.torch as G  # noqa: E402

# torch 2.13 deprecates torch.jit.trace (and warns on each use); it still runs, and users have it
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.trace.*deprecated:DeprecationWarning")


def randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


BOXES = torch.tensor([[0, 0.5, 1.0, 4.0, 5.5], [0, 2.0, 0.0, 6.0, 3.0]])

TRACED_LAYERS = {
    "MaxPool2d": lambda: G.MaxPool2d(3, 2, 1),
    "AvgPool2d": lambda: G.AvgPool2d(2),
    "LPPool2d": lambda: G.LPPool2d(2, 2),
    "AdaptiveMaxPool2d": lambda: G.AdaptiveMaxPool2d(3),
    "Conv2d": lambda: G.Conv2d(2, 3, 3, padding=1),
    "ConvTranspose2d": lambda: G.ConvTranspose2d(2, 3, 3, stride=2),
}


@pytest.mark.parametrize("grad_mode", [True, False], ids=["grad", "no_grad"])
@pytest.mark.parametrize("layer", list(TRACED_LAYERS))
def test_a_traced_layer_computes_and_differentiates_as_the_layer(layer, grad_mode, executor):
    torch.manual_seed(0)
    module = TRACED_LAYERS[layer]()
    example, other = randn(1, 2, 7, 7, seed=1), randn(1, 2, 7, 7, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)   # no constant recorded
        with torch.set_grad_enabled(grad_mode):
            traced = torch.jit.trace(module, example)
    torch.testing.assert_close(traced(other), module(other), rtol=0, atol=0)
    params = list(module.parameters())
    if params:
        traced_grads = torch.autograd.grad(traced(other).sum(), params)
        module_grads = torch.autograd.grad(module(other).sum(), params)
        for a, b in zip(traced_grads, module_grads):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    x = other.clone().requires_grad_()
    (g_traced,) = torch.autograd.grad(traced(x).sum(), x)
    (g_module,) = torch.autograd.grad(module(x).sum(), x)
    torch.testing.assert_close(g_traced, g_module, rtol=0, atol=0)


def test_a_traced_roi_align_takes_new_boxes(executor):
    def head(x, boxes):
        return G.roi_align(x, boxes, 2, 1.0, 2)
    x = randn(1, 2, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)
        traced = torch.jit.trace(head, (x, BOXES))
    other = BOXES.clone()
    other[:, 1:] += 0.75
    torch.testing.assert_close(traced(x, other), head(x, other), rtol=0, atol=0)


@pytest.mark.parametrize("function", [
    lambda a: G.avg_pool2d(a, 2), lambda a: G.max_pool2d(a, 2), lambda a: G.lp_pool2d(a, 2, 2),
    lambda a: G.conv2d(a, torch.ones(1, 1, 2, 2, dtype=torch.float64)),
    lambda a: G.roi_align(a, BOXES.double()[:1], 2)], ids=["avg", "max", "lp", "conv", "roi"])
def test_a_vectorized_backward_is_refused_by_name(function):
    t = randn(1, 1, 6, 6, dtype=torch.float64)
    with pytest.raises(NotImplementedError, match="vectorize=True"):
        torch.autograd.functional.jacobian(function, t, vectorize=True)
    y = function(t.clone().requires_grad_())
    assert y.requires_grad
    # the same without vectorization works, as torch's
    jac = torch.autograd.functional.jacobian(function, t)
    assert jac.shape == (*y.shape, *t.shape)


@pytest.mark.parametrize("call, message", [
    (lambda: G.conv2d(randn(8, 8), randn(1, 1, 3, 3)), r"input must be 3-D .* or 4-D .*\(8, 8\)"),
    (lambda: G.max_pool2d(randn(1, 1, 1, 8, 8), 2), r"input must be 3-D .* or 4-D"),
    (lambda: G.conv_transpose2d(randn(8), randn(1, 1, 3, 3)), r"input must be 3-D"),
    (lambda: G.roi_align(randn(2, 8, 8), BOXES, 2), r"input must be 4-D .*\(2, 8, 8\)"),
    (lambda: G.spatial_pyramid_pool2d(randn(2, 8, 8)), r"input must be 4-D"),
])
def test_an_input_of_the_wrong_rank_is_named_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_an_integer_input_is_a_type_error_naming_input():
    with pytest.raises(TypeError, match=r"input must have a floating dtype .* torch.int64"):
        G.avg_pool2d(torch.ones(1, 2, 4, 4, dtype=torch.int64), 2)


T = torch.tensor


@pytest.mark.parametrize("call", [
    lambda M, x, w: M.conv2d(x, w, stride=T([2]), padding=T([1]), groups=T([2])),
    lambda M, x, w: M.conv2d(x, w, stride=(T([2]), 1), groups=2),
    lambda M, x, w: M.conv_transpose2d(x, w, stride=2, output_padding=T([1]), groups=T([2])),
    lambda M, x, w: M.max_pool2d(x, T([2]), T([1])),
    lambda M, x, w: M.adaptive_avg_pool2d(x, range(2, 4)),
    lambda M, x, w: M.adaptive_max_pool2d(x, range(3, 5)),
    lambda M, x, w: M.max_unpool2d(*F.max_pool2d(x, 2, return_indices=True), range(2, 4)),
], ids=["one-element tensors", "a one-element tensor in a pair", "transposed", "max_pool2d",
        "adaptive avg range", "adaptive max range", "max_unpool2d range"])
def test_spellings_torch_takes(call, executor):
    x, w = randn(1, 4, 8, 8), randn(4, 2, 3, 3, seed=1)
    torch.testing.assert_close(call(G, x, w), call(F, x, w))


def test_conv_transpose_layer_output_size_of_0d_tensors(executor):
    torch.manual_seed(0)
    ours = G.ConvTranspose2d(4, 6, 3, stride=2, output_padding=1)
    theirs = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, output_padding=1)
    theirs.load_state_dict(ours.state_dict())
    x = randn(1, 4, 9, 9)
    size = (T(19), T(20))
    torch.testing.assert_close(ours(x, output_size=size), theirs(x, output_size=size))


@pytest.mark.parametrize("name", ["roi_align", "roi_pool"])
def test_roi_results_of_a_channels_last_input_are_contiguous(name, executor):
    x = randn(2, 3, 8, 8)
    y = getattr(G, name)(x.contiguous(memory_format=torch.channels_last), BOXES, 2)
    assert y.is_contiguous()
    torch.testing.assert_close(y, getattr(G, name)(x, BOXES, 2))
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    getattr(G, name)(x, BOXES, 2).view(2, -1).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


def test_jax_non_arrays_are_refused_asking_for_jax_arrays():
    jnp = pytest.importorskip("jax.numpy")
    import gpuconv.jax as gj
    x, w = jnp.ones((1, 2, 5, 5)), jnp.ones((3, 2, 3, 3))
    with pytest.raises(TypeError, match="bias must be a JAX array or None, got float"):
        gj.conv2d(x, w, 1.0)
    with pytest.raises(TypeError, match="residual must be a JAX array or None, got int"):
        gj.conv2d(x, w, residual=2)
    with pytest.raises(TypeError, match=r"boxes must be a \(K, 5\) JAX array or a list"):
        gj.roi_align(x, [[0, 0, 0, 2, 2]], 2)
    # and arrays still go through, residual included
    y = gj.conv2d(x, w, jnp.ones(3), 1, 1, residual=jnp.ones((1, 3, 5, 5)))
    np.testing.assert_allclose(np.asarray(y), np.asarray(gj.conv2d(x, w, None, 1, 1)) + 2)
