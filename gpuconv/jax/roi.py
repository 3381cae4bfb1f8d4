"""``roi_align`` and ``roi_pool`` on JAX arrays (torchvision semantics), differentiable with
respect to x through ``jax.custom_vjp``. As in torchvision the boxes get no gradient: their
cotangent is zero."""
from __future__ import annotations

import jax
import jax.numpy as jnp

import gpuconv
from gpuconv._args import as_pair
from gpuconv.roi.geometry import DATA_FORMATS

from ._bridge import call, spec, spec_like

__all__ = ["roi_align", "roi_pool"]


def _regions(boxes) -> int:
    """K: the rows of a (K, 5) array, or the total rows of a list of (K_i, 4) arrays."""
    if isinstance(boxes, (list, tuple)):
        return sum(int(b.shape[0]) for b in boxes)
    return int(boxes.shape[0])


def _roi(name, x, boxes, output_size, args, data_format):
    if data_format not in DATA_FORMATS:
        raise ValueError(f"data_format must be one of {', '.join(map(repr, DATA_FORMATS))}; "
                         f"got {data_format!r}")
    ph, pw = as_pair("output_size", output_size, minimum=1)
    k = _regions(boxes)
    c = x.shape[3] if data_format == "NHWC" else x.shape[1]
    out_spec = spec((k, ph, pw, c) if data_format == "NHWC" else (k, c, ph, pw), x.dtype)

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
    return f(x, boxes)


def roi_align(x, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False, *,
              data_format="NCHW"):
    """``gpuconv.roi_align`` on JAX arrays; boxes (K, 5) or a list of (K_i, 4) arrays."""
    return _roi("roi_align", x, boxes, output_size, (spatial_scale, sampling_ratio, aligned),
                data_format)


def roi_pool(x, boxes, output_size, spatial_scale=1.0, *, data_format="NCHW"):
    """``gpuconv.roi_pool`` on JAX arrays; boxes (K, 5) or a list of (K_i, 4) arrays."""
    return _roi("roi_pool", x, boxes, output_size, (spatial_scale,), data_format)
