"""The pooling functions on JAX arrays, differentiable through ``jax.custom_vjp``.

Every gpuconv pooling gradient is ``grad.F(grad_output, x, <F's own arguments>)``, so one
differentiable wrapper serves the poolings without indices (``_pool``); max poolings keep their
forward indices for the backward pass (``_max_pool``). Each wrapper first runs the pooling
front's own checks (``gpuconv.pool.api.check_*``) on a stand-in of x, so that an invalid call
fails when traced with the error eager mode gives; they also give the output shape, which
``jax.jit`` needs before anything runs.
"""
from __future__ import annotations

import jax
import numpy as np

import gpuconv
from gpuconv.pool import api
from gpuconv.pool.grad import WITH_OWN_INDICES

from ._bridge import (as_int64, call, check_indices, check_kernel_sizes, differentiable_call,
                      spec, spec_like, stand_in)

__all__ = ["max_pool2d", "avg_pool2d", "lp_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
           "global_avg_pool2d", "global_max_pool2d", "spatial_pyramid_pool2d", "max_unpool2d"]


def _checked(check, x, *args, data_format, **kwargs):
    """The pooling front's own checks (gpuconv.pool.api.check_*), on a stand-in of x: an
    invalid call fails here, when traced, with the error eager mode gives."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"x must be a JAX array, got {type(x).__name__}")
    return check(stand_in(x), *args, data_format=data_format, **kwargs)


def _pool(name, x, args, out_shape, data_format):
    """y = gpuconv.<name>(x, *args); its vjp is gpuconv.grad.<name>(g, x, *args)."""
    check_kernel_sizes(x, out_shape)
    out_spec = spec(out_shape, x.dtype)

    @jax.custom_vjp
    def f(x):
        return call(lambda x: getattr(gpuconv, name)(x, *args, data_format=data_format),
                    out_spec, x)

    def f_fwd(x):
        return f(x), x

    def f_bwd(x, g):
        return (call(lambda g, x: getattr(gpuconv.grad, name)(g, x, *args,
                                                              data_format=data_format),
                     spec_like(x), g, x),)

    f.defvjp(f_fwd, f_bwd)
    return differentiable_call(f, x)


def _max_pool(name, x, args, out_shape, data_format, return_indices):
    check_kernel_sizes(x, out_shape)
    out_specs = (spec(out_shape, x.dtype), spec(out_shape, np.int64))

    def forward(x):
        return getattr(gpuconv, name)(x, *args, return_indices=True, data_format=data_format)

    @jax.custom_vjp
    def f(x):
        return call(forward, out_specs, x)

    def f_fwd(x):
        values, indices = f(x)
        return (values, indices), (x, indices)

    def f_bwd(saved, grads):
        x, indices = saved
        # the forward's own indices: no scan of their values (no host synchronization)
        return (call(lambda g, x, i: WITH_OWN_INDICES[name](
            g, x, *args, indices=as_int64(i), data_format=data_format),
            spec_like(x), grads[0], x, indices),)

    f.defvjp(f_fwd, f_bwd)
    values, indices = differentiable_call(f, x)
    return (values, indices) if return_indices else values


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, data_format="NCHW"):
    """``gpuconv.max_pool2d`` on a JAX array, differentiable (``jax.grad``, ``jax.vjp``) and
    traceable under ``jax.jit`` (the computation runs in a callback on XLA's buffers). With
    ``return_indices``: (values, indices of JAX's default integer dtype: int32 unless
    jax_enable_x64); the indices carry no gradient."""
    args = (kernel_size, stride, padding, dilation, ceil_mode)
    checked = _checked(api.check_max_pool2d, x, *args, return_indices, data_format=data_format)
    return _max_pool("max_pool2d", x, args, checked.output_shape, data_format,
                     checked.options["return_indices"])


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, data_format="NCHW"):
    """``gpuconv.avg_pool2d`` on a JAX array, differentiable (``jax.grad``, ``jax.vjp``) and
    traceable under ``jax.jit`` (the computation runs in a callback on XLA's buffers)."""
    args = (kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
    checked = _checked(api.check_avg_pool2d, x, *args, data_format=data_format)
    return _pool("avg_pool2d", x, args, checked.output_shape, data_format)


def lp_pool2d(x, norm_type, kernel_size, stride=None, ceil_mode=False, *, data_format="NCHW"):
    """``gpuconv.lp_pool2d`` on a JAX array, differentiable (``jax.grad``, ``jax.vjp``) and
    traceable under ``jax.jit`` (the computation runs in a callback on XLA's buffers)."""
    args = (norm_type, kernel_size, stride, ceil_mode)
    checked = _checked(api.check_lp_pool2d, x, *args, data_format=data_format)
    return _pool("lp_pool2d", x, args, checked.output_shape, data_format)


def adaptive_avg_pool2d(x, output_size, *, data_format="NCHW"):
    """``gpuconv.adaptive_avg_pool2d`` on a JAX array, differentiable (``jax.grad``, ``jax.vjp``)
    and traceable under ``jax.jit`` (the computation runs in a callback on XLA's buffers)."""
    checked = _checked(api.check_adaptive_avg_pool2d, x, output_size, data_format=data_format)
    return _pool("adaptive_avg_pool2d", x, (output_size,), checked.output_shape, data_format)


def adaptive_max_pool2d(x, output_size, return_indices=False, *, data_format="NCHW"):
    """``gpuconv.adaptive_max_pool2d`` on a JAX array, differentiable (``jax.grad``, ``jax.vjp``)
    and traceable under ``jax.jit`` (the computation runs in a callback on XLA's buffers). With
    ``return_indices``: (values, indices of JAX's default integer dtype: int32 unless
    jax_enable_x64); the indices carry no gradient."""
    checked = _checked(api.check_adaptive_max_pool2d, x, output_size, return_indices,
                       data_format=data_format)
    return _max_pool("adaptive_max_pool2d", x, (output_size,), checked.output_shape, data_format,
                     checked.options["return_indices"])


def global_avg_pool2d(x, *, data_format="NCHW"):
    """``gpuconv.global_avg_pool2d`` on a JAX array, differentiable (``jax.grad``, ``jax.vjp``) and
    traceable under ``jax.jit`` (the computation runs in a callback on XLA's buffers)."""
    checked = _checked(api.check_global_avg_pool2d, x, data_format=data_format)
    return _pool("global_avg_pool2d", x, (), checked.output_shape, data_format)


def global_max_pool2d(x, *, data_format="NCHW"):
    """``gpuconv.global_max_pool2d`` on a JAX array, differentiable (``jax.grad``, ``jax.vjp``) and
    traceable under ``jax.jit`` (the computation runs in a callback on XLA's buffers)."""
    checked = _checked(api.check_global_pool2d, x, data_format=data_format)
    return _pool("global_max_pool2d", x, (), checked.output_shape, data_format)


def spatial_pyramid_pool2d(x, levels=(1, 2, 4), mode="max", *, data_format="NCHW"):
    """``gpuconv.spatial_pyramid_pool2d`` on a JAX array, differentiable (``jax.grad``,
    ``jax.vjp``) and traceable under ``jax.jit`` (the computation runs in a callback on XLA's
    buffers)."""
    checked = _checked(api.check_spatial_pyramid_pool2d, x, levels, mode, data_format=data_format)
    return _pool("spatial_pyramid_pool2d", x, (levels, mode), checked.output_shape, data_format)


def max_unpool2d(x, indices, kernel_size, stride=None, padding=0, output_size=None, *,
                 data_format="NCHW"):
    """Differentiable with respect to x (the indices are integers)."""
    check_indices(indices)
    args = (kernel_size, stride, padding, output_size)
    # the indices' values are read when the call runs (as int64: their dtype is not checked here)
    checked = _checked(api.check_max_unpool2d, x, stand_in(indices, np.int64), *args,
                       data_format=data_format, scan_indices=False)
    check_kernel_sizes(x, checked.output_shape)
    out_spec = spec(checked.output_shape, x.dtype)

    @jax.custom_vjp
    def f(x, indices):
        return call(lambda x, i: gpuconv.max_unpool2d(x, as_int64(i), *args,
                                                      data_format=data_format),
                    out_spec, x, indices)

    def f_fwd(x, indices):
        return f(x, indices), (x, indices)

    def f_bwd(saved, g):
        x, indices = saved
        grad_x = call(lambda g, x, i: gpuconv.grad.max_unpool2d(g, x, as_int64(i), *args,
                                                                data_format=data_format),
                      spec_like(x), g, x, indices)
        # Integer inputs take float0 cotangents.
        return grad_x, np.zeros(indices.shape, dtype=jax.dtypes.float0)

    f.defvjp(f_fwd, f_bwd)
    return differentiable_call(f, x, indices)
