"""The pooling functions for torch tensors: ``torch.nn.functional``'s signatures (plus gpuconv's
global and spatial pyramid pools), each a ``torch.autograd.Function``.

gpuconv's gradients share one convention, ``grad.F(grad_output, x, <F's own arguments>)``, so one
Function serves every pooling without indices (``PoolFunction``), one the max poolings whose
forward indices are kept for the backward pass (``MaxPoolFunction``), and one max_unpool2d.
Unbatched (C, H, W) inputs are accepted where torch accepts them.
"""
from __future__ import annotations

import torch

import gpuconv
from gpuconv.pool import api as pool_api
from gpuconv.pool.grad import WITH_OWN_INDICES

from ._args import (check_batched, expand_single, int_of_scalar_tensor, int_sequence,
                    is_unbatched, output_size_pair)
from ._autocast import autocast_float32
from ._autograd import apply, deterministic, differentiable, first_order_backward
from ._bridge import (batch_of_one, common_device, data_format_for, on_device_of, to_array,
                      to_tensor, unbatched)
from ._custom_op import (compute, computation, image, like, result_and_layout,
                         stand_in)
from ._overrides import dispatches_torch_function
from ._plans import BridgeCall

__all__ = ["max_pool2d", "avg_pool2d", "lp_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
           "global_avg_pool2d", "global_max_pool2d", "spatial_pyramid_pool2d", "max_unpool2d"]

# Results that are not a 4-D image in the input's layout: such inputs are passed as NCHW (a
# strided view of a channels_last tensor; the kernels copy it if they need to).
_NCHW_ONLY = frozenset({"spatial_pyramid_pool2d"})


def _layout(name: str, x: torch.Tensor) -> str:
    return "NCHW" if name in _NCHW_ONLY else data_format_for(x)


def _forward(name: str, x: torch.Tensor, args: tuple, fmt: str | None = None, **keywords):
    """gpuconv.<name>(x, *args, **keywords) over the tensor's array in the layout the call
    runs in (``fmt``, or where None the layout a call of this signature ran in before, or
    ``_layout``'s): (result array(s), data_format)."""
    call = BridgeCall(name, {"x": x}, (*args, *keywords.items()))
    device, fmt = call.place(lambda: (common_device({"input": x}), fmt or _layout(name, x)))
    with on_device_of(device):
        return call.run(fmt, ("x",), lambda a: getattr(gpuconv, name)(
            a["x"], *args, data_format=fmt, **keywords)), fmt


def _pooled(x, name, args, fmt=None):
    """(gpuconv.<name>(x, *args) as a tensor, the layout it ran in)."""
    y, fmt = _forward(name, x, args, fmt)
    return to_tensor(y, x.dtype, fmt), fmt


def _max_pooled(x, name, args, fmt=None):
    """((values, indices) of max pooling ``name`` as tensors, the layout it ran in)."""
    (values, indices), fmt = _forward(name, x, args, fmt, return_indices=True)
    return (to_tensor(values, x.dtype, fmt), to_tensor(indices, torch.int64, fmt)), fmt


def _checked(x, name, args, fmt, **keywords):
    """The pooling front's own checks on a stand-in of x: its PoolCall."""
    common_device({"input": x})
    check = (pool_api.check_global_pool2d if name == "global_max_pool2d"
             else getattr(pool_api, "check_" + name))
    return check(stand_in(x, fmt), *args, data_format=fmt, **keywords)


@computation("pool", lambda x, name, args, fmt: image(
    _checked(x, name, args, fmt).output_shape, fmt, x.dtype))
def _pooled_in_layout(x, name, args, fmt):
    return _pooled(x, name, args, fmt)[0]


def _describe_max_pool(x, name, args, fmt):
    shape = _checked(x, name, args, fmt, return_indices=True).output_shape
    return image(shape, fmt, x.dtype), image(shape, fmt, torch.int64)


@computation("max_pool", _describe_max_pool)
def _max_pooled_in_layout(x, name, args, fmt):
    return _max_pooled(x, name, args, fmt)[0]


def _is_linear(name: str, args: tuple) -> bool:
    """Whether the pooling is linear in x (an average), so that its gradient is linear in the
    output's gradient alone and the gradient of that is the pooling again (double backward)."""
    if name == "spatial_pyramid_pool2d":
        return args[1] == "avg"
    return name in ("avg_pool2d", "adaptive_avg_pool2d", "global_avg_pool2d")


def _pool_gradient(grad_out, x, name, args, fmt):
    """gpuconv.grad.<name>(grad_out, x, *args) as a tensor."""
    return compute("pool_gradient", (grad_out, x), (name, args, deterministic(), fmt))


@computation("pool_gradient", lambda grad_out, x, name, args, det, fmt: like(x, fmt))
def _pool_gradient_of(grad_out, x, name, args, det, fmt):
    call = BridgeCall("grad." + name, {"grad_output": grad_out, "x": x}, (*args, det, fmt))
    with on_device_of(x.device):
        grad = call.run(fmt, ("grad_output", "x"), lambda a: getattr(gpuconv.grad, name)(
            a["grad_output"], a["x"], *args, data_format=fmt, deterministic=det))
    return to_tensor(grad, x.dtype, fmt)


class PoolFunction(torch.autograd.Function):
    """y = gpuconv.<name>(x, *args); grad_x = gpuconv.grad.<name>(grad_y, x, *args): through
    LinearPoolGradFunction for the averages (differentiable again), first order otherwise."""

    @staticmethod
    def forward(ctx, x, name, args):
        y, fmt = result_and_layout("pool", (x,), (name, args), lambda: _layout(name, x),
                                   lambda: _pooled(x, name, args))
        ctx.function_name, ctx.args, ctx.data_format = name, args, fmt
        ctx.save_for_backward(x)
        return y

    @staticmethod
    def backward(ctx, grad_out):
        if _is_linear(ctx.function_name, ctx.args):
            (x,) = ctx.saved_tensors
            return apply(LinearPoolGradFunction, grad_out, x.detach(), ctx.function_name,
                         ctx.args, ctx.data_format), None, None
        return _nonlinear_pool_backward(ctx, grad_out)


@first_order_backward
def _nonlinear_pool_backward(ctx, grad_out):
    (x,) = ctx.saved_tensors
    return _pool_gradient(grad_out, x, ctx.function_name, ctx.args, ctx.data_format), None, None


class LinearPoolGradFunction(torch.autograd.Function):
    """The gradient of an average pooling, linear in the output's gradient g (x stands for its
    shape only): its own gradient is the pooling of the incoming one."""

    @staticmethod
    def forward(ctx, grad_out, x, name, args, fmt):
        ctx.function_name, ctx.args = name, args
        return _pool_gradient(grad_out, x, name, args, fmt)

    @staticmethod
    def backward(ctx, gx):
        return apply(PoolFunction, gx, ctx.function_name, ctx.args), None, None, None, None


class MaxPoolFunction(torch.autograd.Function):
    """max_pool2d / adaptive_max_pool2d: (values, indices); the backward pass reuses the indices."""

    @staticmethod
    def forward(ctx, x, name, args):
        (values, indices), fmt = result_and_layout("max_pool", (x,), (name, args),
                                                   lambda: _layout(name, x),
                                                   lambda: _max_pooled(x, name, args))
        ctx.function_name, ctx.args, ctx.data_format = name, args, fmt
        ctx.save_for_backward(x, indices)
        ctx.mark_non_differentiable(indices)
        return values, indices

    @staticmethod
    def backward(ctx, grad_out, _grad_indices):
        x, indices = ctx.saved_tensors
        return apply(MaxPoolGradFunction, grad_out, x.detach(), indices, ctx.function_name,
                     ctx.args, ctx.data_format), None, None


def _gather(values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """values[n, c].flatten()[indices[n, c]] for every index (0 where it is -1, a window of
    padding alone): the transpose of the max poolings' scatter of the gradient."""
    flat = values.flatten(2).gather(2, indices.clamp(min=0).flatten(2)).view(indices.shape)
    return flat.masked_fill(indices < 0, 0)


@computation("max_pool_gradient",
             lambda grad_out, x, indices, name, args, det, fmt: like(x, fmt))
def _max_pool_gradient(grad_out, x, indices, name, args, det, fmt):
    with on_device_of(x.device):
        # the forward's own indices: no scan of their values (no host synchronization)
        grad = WITH_OWN_INDICES[name](
            to_array(grad_out, fmt), to_array(x, fmt), *args, indices=to_array(indices, fmt),
            data_format=fmt, deterministic=det)
    return to_tensor(grad, x.dtype, fmt)


class MaxPoolGradFunction(torch.autograd.Function):
    """The gradient of a max pooling: grad_out scattered to the forward's indices, linear in
    grad_out (x stands for its shape; the indices do not move under a small change of x), so
    its own gradient gathers the incoming one at the same indices."""

    @staticmethod
    def forward(ctx, grad_out, x, indices, name, args, fmt):
        ctx.save_for_backward(indices)
        return compute("max_pool_gradient", (grad_out, x, indices),
                       (name, args, deterministic(), fmt))

    @staticmethod
    def backward(ctx, gx):
        (indices,) = ctx.saved_tensors
        return _gather(gx, indices), None, None, None, None, None


def _describe_max_unpool(x, indices, args, fmt):
    call = pool_api.check_max_unpool2d(stand_in(x, fmt), stand_in(indices, fmt), *args,
                                       data_format=fmt, scan_indices=False)
    return image(call.output_shape, fmt, x.dtype)


@computation("max_unpool", _describe_max_unpool, reads_host=True)
def _max_unpool(x, indices, args, fmt):
    with on_device_of(x.device):
        y = gpuconv.max_unpool2d(to_array(x, fmt), to_array(indices, fmt), *args,
                                 data_format=fmt)
    return to_tensor(y, x.dtype, fmt)


@computation("max_unpool_gradient",
             lambda grad_out, x, indices, args, det, fmt: like(x, fmt), reads_host=True)
def _max_unpool_gradient(grad_out, x, indices, args, det, fmt):
    with on_device_of(x.device):
        grad = gpuconv.grad.max_unpool2d(to_array(grad_out, fmt), to_array(x, fmt),
                                         to_array(indices, fmt), *args, data_format=fmt,
                                         deterministic=det)
    return to_tensor(grad, x.dtype, fmt)


class MaxUnpoolFunction(torch.autograd.Function):
    """Scatter x to its indices; the gradient gathers grad_out at the same indices."""

    @staticmethod
    def forward(ctx, x, indices, args):
        fmt = data_format_for(x)
        common_device({"input": x, "indices": indices})
        ctx.function_name, ctx.args, ctx.data_format = "max_unpool2d", args, fmt
        ctx.save_for_backward(x, indices)
        return compute("max_unpool", (x, indices), (args, fmt))

    @staticmethod
    def backward(ctx, grad_out):
        x, indices = ctx.saved_tensors
        return apply(MaxUnpoolGradFunction, grad_out, x.detach(), indices, ctx.args,
                     ctx.data_format), None, None


class MaxUnpoolGradFunction(torch.autograd.Function):
    """The gradient of max_unpool2d: grad_out gathered at the indices, linear in grad_out (x
    stands for its shape), so its own gradient unpools the incoming one again."""

    @staticmethod
    def forward(ctx, grad_out, x, indices, args, fmt):
        ctx.args = args
        ctx.save_for_backward(indices)
        return compute("max_unpool_gradient", (grad_out, x, indices),
                       (args, deterministic(), fmt))

    @staticmethod
    def backward(ctx, gx):
        (indices,) = ctx.saved_tensors
        return apply(MaxUnpoolFunction, gx, indices, ctx.args), None, None, None, None


def _stride(stride):
    # torch.nn.functional spells "stride = kernel_size" as None or as an empty list.
    if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0):
        return None
    return expand_single(stride)


def _pool(input, name, args):
    if is_unbatched(input):
        return unbatched(apply(PoolFunction, batch_of_one(input), name, args))
    return apply(PoolFunction, input, name, args)


def _max_pool(input, name, args, return_indices):
    if not return_indices and not differentiable(input) and not torch.jit.is_tracing():
        # Values alone: no backward can come to read indices (inference), so none are written
        # (int64: 2x the bytes of float32 values, 4x of half). Not under torch.jit.trace: its
        # check reruns the trace under no_grad and must record the same graph as the traced run.
        return _pool(input, name, args)
    if is_unbatched(input):
        values, indices = apply(MaxPoolFunction, batch_of_one(input), name, args)
        values, indices = unbatched(values), unbatched(indices)
    else:
        values, indices = apply(MaxPoolFunction, input, name, args)
    return (values, indices) if return_indices else values


@dispatches_torch_function
def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """``torch.nn.functional.max_pool2d``: NaN propagates; ties go to the first maximum."""
    return _max_pool(input, "max_pool2d",
                     (expand_single(kernel_size), _stride(stride), expand_single(padding),
                      expand_single(dilation), ceil_mode), return_indices)


@dispatches_torch_function
def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """``torch.nn.functional.avg_pool2d``."""
    return _pool(input, "avg_pool2d", (expand_single(kernel_size), _stride(stride),
                                       expand_single(padding), ceil_mode, count_include_pad,
                                       int_of_scalar_tensor(divisor_override)))


@dispatches_torch_function
def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """``torch.nn.functional.lp_pool2d``: (sum over the window of x ** p) ** (1 / p)."""
    return _pool(input, "lp_pool2d", (_lp_norm_type(norm_type), _lp_kernel_size(kernel_size),
                                      _stride(stride), ceil_mode))


def _lp_norm_type(norm_type):
    """torch's lp_pool2d computes ``x.pow(norm_type)``, which also takes a one-element tensor:
    its float. A tensor requiring grad is refused: no gradient flows to norm_type here."""
    if (isinstance(norm_type, torch.Tensor) and norm_type.numel() == 1
            and not norm_type.is_complex() and norm_type.dtype is not torch.bool):
        if norm_type.requires_grad:
            raise ValueError("norm_type: a tensor that requires grad is not supported "
                             "(gpuconv.torch.lp_pool2d gives no gradient with respect to it)")
        return float(norm_type)
    return norm_type


def _lp_kernel_size(kernel_size):
    """torch's lp_pool2d unpacks ``kw, kh = _pair(kernel_size)``: an int or a pair (0-d integer
    tensors in it read as ints), never the one-element or tensor spellings that max_pool2d and
    avg_pool2d take (torch refuses them: 'not enough values to unpack')."""
    if isinstance(kernel_size, torch.Tensor) or (
            isinstance(kernel_size, (tuple, list)) and len(kernel_size) != 2):
        raise ValueError(f"kernel_size of lp_pool2d must be an int or a pair (h, w), as torch's "
                         f"lp_pool2d unpacks it, got {kernel_size!r}")
    return expand_single(kernel_size)


@dispatches_torch_function
def adaptive_avg_pool2d(input, output_size):
    """``torch.nn.functional.adaptive_avg_pool2d`` (a None in output_size keeps that size)."""
    return _pool(input, "adaptive_avg_pool2d", (output_size_pair(output_size),))


@dispatches_torch_function
def adaptive_max_pool2d(input, output_size, return_indices=False):
    """``torch.nn.functional.adaptive_max_pool2d``."""
    return _max_pool(input, "adaptive_max_pool2d", (output_size_pair(output_size),),
                     return_indices)


@dispatches_torch_function
def global_avg_pool2d(input):
    """Mean over each plane: (N, C, 1, 1) (gpuconv extra; = adaptive_avg_pool2d(input, 1))."""
    return _pool(input, "global_avg_pool2d", ())


@dispatches_torch_function
def global_max_pool2d(input):
    """Max over each plane: (N, C, 1, 1) (gpuconv extra; = adaptive_max_pool2d(input, 1))."""
    return _pool(input, "global_max_pool2d", ())


@dispatches_torch_function
def spatial_pyramid_pool2d(input, levels=(1, 2, 4), mode="max"):
    """(N, C * sum(l * l)): per level l, adaptive ``mode`` ("max" | "avg") pooling to (l, l)
    flattened in (c, i, j) order, the levels concatenated (gpuconv extra; input (N, C, H, W))."""
    check_batched(input)
    return apply(PoolFunction, input, "spatial_pyramid_pool2d", (levels, mode))


@dispatches_torch_function
def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """``torch.nn.functional.max_unpool2d``; output_size: (H, W) or the full (N, C, H, W)."""
    output_size = int_sequence(output_size)
    if output_size is not None and len(output_size) == 4:
        # torch keeps the last two entries; passing (H, W) keeps this independent of the layout.
        output_size = tuple(output_size[2:])
    # kernel_size, stride, padding as torch's _pair reads them (a range is a pair), not
    # expanded: torch refuses the one-element and empty spellings here (gpuconv.max_unpool2d
    # does too, with a ValueError naming the argument).
    args = (int_sequence(kernel_size), int_sequence(stride), int_sequence(padding), output_size)
    # torch's CPU autocast runs max_unpool2d in float32 (its float32 list; CUDA's has no entry)
    cast = autocast_float32(input, device_types=("cpu",))
    if cast is not None:
        input, = cast
    if is_unbatched(input):
        # Checked before the batch dimension is added, so that the errors quote the shapes given.
        common_device({"input": input, "indices": indices})
        if indices.shape != input.shape:
            raise ValueError(f"indices must have the shape of input, {tuple(input.shape)}, got "
                             f"{tuple(indices.shape)}")
        return unbatched(apply(MaxUnpoolFunction, batch_of_one(input), batch_of_one(indices),
                               args))
    return apply(MaxUnpoolFunction, input, indices, args)
