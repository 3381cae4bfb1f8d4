"""The "reference" executor of every pooling front: a validated geometry -> the NumPy reference.

Each function has the signature of its counterpart in ``gpuconv.pool.launch`` minus ``executor``
(so this module is also the statement of that interface): the geometry, the arrays in the call's
``data_format``, keyword options already validated. The reference works in NCHW, so arrays are
transposed in and the results transposed back (C-contiguous in the call's layout).
"""
from __future__ import annotations

import numpy as np

from ..reference import pool as ref
from .geometry import AdaptivePool2dGeometry, Pool2dGeometry, SpatialPyramidGeometry


def _to_nchw(a, data_format: str):
    return a if data_format == "NCHW" else a.transpose(0, 3, 1, 2)


def _from_nchw(a, data_format: str):
    return np.ascontiguousarray(a if data_format == "NCHW" else a.transpose(0, 2, 3, 1))


def _window(geom: Pool2dGeometry) -> dict:
    return dict(kernel_size=(geom.R, geom.S), stride=(geom.stride_h, geom.stride_w),
                padding=(geom.pad_h, geom.pad_w), ceil_mode=geom.ceil_mode)


# --------------------------------------------------------------------------------------------
# forward


def max_pool2d(geom: Pool2dGeometry, x, *, return_indices: bool, data_format: str):
    values, indices = ref.max_pool2d(_to_nchw(x, data_format), dilation=(geom.dil_h, geom.dil_w),
                                     **_window(geom))
    values, indices = _from_nchw(values, data_format), _from_nchw(indices, data_format)
    return (values, indices) if return_indices else values


def avg_pool2d(geom: Pool2dGeometry, x, *, count_include_pad: bool, divisor_override: int | None,
               data_format: str):
    out = ref.avg_pool2d(_to_nchw(x, data_format), count_include_pad=count_include_pad,
                         divisor_override=divisor_override, **_window(geom))
    return _from_nchw(out, data_format)


def lp_pool2d(geom: Pool2dGeometry, x, *, norm_type: float, data_format: str):
    out = ref.lp_pool2d(_to_nchw(x, data_format), norm_type, (geom.R, geom.S),
                        (geom.stride_h, geom.stride_w), geom.ceil_mode)
    return _from_nchw(out, data_format)


def adaptive_avg_pool2d(geom: AdaptivePool2dGeometry, x, *, data_format: str):
    return _from_nchw(ref.adaptive_avg_pool2d(_to_nchw(x, data_format), (geom.P, geom.Q)), data_format)


def adaptive_max_pool2d(geom: AdaptivePool2dGeometry, x, *, return_indices: bool, data_format: str):
    values, indices = ref.adaptive_max_pool2d(_to_nchw(x, data_format), (geom.P, geom.Q))
    values, indices = _from_nchw(values, data_format), _from_nchw(indices, data_format)
    return (values, indices) if return_indices else values


def global_avg_pool2d(geom: AdaptivePool2dGeometry, x, *, data_format: str):
    return adaptive_avg_pool2d(geom, x, data_format=data_format)


def global_max_pool2d(geom: AdaptivePool2dGeometry, x, *, data_format: str):
    return adaptive_max_pool2d(geom, x, return_indices=False, data_format=data_format)


def spatial_pyramid_pool2d(geom: SpatialPyramidGeometry, x, *, data_format: str):
    return ref.spatial_pyramid_pool2d(x, geom.levels, geom.mode, data_format)


def max_unpool2d(geom: Pool2dGeometry, x, indices, *, data_format: str):
    out = ref.max_unpool2d(_to_nchw(x, data_format), _to_nchw(indices, data_format), (geom.H, geom.W))
    return _from_nchw(out, data_format)


# --------------------------------------------------------------------------------------------
# backward (the reference is deterministic whatever ``deterministic`` says)


def _max_indices(indices, recompute, data_format):
    return recompute() if indices is None else _to_nchw(indices, data_format)


def grad_max_pool2d(geom: Pool2dGeometry, grad_output, x, *, indices, data_format: str,
                    deterministic: bool):
    x_nchw = _to_nchw(x, data_format)
    indices = _max_indices(indices, lambda: ref.max_pool2d(
        x_nchw, dilation=(geom.dil_h, geom.dil_w), **_window(geom))[1], data_format)
    grad = ref.max_pool_backward(_to_nchw(grad_output, data_format), indices, geom.input_shape)
    return _from_nchw(grad, data_format)


def grad_avg_pool2d(geom: Pool2dGeometry, grad_output, x, *, count_include_pad: bool,
                    divisor_override: int | None, data_format: str, deterministic: bool):
    grad = ref.avg_pool2d_backward(_to_nchw(grad_output, data_format), geom.input_shape,
                                   count_include_pad=count_include_pad,
                                   divisor_override=divisor_override, **_window(geom))
    return _from_nchw(grad, data_format)


def grad_lp_pool2d(geom: Pool2dGeometry, grad_output, x, *, norm_type: float, data_format: str,
                   deterministic: bool):
    grad = ref.lp_pool2d_backward(_to_nchw(grad_output, data_format), _to_nchw(x, data_format),
                                  norm_type, (geom.R, geom.S), (geom.stride_h, geom.stride_w),
                                  geom.ceil_mode)
    return _from_nchw(grad, data_format)


def grad_adaptive_avg_pool2d(geom: AdaptivePool2dGeometry, grad_output, x, *, data_format: str,
                             deterministic: bool):
    grad = ref.adaptive_avg_pool2d_backward(_to_nchw(grad_output, data_format), geom.input_shape)
    return _from_nchw(grad, data_format)


def grad_adaptive_max_pool2d(geom: AdaptivePool2dGeometry, grad_output, x, *, indices,
                             data_format: str, deterministic: bool):
    x_nchw = _to_nchw(x, data_format)
    indices = _max_indices(indices, lambda: ref.adaptive_max_pool2d(x_nchw, (geom.P, geom.Q))[1],
                           data_format)
    grad = ref.max_pool_backward(_to_nchw(grad_output, data_format), indices, geom.input_shape)
    return _from_nchw(grad, data_format)


def grad_global_avg_pool2d(geom: AdaptivePool2dGeometry, grad_output, x, *, data_format: str,
                           deterministic: bool):
    return grad_adaptive_avg_pool2d(geom, grad_output, x, data_format=data_format,
                                    deterministic=deterministic)


def grad_global_max_pool2d(geom: AdaptivePool2dGeometry, grad_output, x, *, indices,
                           data_format: str, deterministic: bool):
    return grad_adaptive_max_pool2d(geom, grad_output, x, indices=indices, data_format=data_format,
                                    deterministic=deterministic)


def grad_spatial_pyramid_pool2d(geom: SpatialPyramidGeometry, grad_output, x, *, data_format: str,
                                deterministic: bool):
    return ref.spatial_pyramid_pool2d_backward(grad_output, x, geom.levels, geom.mode, data_format)


def grad_max_unpool2d(geom: Pool2dGeometry, grad_output, x, indices, *, data_format: str,
                      deterministic: bool):
    grad = ref.max_unpool2d_backward(_to_nchw(grad_output, data_format), _to_nchw(indices, data_format))
    return _from_nchw(grad, data_format)
