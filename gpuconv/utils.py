"""Shape and cost formulas of a convolution layer, for planning and for benchmark reports.

Every function validates its arguments through the same geometry code as ``conv2d`` itself, so a
shape it accepts is one ``conv2d`` accepts, and the sizes agree with what the kernels compute.
Output size per spatial axis: floor((n + pad_total - d*(f - 1) - 1) / s) + 1.
"""
from __future__ import annotations

import math

from ._args import as_bool, as_int
from .conv.geometry import (check_data_format, check_shape, conv2d_geometry,
                            conv_transpose2d_geometry, layout_shape, nchw_output_size, nchw_shape)
from .pool.geometry import pool2d_geometry

__all__ = ["conv2d_output_shape", "conv_transpose2d_output_shape", "conv2d_flops",
           "conv2d_params", "conv2d_bytes", "pool2d_output_shape"]


def _geometry(input_shape, weight_shape, stride, padding, dilation, groups, data_format):
    data_format = check_data_format(data_format)
    shape = check_shape("input_shape", input_shape, data_format, minimum=(0, 1, 1, 1))
    geom = conv2d_geometry(nchw_shape(shape, data_format), weight_shape, stride, padding,
                           dilation, groups, x_name="input_shape", weight_name="weight_shape")
    return geom, data_format


def conv2d_output_shape(input_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1,
                        data_format="NCHW") -> tuple[int, int, int, int]:
    """The shape of ``conv2d``'s result, in ``data_format``."""
    geom, data_format = _geometry(input_shape, weight_shape, stride, padding, dilation, groups,
                                  data_format)
    return layout_shape(geom.output_shape, data_format)


def conv_transpose2d_output_shape(input_shape, weight_shape, stride=1, padding=0,
                                  output_padding=0, groups=1, dilation=1, output_size=None,
                                  data_format="NCHW") -> tuple[int, int, int, int]:
    """The shape of ``conv_transpose2d``'s result, in ``data_format`` (as conv_transpose2d
    takes it): (N, K_out, H_out, W_out) in NCHW; weight (C_in, K_out/groups, R, S).
    H_out = (H - 1)*s - 2p + d*(R - 1) + output_padding + 1."""
    data_format = check_data_format(data_format)
    shape = check_shape("input_shape", input_shape, data_format, minimum=(0, 1, 1, 1))
    geom = conv_transpose2d_geometry(nchw_shape(shape, data_format), weight_shape, stride,
                                     padding, output_padding, groups, dilation,
                                     nchw_output_size(output_size, data_format),
                                     x_name="input_shape", weight_name="weight_shape")
    return layout_shape(geom.input_shape, data_format)


def conv2d_flops(input_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1,
                 data_format="NCHW") -> int:
    """Floating-point operations of the forward convolution, one multiply and one add per
    weight tap and output value: 2 * N * K * P * Q * (C / groups) * R * S."""
    geom, _ = _geometry(input_shape, weight_shape, stride, padding, dilation, groups, data_format)
    return 2 * geom.gemm_m * geom.gemm_n * geom.gemm_k


def conv2d_params(weight_shape, bias=True) -> int:
    """Learnable parameters of a layer with this weight (K, C/groups, R, S): K*C/groups*R*S,
    plus K with a bias."""
    shape = check_shape("weight_shape", weight_shape, "KCRS", minimum=(1, 1, 1, 1))
    return math.prod(shape) + (shape[0] if as_bool("bias", bias) else 0)


def conv2d_bytes(input_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1, *,
                 itemsize=4, bias=False, data_format="NCHW") -> int:
    """The minimum memory traffic of the forward convolution: the input, the weight (and the
    bias) each read once and the output written once, ``itemsize`` bytes per element."""
    itemsize = as_int("itemsize", itemsize, minimum=1)
    geom, _ = _geometry(input_shape, weight_shape, stride, padding, dilation, groups, data_format)
    elements = (math.prod(geom.input_shape) + math.prod(geom.weight_shape)
                + (geom.K if as_bool("bias", bias) else 0) + math.prod(geom.output_shape))
    return elements * itemsize


def pool2d_output_shape(input_shape, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, data_format="NCHW") -> tuple[int, int, int, int]:
    """The shape of ``max_pool2d``'s (and, with dilation 1, ``avg_pool2d``'s and
    ``lp_pool2d``'s) result, in ``data_format``: PyTorch's pooling output size, where with
    ``ceil_mode`` a last window that would start in the right/bottom padding is dropped."""
    data_format = check_data_format(data_format)
    shape = check_shape("input_shape", input_shape, data_format, minimum=(0, 1, 1, 1))
    geom = pool2d_geometry(nchw_shape(shape, data_format), kernel_size, stride, padding,
                           dilation, ceil_mode, x_name="input_shape")
    return layout_shape((geom.N, geom.C, geom.P, geom.Q), data_format)
