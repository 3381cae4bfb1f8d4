"""lp_pool2d with an infinite norm_type, as torch.nn.functional.lp_pool2d (2.13) defines it:
``max_pool2d(|x|)`` for +inf (each window's largest |x|) and ``-max_pool2d(-|x|)`` for -inf (its
smallest), no padding, dilation 1. The gradient follows the same composition: max pooling's
(the first maximum of a window takes it, a NaN wins) times d|x|/dx = torch.sign(x), which is 0 at
0 and at NaN. Both run through the public max_pool2d and its gradient, so every executor (the
reference, the simulator, the GPU) computes them with its own max pooling.
"""
from __future__ import annotations

import math

import numpy as np

from . import grad
from .api import max_pool2d


def is_infinite(norm_type: float) -> bool:
    return math.isinf(norm_type)


def _magnitudes(xp, x, norm_type: float):
    """|x| for +inf, -|x| for -inf: the values whose window maxima the pooling takes."""
    magnitude = xp.abs(x)
    return magnitude if norm_type > 0 else -magnitude


def _torch_sign(xp, x):
    # NaN compares false both ways (sign 0); ml_dtypes' bfloat16 warns on such a compare where
    # NumPy's own floats do not.
    with np.errstate(invalid="ignore"):
        return (x > 0).astype(x.dtype) - (x < 0).astype(x.dtype)


def forward(xp, x, norm_type: float, kernel_size, stride, ceil_mode: bool, data_format: str):
    y = max_pool2d(_magnitudes(xp, x, norm_type), kernel_size, stride, 0, 1, ceil_mode,
                   data_format=data_format)
    return y if norm_type > 0 else -y


def backward(xp, grad_output, x, norm_type: float, kernel_size, stride, ceil_mode: bool,
             data_format: str, deterministic: bool):
    # -inf: the two negations (of the pooled value and of |x|) cancel in the gradient.
    through_max = grad.max_pool2d(grad_output, _magnitudes(xp, x, norm_type), kernel_size,
                                  stride, 0, 1, ceil_mode, data_format=data_format,
                                  deterministic=deterministic)
    return through_max * _torch_sign(xp, x)
