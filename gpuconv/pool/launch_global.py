"""Launchers of global average and max pooling, forward and backward (kernels/pool/global_pool.cu).

The forward is a reduction over H*W: in NCHW a group of warps per plane, in NHWC a block of
(32 channels x ``rows`` pixel strides) per image and channel chunk. Both reduce in an order fixed
by the launch configuration, which depends on the shape only. The backward is elementwise (a
broadcast, or a select at the argmax): deterministic in both modes.
"""
from __future__ import annotations

import numpy as np

from .geometry import AdaptivePool2dGeometry
from .launch_common import (BOOLS, MAX_BLOCKS, TYPES, acc_dtype, check_int32, contiguous, ctype,
                            flag, i32, index_array, launch, launch_elementwise, nhwc,
                            no_indices, pool_shape, register_family, xp_for)

# M: max (else average); I: write the argmax (max only)
GLOBAL_POOL = register_family(
    "pool/global_pool.cu",
    "global_pool2d_nchw<{T}, false, false>", "global_pool2d_nchw<{T}, true, {I}>",
    "global_pool2d_nhwc<{T}, false, false>", "global_pool2d_nhwc<{T}, true, {I}>",
    "global_avg_pool2d_backward<{T}, {L}>", "global_max_pool2d_backward<{T}, {L}>",
    T=TYPES, I=BOOLS, L=BOOLS)

NCHW_BLOCK = 256          # kNchwBlock in global_pool.cu: 8 warps
NCHW_WARPS = NCHW_BLOCK // 32
MAX_GRID_Y = 65535


def nchw_warps_per_plane(plane_size: int) -> int:
    """Warps reducing one plane: enough that each lane loads about 16 elements or fewer, at
    most the block's 8 warps. (A 7x7 plane takes one warp, 56x56 takes eight.)"""
    warps = 1
    while warps < NCHW_WARPS and plane_size > warps * 32 * 16:
        warps *= 2
    return warps


def nhwc_rows(plane_size: int) -> int:
    """Pixel strides per NHWC block (blockDim.y): about 4 pixels per thread, 1 to 32 rows."""
    rows = 1
    while rows < 32 and rows * 4 < plane_size:
        rows *= 2
    return rows


def global_reduce(geom: AdaptivePool2dGeometry, x, data_format: str, executor: str, is_max: bool,
                  with_indices: bool):
    """(values, indices or None), values in the output's (N, C, 1, 1) / (N, 1, 1, C) shape."""
    xp = xp_for(executor)
    out_shape = (geom.N, 1, 1, geom.C) if data_format == "NHWC" else (geom.N, geom.C, 1, 1)
    y = xp.empty(out_shape, dtype=x.dtype)
    indices = xp.empty(out_shape, dtype=np.int64) if with_indices else None
    if y.size == 0:
        return y, indices
    dtype, plane_size = ctype(x.dtype), geom.H * geom.W
    index_arg = indices if with_indices else no_indices(xp)
    if data_format == "NHWC":
        rows = nhwc_rows(plane_size)
        name = f"global_pool2d_nhwc<{dtype}, {flag(is_max)}, {flag(with_indices)}>"
        grid = (-(-geom.C // 32), min(geom.N, MAX_GRID_Y))
        shared = rows * 32 * (acc_dtype(x.dtype).itemsize + 4)
        launch(GLOBAL_POOL, name, executor, grid, (32, rows),
               (x, y, index_arg, i32(geom.N), i32(plane_size), i32(geom.C)), shared_mem=shared)
    else:
        warps = nchw_warps_per_plane(plane_size)
        planes_per_block = NCHW_WARPS // warps
        planes = geom.N * geom.C
        name = f"global_pool2d_nchw<{dtype}, {flag(is_max)}, {flag(with_indices)}>"
        grid = (min(-(-planes // planes_per_block), MAX_BLOCKS),)
        launch(GLOBAL_POOL, name, executor, grid, (NCHW_BLOCK,),
               (x, y, index_arg, i32(planes), i32(plane_size), i32(warps)))
    return y, indices


def global_avg_pool2d(geom: AdaptivePool2dGeometry, x, *, data_format: str, executor: str):
    x = contiguous(xp_for(executor), x)
    check_int32(x)
    return global_reduce(geom, x, data_format, executor, is_max=False, with_indices=False)[0]


def global_max_pool2d(geom: AdaptivePool2dGeometry, x, *, data_format: str, executor: str):
    x = contiguous(xp_for(executor), x)
    check_int32(x)
    return global_reduce(geom, x, data_format, executor, is_max=True, with_indices=False)[0]


def grad_global_avg_pool2d(geom: AdaptivePool2dGeometry, grad_output, x, *, data_format: str,
                           deterministic: bool, executor: str):
    xp = xp_for(executor)
    grad_output = contiguous(xp, grad_output)
    check_int32(x)
    grad_input = xp.empty(x.shape, dtype=grad_output.dtype)
    name = f"global_avg_pool2d_backward<{ctype(grad_output.dtype)}, {nhwc(data_format)}>"
    launch_elementwise(GLOBAL_POOL, name, executor, grad_input.size,
                       (grad_output, grad_input, *pool_shape(geom)))
    return grad_input


def grad_global_max_pool2d(geom: AdaptivePool2dGeometry, grad_output, x, *, indices,
                           data_format: str, deterministic: bool, executor: str):
    xp = xp_for(executor)
    x = contiguous(xp, x)
    check_int32(x)
    if indices is None:
        indices = global_reduce(geom, x, data_format, executor, is_max=True, with_indices=True)[1]
    else:
        indices = index_array(xp, indices)
    grad_output = contiguous(xp, grad_output)
    grad_input = xp.empty(x.shape, dtype=grad_output.dtype)
    name = f"global_max_pool2d_backward<{ctype(grad_output.dtype)}, {nhwc(data_format)}>"
    launch_elementwise(GLOBAL_POOL, name, executor, grad_input.size,
                       (grad_output, indices, grad_input, *pool_shape(geom)))
    return grad_input
