"""What the gpuconv autograd Functions share: first-order backward passes and determinism.

The convolutions', average poolings' and max poolings' gradients are Functions themselves
(conv.py, pool.py): differentiable again. The other backward passes (lp_pool2d,
global_max_pool2d, the max pyramid, the ROI functions) call ``gpuconv.grad`` on arrays, outside
torch's autograd, so their results cannot be differentiated again. Rather than hand back
gradients silently detached from the graph (a later ``.backward()`` would then compute wrong
second derivatives or fail with an unrelated message), such a backward run with
``create_graph=True`` is recorded as one node that raises a clear error if anything
differentiates through it (``first_order_backward``).
"""
from __future__ import annotations

import functools

import torch
from torch.autograd import forward_ad

from ._bridge import transforms_unsupported


class _FirstOrderOnly(torch.autograd.Function):
    """A backward pass computed without autograd, recorded as a node that refuses a second
    differentiation. Its inputs are only there to connect the node to the graph."""

    @staticmethod
    def forward(ctx, name, compute, *connected):
        ctx.name = name
        return compute()

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(
            f"gpuconv.torch.{ctx.name}: double backward (differentiating a gradient, e.g. with "
            "create_graph=True for a gradient penalty or a Hessian) is not supported; gpuconv "
            "implements first derivatives only. Use PyTorch's own operation for this layer "
            "(torch.nn.functional, or torchvision.ops for the ROI functions).")


def first_order_backward(backward):
    """Decorate a Function's ``backward(ctx, *grad_outputs)``; its forward sets
    ``ctx.function_name``, the public name that the error message gives."""
    @functools.wraps(backward)
    def wrapper(ctx, *grad_outputs):
        # Grad mode is on inside a backward pass only under create_graph=True.
        if torch.is_grad_enabled():
            connected = [t for t in (*grad_outputs, *ctx.saved_tensors)
                         if isinstance(t, torch.Tensor) and t.requires_grad]
            if connected:
                return _FirstOrderOnly.apply(ctx.function_name,
                                             lambda: backward(ctx, *grad_outputs), *connected)
        return backward(ctx, *grad_outputs)
    return wrapper


class _NoBackward:
    """The ``ctx`` of a Function's forward run outside autograd (``apply`` below): what the
    forward stores for a backward that cannot come is dropped."""

    def save_for_backward(self, *tensors) -> None:
        pass

    def mark_non_differentiable(self, *tensors) -> None:
        pass


def _forward_ad_active() -> bool:
    """Whether a forward-mode AD level is open (torch.autograd.forward_ad.dual_level, used by
    torch.func.jvp and gradcheck(check_forward_ad=True)): dual inputs then need Function.apply,
    which refuses them clearly (the Functions have no jvp) where the forward alone would drop
    their tangents."""
    level = getattr(forward_ad, "_current_level", None)
    return level is None or level >= 0


def differentiable(*args) -> bool:
    """Whether autograd may ask for a backward of a call with ``args``: grad mode on and a tensor
    argument requiring grad, or a forward-mode AD level open."""
    return (torch.is_grad_enabled() and any(isinstance(a, torch.Tensor) and a.requires_grad
                                            for a in args)) or _forward_ad_active()


def apply(function, *args):
    """``function.apply(*args)``, or its forward alone where autograd cannot ask for a backward
    (not ``differentiable``, as under ``torch.no_grad()`` in inference): the Function machinery
    is host time on every call (on the CPU here, a depthwise conv2d through gpuconv.torch with
    the kernel launch stubbed and grad mode on: 77 us through Function.apply, 32 us through the
    forward alone; gpuconv.conv2d on the arrays: 16 us). Under torch.jit.trace always
    ``apply``: the trace records the Function as a node that runs it again on the traced
    module's inputs (the forward alone would be recorded as its result, a constant)."""
    if differentiable(*args) or torch.jit.is_tracing():
        try:
            return function.apply(*args)
        except RuntimeError:
            # torch refuses a Function without setup_context under vmap/grad before gpuconv
            # sees the tensors (a module's parameters require grad): say why as to_array does.
            if torch._C._are_functorch_transforms_active():
                raise transforms_unsupported() from None
            raise
    return function.forward(_NoBackward(), *args)


def deterministic() -> bool | None:
    """``deterministic=`` for gpuconv.grad: True under ``torch.use_deterministic_algorithms(True)``,
    else None (gpuconv's own process-wide setting decides)."""
    return True if torch.are_deterministic_algorithms_enabled() else None
