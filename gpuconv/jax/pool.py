"""The pooling functions on JAX arrays, differentiable through ``jax.custom_vjp``.

Every gpuconv pooling gradient is ``grad.F(grad_output, x, <F's own arguments>)``, so one
differentiable wrapper serves the poolings without indices (``_pool``); max poolings keep their
forward indices for the backward pass (``_max_pool``). The output shapes, which ``jax.jit``
needs before anything runs, come from the same geometry code the pooling functions validate with.
"""
from __future__ import annotations

import jax
import numpy as np

import gpuconv
from gpuconv.pool.grad import WITH_OWN_INDICES
from gpuconv.pool.geometry import (adaptive_pool2d_geometry, check_data_format, layout_shape,
                                   max_unpool2d_geometry, nchw_shape, pool2d_geometry,
                                   spatial_pyramid_geometry)

from ._bridge import as_int64, call, check_float_arrays, check_indices, spec, spec_like

__all__ = ["max_pool2d", "avg_pool2d", "lp_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
           "global_avg_pool2d", "global_max_pool2d", "spatial_pyramid_pool2d", "max_unpool2d"]


def _nchw(x, data_format):
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"x must be a JAX array, got {type(x).__name__}")
    if len(x.shape) != 4:
        raise ValueError(f"x must be 4-D, got shape {tuple(x.shape)}")
    check_float_arrays(x=x)
    return nchw_shape(x.shape, check_data_format(data_format))


def _pool(name, x, args, out_shape, data_format):
    """y = gpuconv.<name>(x, *args); its vjp is gpuconv.grad.<name>(g, x, *args)."""
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
    return f(x)


def _max_pool(name, x, args, out_shape, data_format, return_indices):
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
    values, indices = f(x)
    return (values, indices) if return_indices else values


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, data_format="NCHW"):
    geom = pool2d_geometry(_nchw(x, data_format), kernel_size, stride, padding, dilation, ceil_mode)
    return _max_pool("max_pool2d", x, (kernel_size, stride, padding, dilation, ceil_mode),
                     layout_shape(geom.output_shape, data_format), data_format, return_indices)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, data_format="NCHW"):
    geom = pool2d_geometry(_nchw(x, data_format), kernel_size, stride, padding, 1, ceil_mode)
    return _pool("avg_pool2d", x, (kernel_size, stride, padding, ceil_mode, count_include_pad,
                                   divisor_override),
                 layout_shape(geom.output_shape, data_format), data_format)


def lp_pool2d(x, norm_type, kernel_size, stride=None, ceil_mode=False, *, data_format="NCHW"):
    geom = pool2d_geometry(_nchw(x, data_format), kernel_size, stride, 0, 1, ceil_mode)
    return _pool("lp_pool2d", x, (norm_type, kernel_size, stride, ceil_mode),
                 layout_shape(geom.output_shape, data_format), data_format)


def adaptive_avg_pool2d(x, output_size, *, data_format="NCHW"):
    geom = adaptive_pool2d_geometry(_nchw(x, data_format), output_size)
    return _pool("adaptive_avg_pool2d", x, (output_size,),
                 layout_shape(geom.output_shape, data_format), data_format)


def adaptive_max_pool2d(x, output_size, return_indices=False, *, data_format="NCHW"):
    geom = adaptive_pool2d_geometry(_nchw(x, data_format), output_size)
    return _max_pool("adaptive_max_pool2d", x, (output_size,),
                     layout_shape(geom.output_shape, data_format), data_format, return_indices)


def _global_shape(x, data_format):
    n, c, _, _ = _nchw(x, data_format)
    return layout_shape((n, c, 1, 1), data_format)


def global_avg_pool2d(x, *, data_format="NCHW"):
    return _pool("global_avg_pool2d", x, (), _global_shape(x, data_format), data_format)


def global_max_pool2d(x, *, data_format="NCHW"):
    return _pool("global_max_pool2d", x, (), _global_shape(x, data_format), data_format)


def spatial_pyramid_pool2d(x, levels=(1, 2, 4), mode="max", *, data_format="NCHW"):
    geom = spatial_pyramid_geometry(_nchw(x, data_format), levels, mode)
    return _pool("spatial_pyramid_pool2d", x, (levels, mode), geom.output_shape, data_format)


def max_unpool2d(x, indices, kernel_size, stride=None, padding=0, output_size=None, *,
                 data_format="NCHW"):
    """Differentiable with respect to x (the indices are integers)."""
    check_indices(indices)
    geom = max_unpool2d_geometry(_nchw(x, data_format), kernel_size, stride, padding, output_size,
                                 data_format)
    args = (kernel_size, stride, padding, output_size)
    out_spec = spec(layout_shape(geom.input_shape, data_format), x.dtype)

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
    return f(x, indices)
