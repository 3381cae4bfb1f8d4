"""Launchers of max_unpool2d, forward and backward (kernels/pool/max_unpool.cu).

The forward zero-fills the output, lets every input element claim its target with an integer
atomicMax (the last in row-major order wins, whatever the order of the atomics) and then writes
the winners: two passes, deterministic. The backward is a gather: deterministic in both modes.
For max_unpool2d the geometry's H, W is the unpooled output and P, Q the size of x.
"""
from __future__ import annotations

import numpy as np

from .geometry import Pool2dGeometry
from .._plans import empty, zeros
from .launch_common import (BOOLS, TYPES, check_int32, contiguous, ctype, index_array,
                            launch_elementwise, layout_shape, nhwc, pool_shape, register_family,
                            xp_for)

MAX_UNPOOL = register_family(
    "pool/max_unpool.cu", "max_unpool2d_claim<{L}>", "max_unpool2d_forward<{T}, {L}>",
    "max_unpool2d_backward<{T}, {L}>", T=TYPES, L=BOOLS)


def max_unpool2d(geom: Pool2dGeometry, x, indices, *, data_format: str, executor: str):
    xp = xp_for(executor)
    x = contiguous(xp, x)
    indices = index_array(xp, indices)
    check_int32(x, geom.N * geom.C * geom.H * geom.W)     # before the allocation it sizes
    y = zeros(xp, layout_shape(geom.N, geom.C, geom.H, geom.W, data_format), x.dtype)
    winner = zeros(xp, y.shape, np.int32)
    layout = nhwc(data_format)
    launch_elementwise(MAX_UNPOOL, f"max_unpool2d_claim<{layout}>", executor, x.size,
                       (indices, winner, *pool_shape(geom, windows=False)))
    launch_elementwise(MAX_UNPOOL, f"max_unpool2d_forward<{ctype(x.dtype)}, {layout}>", executor,
                       x.size, (x, indices, winner, y, *pool_shape(geom, windows=False)))
    return y


def grad_max_unpool2d(geom: Pool2dGeometry, grad_output, x, indices, *, data_format: str,
                      deterministic: bool, executor: str):
    xp = xp_for(executor)
    grad_output = contiguous(xp, grad_output)
    indices = index_array(xp, indices)
    check_int32(x, grad_output)
    grad_input = empty(xp, x.shape, grad_output.dtype)
    name = f"max_unpool2d_backward<{ctype(grad_output.dtype)}, {nhwc(data_format)}>"
    launch_elementwise(MAX_UNPOOL, name, executor, grad_input.size,
                       (grad_output, indices, grad_input, *pool_shape(geom, windows=False)))
    return grad_input
