"""Launcher of batched_transpose (kernels/layout/transpose.cu), the one kernel of the layout
copies: the filters in the order a convolution kernel reads them (``permuted``: KCRS filters as
KRSC for the NHWC forward, as RSKC or RSCK for the data gradient, channels_last ones as KCRS)
and the ROI passes' NCHW <-> NHWC planes (gpuconv/roi/launch_transpose.py).

``permuted`` reduces ``a.transpose(axes)`` made C-contiguous to a batch of 2-D transposes
(``transpose_plan``): the axes of one element dropped, the axes that stay adjacent in memory
merged (in the result's order); what remains, two or three axes, is x (the result's last axis),
y (the axis of unit stride in memory) and a batch axis. Every other case is copied by the array
library, as before: a view whose last axis already has unit stride (a copy of whole rows), one
that is not a permutation of a dense array (a slice, negative or zero strides), 2**31 elements
or more (the kernel's offsets are 32-bit).
"""
from __future__ import annotations

import math

import numpy as np

from .._args import INT32_MAX
from .._arrays import copy_for_kernels, is_kernel_ready
from .._kernels import CUDA_TYPES, cuda_type, register
from .._loader import get_function
from .._plans import derived, output

# T -> T copies; float -> a half type (the ROI accumulator's one rounding)
HALF_TYPES = ("__half", "__nv_bfloat16")
_NAMES = ([f"batched_transpose<{t}, {t}>" for t in CUDA_TYPES.values()]
          + [f"batched_transpose<float, {h}>" for h in HALF_TYPES])
TRANSPOSE = register("layout/transpose.cu", _NAMES, hot=_NAMES)

THREADS = 256                 # TRANSPOSE_THREADS
TILE_ELEMENTS = 2304          # TRANSPOSE_TILE_ELEMENTS: a tile with its odd row pitch
# A tile moves about this many elements: eight per thread, each way.
TILE_TARGET = 2048
# The longest tile row along x (along y: 64 when y is that short, else 32).
MAX_TILE_X = 256
MAX_BATCH_BLOCKS = 65535      # grid.y: more batch entries are visited in turn
MAX_ELEMENTS = INT32_MAX      # the kernel's int offsets


def tile_shape(X: int, Y: int) -> tuple[int, int]:
    """(tile_x, tile_y) for a transpose of X x Y: a whole y axis of up to 64 elements (a 3x3
    filter's taps: tiles of 9 x 224), else 32; x a multiple of 32 up to about
    TILE_TARGET elements per tile, no wider than X needs."""
    tile_y = Y if Y <= 64 else 32
    tile_x = min(MAX_TILE_X, max(32, TILE_TARGET // tile_y // 32 * 32), -(-X // 32) * 32)
    assert tile_x * (tile_y | 1) <= TILE_ELEMENTS
    return tile_x, tile_y


def batched_transpose(src, dst, batch: int, X: int, Y: int, src_b: int, src_x: int, dst_b: int,
                      dst_y: int, executor: str) -> None:
    """dst[b * dst_b + y * dst_y + x] = src[b * src_b + x * src_x + y] for b < batch, x < X,
    y < Y, src and dst C-contiguous arrays (their element offsets); dst's dtype is src's, or a
    half type for a float32 src (rounded once)."""
    if batch * X * Y == 0:
        return
    tile_x, tile_y = tile_shape(X, Y)
    tiles_x = -(-X // tile_x)
    grid = (tiles_x * -(-Y // tile_y), min(batch, MAX_BATCH_BLOCKS), 1)
    name = f"batched_transpose<{cuda_type(src.dtype)}, {cuda_type(dst.dtype)}>"
    scalars = (batch, X, Y, src_b, src_x, dst_b, dst_y, tile_x, tile_y, tiles_x)
    launch(TRANSPOSE, name, executor, grid, (THREADS, 1, 1),
           (src, dst, *(np.int32(v) for v in scalars)))


def launch(family, name: str, executor: str, grid, block, args) -> None:
    get_function(family, name, executor)(tuple(grid), tuple(block), tuple(args))


def transpose_plan(shape, strides) -> tuple[int, ...] | None:
    """(batch, X, Y, src_b, src_x, dst_b, dst_y) of ``batched_transpose`` that makes a
    C-contiguous copy of a view of ``shape`` and element ``strides`` of a dense array, or None
    where that copy is not a batch of transposes (the module docstring)."""
    merged: list[list[int]] = []                     # [size, stride] in the result's order
    for size, stride in zip(shape, strides):
        if size == 1:
            continue
        if merged and merged[-1][1] == stride * size:
            merged[-1] = [merged[-1][0] * size, stride]
        else:
            merged.append([size, stride])
    if len(merged) not in (2, 3):
        return None
    unit = [i for i, (_, stride) in enumerate(merged) if stride == 1]
    x = len(merged) - 1
    if len(unit) != 1 or unit[0] == x:
        return None
    y = unit[0]
    dst_strides = [math.prod(size for size, _ in merged[i + 1:]) for i in range(len(merged))]
    batch, src_b, dst_b = 1, 0, 0
    if len(merged) == 3:
        b = 3 - x - y                                 # the axis that is neither
        batch, src_b, dst_b = merged[b][0], merged[b][1], dst_strides[b]
    return batch, merged[x][0], merged[y][0], src_b, merged[x][1], dst_b, dst_strides[y]


def dense_base(a):
    """``a`` with its axes in memory order, when that is a C-contiguous array (``a`` is a
    permutation of a dense array: its data pointer is the base's first element), else None."""
    order = sorted(range(a.ndim), key=lambda i: -a.strides[i])
    base = a.transpose(order)
    return base if is_kernel_ready(base) else None


def permuted(xp, a, axes, executor: str):
    """``a.transpose(axes)`` as a C-contiguous array that a kernel may read: the view itself
    when it is one, else a copy, by batched_transpose where the module docstring says."""
    view = a.transpose(axes)
    if is_kernel_ready(view):
        return view
    itemsize = view.dtype.itemsize
    base = dense_base(view) if 0 < view.size <= MAX_ELEMENTS else None
    plan = (transpose_plan(view.shape, [s // itemsize for s in view.strides])
            if base is not None else None)
    if plan is None:
        return derived(copy_for_kernels, xp, view)
    copy = output(xp, view.shape, view.dtype, executor)
    batched_transpose(base, copy, *plan, executor)
    return copy

