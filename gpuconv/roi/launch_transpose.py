"""Launcher of transpose_planes (kernels/roi/transpose_planes.cu): the layout copies of the ROI
passes, an NCHW feature map to NHWC (roi_align's channel-group forward) and an NHWC scratch to
the NCHW result (the atomic backward's accumulator)."""
from __future__ import annotations

from .._plans import empty
from ..pool.launch_common import TYPES, ctype, i32, launch, register_family

# T -> T copies; float -> a half type for the accumulator's one rounding
TRANSPOSE = register_family("roi/transpose_planes.cu", "transpose_planes<{T}, {T}>",
                            "transpose_planes<float, {H}>", T=TYPES,
                            H=("__half", "__nv_bfloat16"))
TILE = 32                # kTransposeTile
ROWS = 8                 # kTransposeRows
MAX_IMAGE_ROWS = 65535   # grid.z: more images are visited in turn


def transpose_planes(src, dst, images: int, rows: int, cols: int, executor: str) -> None:
    """dst (images, cols, rows) = src (images, rows, cols), both C-contiguous; dst's dtype is
    src's, or a half type for a float32 src (rounded once)."""
    if images * rows * cols == 0:
        return
    row_tiles = -(-rows // TILE)
    grid = (row_tiles * -(-cols // TILE), 1, min(images, MAX_IMAGE_ROWS))
    launch(TRANSPOSE, f"transpose_planes<{ctype(src.dtype)}, {ctype(dst.dtype)}>", executor,
           grid, (TILE, ROWS), (src, dst, i32(images), i32(rows), i32(cols), i32(row_tiles)))


def nhwc_copy(xp, x, executor: str):
    """An (N, H, W, C) copy of the C-contiguous (N, C, H, W) array ``x``."""
    n, c, h, w = x.shape
    copy = empty(xp, (n, h, w, c), x.dtype)
    transpose_planes(x, copy, n, c, h * w, executor)
    return copy
