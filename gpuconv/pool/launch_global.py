"""Launchers of global average and max pooling, forward and backward (kernels/pool/global_pool.cu).

The forward is a reduction over H*W: in NCHW small planes are staged through shared memory and
scanned by a thread each, larger ones reduced by a group of warps; in NHWC a block of (channel
lanes x pixel rows) per image and channel chunk, 16-byte channel vectors where C and x's
alignment allow. Every path reduces in an order fixed by the shape (the NHWC vectors change
which thread holds a channel, not the order of its sum). The backward is elementwise (a
broadcast, or a select at the argmax): deterministic in both modes.
"""
from __future__ import annotations

import numpy as np

from .._arrays import is_aligned
from .geometry import AdaptivePool2dGeometry
from .._plans import empty
from .launch_common import (BOOLS, MAX_BLOCKS, TYPES, VECTOR_BYTES, acc_dtype, check_int32,
                            contiguous, ctype, flag, i32, index_array, launch, layout_shape,
                            no_indices, nhwc_vector, register_family, xp_for)

# M: max (else average); I: write the argmax (max only); V: NHWC 16-byte channel vectors
GLOBAL_POOL = register_family(
    "pool/global_pool.cu",
    "global_pool2d_nchw_staged<{T}, false, false>", "global_pool2d_nchw_staged<{T}, true, {I}>",
    "global_pool2d_nchw<{T}, false, false>", "global_pool2d_nchw<{T}, true, {I}>",
    "global_pool2d_nhwc<{T}, false, false, {V}>", "global_pool2d_nhwc<{T}, true, {I}, {V}>",
    "global_pool2d_backward_nchw<{T}, {M}>", "global_pool2d_backward_nhwc<{T}, {M}, {V}>",
    T=TYPES, I=BOOLS, V=BOOLS, M=BOOLS)

BLOCK = 256               # kGlobalBlock in global_pool.cu: every kernel's block
NCHW_WARPS = BLOCK // 32
MAX_GRID_Y = 65535
# Shared memory for the staged NCHW kernel's run of planes. Planes small enough that 32 of them
# fit are staged; 24 KiB keeps 8 blocks of 256 threads (a full SM) resident.
STAGE_BYTES = 24 * 1024
MIN_STAGED_PLANES = 32
# NHWC: while the grid has fewer blocks than this, the launcher halves a block's channel lanes
# (down to MIN_NHWC_LANES), which doubles its pixel rows and the grid's blocks.
MIN_NHWC_BLOCKS = 1024
MIN_NHWC_LANES = 8
# Elements a block of the NCHW backward writes per run of planes.
BACKWARD_RUN = 16 * BLOCK


def plane_stride(plane_size: int) -> int:
    """A staged plane's stride in shared memory: odd, so that 32 threads reading one element of
    32 consecutive planes hit 32 banks."""
    return plane_size | 1


def staged_planes(plane_size: int, dtype) -> int:
    """Planes per block of the staged NCHW kernel (0: the planes are too large to stage)."""
    fits = STAGE_BYTES // (plane_stride(plane_size) * acc_dtype(dtype).itemsize)
    return 0 if fits < MIN_STAGED_PLANES else min(BLOCK, fits)


def backward_planes(plane_size: int) -> int:
    """Planes per block of the NCHW backward: about BACKWARD_RUN elements (16 stores per
    thread), 1 to BLOCK planes."""
    return max(1, min(BLOCK, BACKWARD_RUN // plane_size))


def nchw_warps_per_plane(plane_size: int) -> int:
    """Warps reducing one plane (the unstaged NCHW kernel): enough that each lane loads about 16
    elements or fewer, at most the block's 8 warps. (A 33x33 plane takes four, 65x65 eight.)"""
    warps = 1
    while warps < NCHW_WARPS and plane_size > warps * 32 * 16:
        warps *= 2
    return warps


def nhwc_lanes(N: int, C: int, plane_size: int, vector: int) -> int:
    """Channel lanes per row of the NHWC block (the rest of its BLOCK threads are pixel rows):
    enough to cover C (32 at most, a power of two), fewer while the grid has under
    MIN_NHWC_BLOCKS blocks and the plane has pixels for the extra rows."""
    vectors = -(-C // vector)
    lanes = 1
    while lanes < 32 and lanes < vectors:
        lanes *= 2
    while (lanes > MIN_NHWC_LANES and -(-vectors // lanes) * N < MIN_NHWC_BLOCKS
           and BLOCK // lanes < plane_size):
        lanes //= 2
    return lanes


def nhwc_launch(geom: AdaptivePool2dGeometry, vectored) -> tuple[int, int, tuple[int, int]]:
    """(channels per thread, lanes, grid) of an NHWC kernel whose channel vectors access the
    array ``vectored``. The lanes (hence the rows, hence each channel's order of summation)
    follow from the shape; an array not aligned for the vectors only makes each lane's vector
    one channel."""
    plane_size = geom.H * geom.W
    vector = nhwc_vector(vectored.dtype, geom.C)
    lanes = nhwc_lanes(geom.N, geom.C, plane_size, vector)
    if not is_aligned(vectored, VECTOR_BYTES):
        vector = 1
    return vector, lanes, (-(-geom.C // (lanes * vector)), min(geom.N, MAX_GRID_Y))


def global_reduce(geom: AdaptivePool2dGeometry, x, data_format: str, executor: str, is_max: bool,
                  with_indices: bool):
    """(values, indices or None), values in the output's (N, C, 1, 1) / (N, 1, 1, C) shape."""
    xp = xp_for(executor)
    out_shape = (geom.N, 1, 1, geom.C) if data_format == "NHWC" else (geom.N, geom.C, 1, 1)
    y = empty(xp, out_shape, x.dtype)
    indices = empty(xp, out_shape, np.int64) if with_indices else None
    if y.size == 0:
        return y, indices
    dtype, plane_size = ctype(x.dtype), geom.H * geom.W
    index_arg = indices if with_indices else no_indices(xp)
    if is_max:
        kind = f"{dtype}, true, {flag(with_indices)}"
    else:
        kind = f"{dtype}, false, false"
    if data_format == "NHWC":
        vector, lanes, grid = nhwc_launch(geom, x)
        name = f"global_pool2d_nhwc<{kind}, {flag(vector > 1)}>"
        shared = BLOCK * vector * (acc_dtype(x.dtype).itemsize + (4 if is_max else 0))
        launch(GLOBAL_POOL, name, executor, grid, (BLOCK,),
               (x, y, index_arg, i32(geom.N), i32(plane_size), i32(geom.C), i32(lanes)),
               shared_mem=shared)
        return y, indices
    planes = geom.N * geom.C
    per_block = staged_planes(plane_size, x.dtype)
    if per_block:
        stride = plane_stride(plane_size)
        grid = (min(-(-planes // per_block), MAX_BLOCKS),)
        launch(GLOBAL_POOL, f"global_pool2d_nchw_staged<{kind}>", executor, grid, (BLOCK,),
               (x, y, index_arg, i32(planes), i32(plane_size), i32(per_block), i32(stride)),
               shared_mem=per_block * stride * acc_dtype(x.dtype).itemsize)
    else:
        warps = nchw_warps_per_plane(plane_size)
        grid = (min(-(-planes // (NCHW_WARPS // warps)), MAX_BLOCKS),)
        launch(GLOBAL_POOL, f"global_pool2d_nchw<{kind}>", executor, grid, (BLOCK,),
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


def spread(geom: AdaptivePool2dGeometry, grad_output, indices, data_format: str, executor: str,
           is_max: bool):
    """grad_input: grad_output / (H*W) over each plane, or grad_output at the argmax
    (``indices``) and zeros elsewhere."""
    xp = xp_for(executor)
    grad_output = contiguous(xp, grad_output)
    shape = layout_shape(geom.N, geom.C, geom.H, geom.W, data_format)
    check_int32(geom.N * geom.C * geom.H * geom.W)
    grad_input = empty(xp, shape, grad_output.dtype)
    if grad_input.size == 0:
        return grad_input
    dtype, plane_size = ctype(grad_output.dtype), geom.H * geom.W
    index_arg = indices if is_max else no_indices(xp)
    if data_format == "NHWC":
        vector, lanes, grid = nhwc_launch(geom, grad_input)
        name = f"global_pool2d_backward_nhwc<{dtype}, {flag(is_max)}, {flag(vector > 1)}>"
        launch(GLOBAL_POOL, name, executor, grid, (BLOCK,),
               (grad_output, index_arg, grad_input, i32(geom.N), i32(plane_size), i32(geom.C),
                i32(lanes)))
        return grad_input
    planes = geom.N * geom.C
    per_block = backward_planes(plane_size)
    shared = per_block * (acc_dtype(grad_output.dtype).itemsize + (8 if is_max else 0))
    launch(GLOBAL_POOL, f"global_pool2d_backward_nchw<{dtype}, {flag(is_max)}>", executor,
           (min(-(-planes // per_block), MAX_BLOCKS),), (BLOCK,),
           (grad_output, index_arg, grad_input, i32(planes), i32(plane_size), i32(per_block)),
           shared_mem=shared)
    return grad_input


def grad_global_avg_pool2d(geom: AdaptivePool2dGeometry, grad_output, x, *, data_format: str,
                           deterministic: bool, executor: str):
    return spread(geom, grad_output, None, data_format, executor, is_max=False)


def grad_global_max_pool2d(geom: AdaptivePool2dGeometry, grad_output, x, *, indices,
                           data_format: str, deterministic: bool, executor: str):
    xp = xp_for(executor)
    if indices is None:
        x = contiguous(xp, x)
        check_int32(x)
        indices = global_reduce(geom, x, data_format, executor, is_max=True, with_indices=True)[1]
    else:
        indices = index_array(xp, indices)
    return spread(geom, grad_output, indices, data_format, executor, is_max=True)
