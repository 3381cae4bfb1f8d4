"""``conv2d`` and ``conv_transpose2d`` for torch tensors.

The signatures of ``torch.nn.functional`` plus gpuconv's keyword-only extras (a fused
activation and residual, a forced algorithm); each call is one ``torch.autograd.Function`` whose
backward pass calls ``gpuconv.grad`` (only for the inputs that need a gradient). Unbatched
(C, H, W) inputs are accepted, as torch accepts them.

Double backward (``create_graph=True``: gradient penalties, Hessian-vector products): each
gradient is itself a Function (``Conv2dInputFunction``, ``Conv2dWeightFunction``,
``Conv2dBiasFunction``), bilinear in its operands, whose own gradients are convolutions and
gradients again, so derivatives of any order compose from the same kernels. Outside
``create_graph`` they run as plain calls (``_autograd.apply``: no graph is recorded).
"""
from __future__ import annotations

import torch

import gpuconv
from gpuconv.conv.api import check_conv2d_arguments, check_conv_transpose2d_arguments

from ._args import expand_single, int_of_scalar_tensor, int_sequence, is_unbatched
from ._autocast import autocast_operands
from ._autograd import apply, deterministic
from ._bridge import (TO_NHWC, batch_of_one, common_device, is_channels_last, on_device_of,
                      to_array, to_tensor, unbatched)
from ._custom_op import (Result, compute, computation, image, result_and_layout,
                         stand_in)
from ._overrides import dispatches_torch_function
from ._plans import BridgeCall

__all__ = ["conv2d", "conv_transpose2d"]


def _relu_grad(g, y):
    # As torch's threshold_backward: no gradient where the output is <= 0.
    return g.masked_fill(y <= 0, 0)


# d activation / d pre-activation, written in terms of the activation's output y.
ACTIVATION_GRADIENTS = {
    None: lambda g, y: g,
    "relu": _relu_grad,
    "tanh": lambda g, y: g * (1 - y * y),
    "sigmoid": lambda g, y: g * (y * (1 - y)),
}


def _unbatched_conv(y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The (C, H, W) result of an unbatched convolution from its batch of one. torch's is its
    batched result squeezed: laid out HWC when the weight is channels_last (the batched result
    is channels_last then), contiguous otherwise (the poolings' is always contiguous)."""
    return y.squeeze(0) if is_channels_last(weight) else unbatched(y)


def _layout_shape(t: torch.Tensor, data_format: str) -> tuple[int, ...]:
    return tuple(t.permute(*TO_NHWC).shape) if data_format == "NHWC" else tuple(t.shape)


def conv_data_format(x: torch.Tensor, weight: torch.Tensor) -> str:
    """The layout conv2d runs in: NHWC when the input or the weight is channels_last, as torch's
    convolutions choose their output's memory format (a model moved to channels_last fed NCHW
    images gives channels_last activations)."""
    return "NHWC" if is_channels_last(x) or is_channels_last(weight) else "NCHW"


def _conv_options(geometry) -> dict:
    """Conv2dFunction's options of a plain convolution (no epilogue) of ``geometry``, (stride,
    padding, dilation, groups)."""
    stride, padding, dilation, groups = geometry
    return dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                activation=None, algorithm="auto")


def _conv2d(x, weight, bias, residual, options, fmt=None):
    """(conv2d's result, the layout it ran in): ``fmt``, or where None the layout a call of
    this signature ran in before, or ``conv_data_format``'s."""
    call = BridgeCall("conv2d", {"x": x, "weight": weight, "bias": bias,
                                 "residual": residual}, tuple(options.values()))
    device, fmt = call.place(lambda: (_conv2d_device(x, weight, bias, residual),
                                      fmt or conv_data_format(x, weight)))
    with on_device_of(device):
        y = call.run(fmt, ("x", "residual"), lambda a: gpuconv.conv2d(
            a["x"], a["weight"], a["bias"], options["stride"], options["padding"],
            options["dilation"], options["groups"], activation=options["activation"],
            residual=a["residual"], algorithm=options["algorithm"], data_format=fmt))
    return to_tensor(y, x.dtype, fmt), fmt


def _conv2d_device(x, weight, bias, residual):
    return common_device({"input": x, "weight": weight, "bias": bias, "residual": residual})


def _conv2d_layout(x, weight, bias, residual) -> str:
    """conv2d's layout, its tensors' device checked first (they may not be tensors)."""
    _conv2d_device(x, weight, bias, residual)
    return conv_data_format(x, weight)


def _describe_conv2d(x, weight, bias, residual, options, fmt):
    _conv2d_device(x, weight, bias, residual)
    _, geom, *_ = check_conv2d_arguments(
        stand_in(x, fmt), stand_in(weight), stand_in(bias), options["stride"],
        options["padding"], options["dilation"], options["groups"],
        activation=options["activation"], residual=stand_in(residual, fmt),
        algorithm=options["algorithm"], data_format=fmt)
    return Result(geom.output_shape, x.dtype, fmt == "NHWC")


@computation("conv2d", _describe_conv2d)
def _conv2d_in_layout(x, weight, bias, residual, options, fmt):
    return _conv2d(x, weight, bias, residual, options, fmt)[0]


class Conv2dFunction(torch.autograd.Function):
    """y = activation(conv2d(x, weight) + bias + residual); gradients for all four tensors."""

    @staticmethod
    def forward(ctx, x, weight, bias, residual, options):
        out, fmt = result_and_layout(
            "conv2d", (x, weight, bias, residual), (options,),
            lambda: _conv2d_layout(x, weight, bias, residual),
            lambda: _conv2d(x, weight, bias, residual, options))
        ctx.function_name, ctx.options, ctx.data_format = "conv2d", options, fmt
        # The activation's derivative is a function of its output.
        ctx.save_for_backward(x, weight, out if options["activation"] is not None else None)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, y = ctx.saved_tensors
        o, fmt = ctx.options, ctx.data_format
        need_x, need_w, need_b, need_r = ctx.needs_input_grad[:4]
        g = ACTIVATION_GRADIENTS[o["activation"]](grad_out, y)
        geometry = (o["stride"], o["padding"], o["dilation"], o["groups"])
        grad_x = grad_w = grad_b = None
        if need_x:
            grad_x = apply(Conv2dInputFunction, g, weight, _layout_shape(x, fmt), geometry, fmt)
        if need_w:
            grad_w = apply(Conv2dWeightFunction, x, g, tuple(weight.shape), geometry, fmt)
        if need_b:
            grad_b = apply(Conv2dBiasFunction, g, fmt)
        return grad_x, grad_w, grad_b, (g if need_r else None), None


# The gradients' computations: each one's arguments come from a forward that was checked.

@computation("conv2d_input", lambda g, weight, x_shape, geometry, det, fmt:
             image(x_shape, fmt, g.dtype))
def _conv2d_input(g, weight, x_shape, geometry, det, fmt):
    # A BridgeCall: its scalars hold the layout, which came from the forward's tensors.
    call = BridgeCall("conv2d_input", {"grad_output": g, "weight": weight},
                      (x_shape, *geometry, det, fmt))
    with on_device_of(g.device):
        dx = call.run(fmt, ("grad_output",), lambda a: gpuconv.grad.conv2d_input(
            x_shape, a["weight"], a["grad_output"], *geometry, deterministic=det,
            data_format=fmt))
    return to_tensor(dx, g.dtype, fmt)


@computation("conv2d_weight", lambda x, g, w_shape, geometry, det, fmt:
             Result(w_shape, x.dtype, fmt == "NHWC"))
def _conv2d_weight(x, g, w_shape, geometry, det, fmt):
    call = BridgeCall("conv2d_weight", {"x": x, "grad_output": g}, (w_shape, *geometry, det, fmt))
    with on_device_of(g.device):
        dw = call.run(fmt, ("x", "grad_output"), lambda a: gpuconv.grad.conv2d_weight(
            a["x"], w_shape, a["grad_output"], *geometry, deterministic=det, data_format=fmt))
    dw = to_tensor(dw, x.dtype)
    if fmt == "NHWC":
        # torch's weight gradient of a channels_last convolution is channels_last (a
        # parameter's .grad takes the parameter's layout either way). empty_like, not
        # .contiguous(): the strides of the result torch.compile's fake one has, also where
        # sizes of 1 leave the KCRS result channels_last-contiguous already.
        dw = torch.empty_like(dw, memory_format=torch.channels_last).copy_(dw)
    return dw


@computation("conv2d_bias", lambda g, det, fmt: Result((g.shape[1],), g.dtype))
def _conv2d_bias(g, det, fmt):
    call = BridgeCall("conv2d_bias", {"grad_output": g}, (det, fmt))
    with on_device_of(g.device):
        db = call.run(fmt, ("grad_output",), lambda a: gpuconv.grad.conv2d_bias(
            a["grad_output"], deterministic=det, data_format=fmt))
    return to_tensor(db, g.dtype)


class Conv2dInputFunction(torch.autograd.Function):
    """grad_x = grad.conv2d_input(x_shape, weight, g), bilinear in (g, weight): for a gradient
    gx of it, d/dg = conv2d(gx, weight) and d/dweight = grad.conv2d_weight(gx, ..., g)."""

    @staticmethod
    def forward(ctx, g, weight, x_shape, geometry, fmt):
        ctx.geometry, ctx.data_format = geometry, fmt
        ctx.save_for_backward(g, weight)
        return compute("conv2d_input", (g, weight), (x_shape, geometry, deterministic(), fmt))

    @staticmethod
    def backward(ctx, gx):
        g, weight = ctx.saved_tensors
        geometry, fmt = ctx.geometry, ctx.data_format
        need_g, need_w = ctx.needs_input_grad[:2]
        grad_g = grad_w = None
        if need_g:
            grad_g = apply(Conv2dFunction, gx, weight, None, None, _conv_options(geometry))
        if need_w:
            grad_w = apply(Conv2dWeightFunction, gx, g, tuple(weight.shape), geometry, fmt)
        return grad_g, grad_w, None, None, None


class Conv2dWeightFunction(torch.autograd.Function):
    """grad_weight = grad.conv2d_weight(x, w_shape, g), bilinear in (x, g): for a gradient gw of
    it, d/dx = grad.conv2d_input(..., gw, g) and d/dg = conv2d(x, gw)."""

    @staticmethod
    def forward(ctx, x, g, w_shape, geometry, fmt):
        ctx.geometry, ctx.data_format = geometry, fmt
        ctx.save_for_backward(x, g)
        return compute("conv2d_weight", (x, g), (w_shape, geometry, deterministic(), fmt))

    @staticmethod
    def backward(ctx, gw):
        x, g = ctx.saved_tensors
        geometry, fmt = ctx.geometry, ctx.data_format
        need_x, need_g = ctx.needs_input_grad[:2]
        grad_x = grad_g = None
        if need_x:
            grad_x = apply(Conv2dInputFunction, g, gw, _layout_shape(x, fmt), geometry, fmt)
        if need_g:
            grad_g = apply(Conv2dFunction, x, gw, None, None, _conv_options(geometry))
        return grad_x, grad_g, None, None, None


class Conv2dBiasFunction(torch.autograd.Function):
    """grad_bias = grad.conv2d_bias(g), the sum of g over all but its channels: linear, its own
    gradient broadcasts back over them."""

    @staticmethod
    def forward(ctx, g, fmt):
        ctx.shape = g.shape
        return compute("conv2d_bias", (g,), (deterministic(), fmt))

    @staticmethod
    def backward(ctx, gb):
        return gb.view(1, -1, 1, 1).expand(ctx.shape), None


@dispatches_torch_function
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           activation=None, residual=None, algorithm="auto"):
    """``torch.nn.functional.conv2d`` on gpuconv's kernels, with a fused epilogue:
    ``activation(conv2d(input, weight) + bias + residual)``.

    activation: None, "relu", "tanh", "sigmoid". residual: a tensor of the output's shape.
    algorithm: "auto" or one of ``gpuconv.conv_algorithms``. padding may also be
    ((top, bottom), (left, right)), and "same" works with any stride (extra padding at the
    bottom/right, as TensorFlow; torch allows "same" only with stride 1).
    """
    options = dict(stride=expand_single(stride), padding=expand_single(padding),
                   dilation=expand_single(dilation), groups=int_of_scalar_tensor(groups),
                   activation=activation, algorithm=algorithm)
    # Under torch.autocast the fused residual is cast with the other operands: the one output
    # is in the region's dtype.
    input, weight, bias, residual = autocast_operands(input, weight, bias, residual)
    if is_unbatched(input):
        # named before the batch dimension is added (a non-tensor residual has no unsqueeze)
        common_device({"input": input, "weight": weight, "bias": bias, "residual": residual})
        if residual is not None:
            residual = residual.unsqueeze(0)
        return _unbatched_conv(apply(Conv2dFunction, batch_of_one(input, is_channels_last(weight)),
                                     weight, bias, residual, options), weight)
    return apply(Conv2dFunction, input, weight, bias, residual, options)


def _describe_conv_transpose2d(x, weight, bias, options, fmt):
    _, geom = check_conv_transpose2d_arguments(
        stand_in(x, fmt), stand_in(weight), stand_in(bias), options["stride"],
        options["padding"], options["output_padding"], options["groups"], options["dilation"],
        output_size=_spatial_output_size(options["output_size"]), data_format=fmt)
    return Result(geom.input_shape, x.dtype, fmt == "NHWC")


def _spatial_output_size(output_size):
    if output_size is not None and len(output_size) == 4:
        return tuple(output_size)[2:]    # torch's (N, C, H, W): only (H, W) count
    return output_size


@computation("conv_transpose2d", _describe_conv_transpose2d)
def _conv_transpose2d(x, weight, bias, options, fmt):
    with on_device_of(x.device):
        y = gpuconv.conv_transpose2d(to_array(x, fmt), to_array(weight), to_array(bias),
                                     options["stride"], options["padding"],
                                     options["output_padding"], options["groups"],
                                     options["dilation"],
                                     output_size=_spatial_output_size(options["output_size"]),
                                     data_format=fmt)
    return to_tensor(y, x.dtype, fmt)


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _extra_rows_and_columns(y, x, weight, options) -> tuple:
    """How many more rows and columns the forward convolution of a transposed convolution's
    result ``y`` has than its input ``x``: with output_padding >= stride (legal while it is
    < dilation) those outputs correspond to no input. Plain arithmetic on the checked
    arguments, which torch.compile traces (a symbolic size stays one)."""
    (sh, sw), (ph, pw) = _pair(options["stride"]), _pair(options["padding"])
    dh, dw = _pair(options["dilation"])
    rows = (y.shape[2] + 2 * ph - dh * (weight.shape[2] - 1) - 1) // sh + 1
    columns = (y.shape[3] + 2 * pw - dw * (weight.shape[3] - 1) - 1) // sw + 1
    return rows - x.shape[2], columns - x.shape[3]


class ConvTranspose2dFunction(torch.autograd.Function):
    """The transposed convolution, differentiated through the forward convolution it transposes:
    grad_x = conv2d(grad_out, weight), grad_weight = grad.conv2d_weight(grad_out, ..., x)."""

    @staticmethod
    def forward(ctx, x, weight, bias, options):
        common_device({"input": x, "weight": weight, "bias": bias})
        fmt = conv_data_format(x, weight)
        ctx.function_name, ctx.options, ctx.data_format = "conv_transpose2d", options, fmt
        ctx.save_for_backward(x, weight)
        return compute("conv_transpose2d", (x, weight, bias), (options, fmt))

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        o, fmt = ctx.options, ctx.data_format
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        geometry = (o["stride"], o["padding"], o["dilation"], o["groups"])
        extra_h, extra_w = _extra_rows_and_columns(grad_out, x, weight, o)
        grad_x = grad_w = grad_b = None
        if need_x:
            # In the forward's layout (grad_out may come NCHW from a channels_last forward), and
            # dense as torch's where the rows and columns past x's are cut off. A grad_out of
            # one channel is NCHW-contiguous in either layout, so the convolution computes it
            # NCHW: a channels_last forward's gradient is made channels_last after it.
            memory_format = torch.channels_last if fmt == "NHWC" else torch.contiguous_format
            full = apply(Conv2dFunction, grad_out.contiguous(memory_format=memory_format),
                         weight, None, None, _conv_options(geometry))
            grad_x = full[:, :, :x.shape[2], :x.shape[3]]
            if extra_h or extra_w or fmt == "NHWC":
                grad_x = grad_x.contiguous(memory_format=memory_format)
        if need_w:
            x_full = x
            if extra_h or extra_w:
                x_full = torch.nn.functional.pad(x, (0, extra_w, 0, extra_h))
            grad_w = apply(Conv2dWeightFunction, grad_out, x_full, tuple(weight.shape), geometry,
                           fmt)
        if need_b:
            grad_b = apply(Conv2dBiasFunction, grad_out, fmt)
        return grad_x, grad_w, grad_b, None


@dispatches_torch_function
def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, output_size=None):
    """``torch.nn.functional.conv_transpose2d`` on gpuconv's kernels; weight (C_in, K/groups,
    R, S). ``output_size`` ((H, W) or (N, C, H, W)) picks the output padding as
    ``torch.nn.ConvTranspose2d.forward(input, output_size)`` does."""
    options = dict(stride=expand_single(stride), padding=expand_single(padding),
                   output_padding=expand_single(output_padding),
                   groups=int_of_scalar_tensor(groups),
                   dilation=expand_single(dilation))
    options["output_size"] = output_size = int_sequence(output_size)
    if output_size is not None and not isinstance(output_size, (tuple, list)):
        # gpuconv's own message, before the len() below and in _spatial_output_size
        raise TypeError(f"output_size must be None or a sequence of 2 or 4 ints, got "
                        f"{type(output_size).__name__}")
    input, weight, bias = autocast_operands(input, weight, bias)
    if is_unbatched(input):
        if output_size is not None and len(output_size) not in (2, 3):
            raise ValueError(f"output_size for an unbatched (C, H, W) input must have 2 or 3 "
                             f"elements, (H, W) or (C, H, W), as torch's; got {len(output_size)}: "
                             f"{tuple(output_size)!r}")
        if output_size is not None and len(output_size) == 3:
            options["output_size"] = (1, *output_size)
        return _unbatched_conv(apply(ConvTranspose2dFunction,
                                     batch_of_one(input, is_channels_last(weight)), weight, bias,
                                     options), weight)
    return apply(ConvTranspose2dFunction, input, weight, bias, options)
