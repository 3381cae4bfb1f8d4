"""The layout copies of the ROI passes, by the shared batched_transpose (gpuconv/layout/
launch_transpose.py): an NCHW feature map to NHWC (roi_align's channel-group forward) and an
NHWC scratch to the NCHW result (the atomic backward's accumulator)."""
from __future__ import annotations

from .._plans import empty
from ..layout.launch_transpose import batched_transpose


def transpose_planes(src, dst, images: int, rows: int, cols: int, executor: str) -> None:
    """dst (images, cols, rows) = src (images, rows, cols), both C-contiguous; dst's dtype is
    src's, or a half type for a float32 src (rounded once)."""
    plane = rows * cols
    batched_transpose(src, dst, images, rows, cols, plane, cols, plane, rows, executor)


def nhwc_copy(xp, x, executor: str):
    """An (N, H, W, C) copy of the C-contiguous (N, C, H, W) array ``x``."""
    n, c, h, w = x.shape
    copy = empty(xp, (n, h, w, c), x.dtype)
    transpose_planes(x, copy, n, c, h * w, executor)
    return copy
