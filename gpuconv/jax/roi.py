"""``roi_align`` and ``roi_pool`` on JAX arrays (torchvision semantics), differentiable with
respect to x through ``jax.custom_vjp``. As in torchvision the boxes get no gradient: their
cotangent is zero."""
from __future__ import annotations

import jax
import jax.numpy as jnp

import gpuconv
from gpuconv.roi.geometry import check_roi_arguments

from ._bridge import (call, check_kernel_sizes, differentiable_call, spec, spec_like,
                      stand_in)

__all__ = ["roi_align", "roi_pool"]


def _roi(name, x, boxes, output_size, args, data_format):
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"x must be a JAX array, got {type(x).__name__}")
    listed = isinstance(boxes, (list, tuple))
    for part in boxes if listed else [boxes]:
        if not hasattr(part, "shape") or not hasattr(part, "dtype"):
            raise TypeError(f"boxes must be a (K, 5) JAX array or a list of (K_i, 4) JAX "
                            f"arrays, one per image; got {type(part).__name__}"
                            + (" in a list" if listed else ""))
    # gpuconv's own checks, at trace time (the boxes' values, unknown then, read as zeros:
    # those are checked again when the call runs).
    geom = check_roi_arguments(stand_in(x), stand_in(boxes), output_size, *args,
                               data_format=data_format).geometry
    check_kernel_sizes(x, geom.output_shape(data_format))
    out_spec = spec(geom.output_shape(data_format), x.dtype)

    @jax.custom_vjp
    def f(x, boxes):
        return call(lambda x, b: getattr(gpuconv, name)(x, b, output_size, *args,
                                                        data_format=data_format),
                    out_spec, x, boxes)

    def f_fwd(x, boxes):
        return f(x, boxes), (x, boxes)

    def f_bwd(saved, g):
        x, boxes = saved
        grad_x = call(lambda g, x, b: getattr(gpuconv.grad, name)(g, x, b, output_size, *args,
                                                                  data_format=data_format),
                      spec_like(x), g, x, boxes)
        return grad_x, jax.tree_util.tree_map(jnp.zeros_like, boxes)

    f.defvjp(f_fwd, f_bwd)
    return differentiable_call(f, x, boxes)


def roi_align(x, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False, *,
              data_format="NCHW"):
    """``gpuconv.roi_align`` on JAX arrays; boxes (K, 5) or a list of (K_i, 4) arrays."""
    return _roi("roi_align", x, boxes, output_size, (spatial_scale, sampling_ratio, aligned),
                data_format)


def roi_pool(x, boxes, output_size, spatial_scale=1.0, *, data_format="NCHW"):
    """``gpuconv.roi_pool`` on JAX arrays; boxes (K, 5) or a list of (K_i, 4) arrays."""
    return _roi("roi_pool", x, boxes, output_size, (spatial_scale,), data_format)
