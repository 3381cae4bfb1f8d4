"""``conv2d`` and ``conv_transpose2d`` on JAX arrays, differentiable through ``jax.custom_vjp``
whose backward rule calls ``gpuconv.grad`` (see ``_bridge`` for where each call runs)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

import gpuconv
from gpuconv.conv.api import check_conv2d_arguments, check_conv_transpose2d_arguments
from gpuconv.conv.geometry import layout_shape

from ._bridge import call, differentiable_call, on_gpu, spec, spec_like, stand_in

__all__ = ["conv2d", "conv_transpose2d", "explain"]

# d activation / d pre-activation in terms of the activation's output y.
ACTIVATION_GRADIENTS = {
    None: lambda g, y: g,
    # Zero where y <= 0 only: a NaN output passes its gradient through, as torch's
    # threshold_backward (and gpuconv.torch) do.
    "relu": lambda g, y: jnp.where(y <= 0, jnp.zeros_like(g), g),
    "tanh": lambda g, y: g * (1 - y * y),
    "sigmoid": lambda g, y: g * (y * (1 - y)),
}


def _stand_ins(**arrays):
    """Stand-ins of a call's arrays (None where optional: all but x and weight), in order, for
    its checks; anything else than an array is refused here, naming JAX arrays (gpuconv's own
    checks would ask for NumPy or CuPy ones)."""
    for name, a in arrays.items():
        if a is None and name not in ("x", "weight"):
            continue
        if not hasattr(a, "shape") or not hasattr(a, "dtype"):
            optional = "" if name in ("x", "weight") else " or None"
            raise TypeError(f"{name} must be a JAX array{optional}, got {type(a).__name__}")
    return [stand_in(a) for a in arrays.values()]


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, activation=None,
           residual=None, algorithm="auto", data_format="NCHW"):
    """``gpuconv.conv2d`` on JAX arrays: ``activation(conv2d(x, weight) + bias + residual)``,
    differentiable with respect to x, weight, bias and residual."""
    geometry = (stride, padding, dilation, groups)
    # conv2d's own checks, when traced rather than inside a callback (see _bridge)
    x_in, weight_in, bias_in, residual_in = _stand_ins(x=x, weight=weight, bias=bias,
                                                       residual=residual)
    _, geom, activation, algorithm, fmt = check_conv2d_arguments(
        x_in, weight_in, bias_in, *geometry, activation=activation, residual=residual_in,
        algorithm=algorithm, data_format=data_format)
    out_spec = spec(layout_shape(geom.output_shape, fmt), x.dtype)

    def forward(x, weight, bias, residual):
        return gpuconv.conv2d(x, weight, bias, *geometry, activation=activation,
                              residual=residual, algorithm=algorithm, data_format=data_format)

    @jax.custom_vjp
    def f(x, weight, bias, residual):
        return call(forward, out_spec, x, weight, bias, residual)

    def f_fwd(x, weight, bias, residual):
        y = f(x, weight, bias, residual)
        return y, (x, weight, y)

    def f_bwd(saved, grad_y):
        x, weight, y = saved
        g = ACTIVATION_GRADIENTS[activation](grad_y, y)
        grad_x = call(lambda w, g: gpuconv.grad.conv2d_input(x.shape, w, g, *geometry,
                                                             data_format=data_format),
                      spec_like(x), weight, g)
        grad_w = call(lambda x, g: gpuconv.grad.conv2d_weight(x, weight.shape, g, *geometry,
                                                              data_format=data_format),
                      spec_like(weight), x, g)
        grad_b = None if bias is None else call(
            lambda g: gpuconv.grad.conv2d_bias(g, data_format=data_format), spec_like(bias), g)
        return grad_x, grad_w, grad_b, (None if residual is None else g)

    f.defvjp(f_fwd, f_bwd)
    return differentiable_call(f, x, weight, bias, residual)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, output_size=None, data_format="NCHW"):
    """``gpuconv.conv_transpose2d`` on JAX arrays (weight (C_in, K/groups, R, S); x and the
    result in ``data_format``, as gpuconv's), differentiable with respect to x, weight and bias
    through the forward convolution it transposes."""
    geometry = (stride, padding, dilation, groups)
    _, geom = check_conv_transpose2d_arguments(*_stand_ins(x=x, weight=weight, bias=bias),
                                               stride, padding, output_padding, groups,
                                               dilation, output_size=output_size,
                                               data_format=data_format)
    nhwc = data_format == "NHWC"     # checked above
    out_spec = spec(layout_shape(geom.input_shape, data_format), x.dtype)
    # With output_padding >= stride (legal while < dilation) the forward convolution of the
    # output has more rows/columns than x; those correspond to no input.
    forward_shape = gpuconv.conv2d_output_shape(out_spec.shape, weight.shape, *geometry,
                                                data_format=data_format)
    rows, cols = (1, 2) if nhwc else (2, 3)
    extra = [(0, 0)] * 4
    extra[rows] = (0, forward_shape[rows] - x.shape[rows])
    extra[cols] = (0, forward_shape[cols] - x.shape[cols])

    def forward(x, weight, bias):
        return gpuconv.conv_transpose2d(x, weight, bias, stride, padding, output_padding, groups,
                                        dilation, output_size=output_size,
                                        data_format=data_format)

    @jax.custom_vjp
    def f(x, weight, bias):
        return call(forward, out_spec, x, weight, bias)

    def f_fwd(x, weight, bias):
        return f(x, weight, bias), (x, weight)

    def f_bwd(saved, g):
        x, weight = saved
        full = call(lambda g, w: gpuconv.conv2d(g, w, None, *geometry, data_format=data_format),
                    spec(forward_shape, x.dtype), g, weight)
        grad_x = jax.lax.slice(full, (0, 0, 0, 0), x.shape)
        x_full = jnp.pad(x, extra)
        grad_w = call(lambda g, x: gpuconv.grad.conv2d_weight(g, weight.shape, x, *geometry,
                                                              data_format=data_format),
                      spec_like(weight), g, x_full)
        grad_b = None if bias is None else call(
            lambda g: gpuconv.grad.conv2d_bias(g, data_format=data_format), spec_like(bias), g)
        return grad_x, grad_w, grad_b

    f.defvjp(f_fwd, f_bwd)
    return differentiable_call(f, x, weight, bias)


def explain(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, activation=None,
            residual=None, algorithm="auto", data_format="NCHW"):
    """``gpuconv.explain`` for ``conv2d`` on these JAX arrays: what it runs, and why (gpuconv's
    own refuses JAX arrays and points here). Concrete GPU arrays are explained as the CUDA
    kernels run them; CPU and traced arrays as the host runs them (the NumPy reference, or the
    kernels inside ``gpuconv.simulate()``)."""
    arrays = _stand_ins(x=x, weight=weight, bias=bias, residual=residual)
    options = dict(activation=activation, algorithm=algorithm, data_format=data_format)
    if on_gpu(x):   # shapes stand for arrays on the GPU
        return gpuconv.explain(x.shape, weight.shape, arrays[2], stride, padding, dilation,
                               groups, residual=arrays[3], dtype=arrays[0].dtype, **options)
    return gpuconv.explain(arrays[0], arrays[1], arrays[2], stride, padding, dilation, groups,
                           residual=arrays[3], **options)
