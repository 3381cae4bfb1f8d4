"""Launchers of roi_pool, forward and backward (kernels/roi/roi_pool.cu).

Backward modes:
- default: torchvision's scatter, each bin's gradient added at its argmax with atomicAdd (float
  atomics; into a float32 scratch buffer for half types);
- ``deterministic=True``: a gather over the rois covering each input element, in increasing roi
  order; no atomics, bitwise identical run to run.
Both need the forward's argmax (int64, the output's size): recomputed by one forward launch,
unless the caller kept the one its forward returned (``roi_pool(..., with_argmax=True)``, then
``grad_roi_pool(..., argmax=)``: gpuconv.torch does, as torchvision's autograd does).
"""
from __future__ import annotations

import numpy as np

from .._plans import empty
from ..pool.launch_common import (BOOLS, TYPES, acc_dtype, acc_scalar, check_int32, contiguous,
                                  ctype, flag, i32, launch, launch_elementwise, nhwc,
                                  no_indices, register_family, xp_for)
from .geometry import RoiGeometry
from .launch_accumulator import accumulate_to
from .launch_align import GATHER_BLOCK, GATHER_TILE, MAX_GRID_Y

# A: the forward writes the argmax (for the backward)
ROI_POOL = register_family("roi/roi_pool.cu", "roi_pool_forward<{T}, {L}, {A}>",
                           "roi_pool_backward_atomic<{T}, {L}>",
                           "roi_pool_backward_gather<{T}, {L}>", T=TYPES, L=BOOLS, A=BOOLS)


def _sizes(geom: RoiGeometry):
    return (i32(geom.K), i32(geom.N), i32(geom.C), i32(geom.H), i32(geom.W), i32(geom.PH),
            i32(geom.PW))


def _forward(geom: RoiGeometry, x, rois, data_format: str, executor: str, with_argmax: bool):
    xp = xp_for(executor)
    y = empty(xp, geom.output_shape(data_format), x.dtype)
    argmax = empty(xp, y.shape, np.int64) if with_argmax else None
    name = f"roi_pool_forward<{ctype(x.dtype)}, {nhwc(data_format)}, {flag(with_argmax)}>"
    launch_elementwise(ROI_POOL, name, executor, y.size,
                       (x, rois, y, argmax if with_argmax else no_indices(xp), *_sizes(geom),
                        acc_scalar(x.dtype, geom.spatial_scale)))
    return y, argmax


def roi_pool(geom: RoiGeometry, x, rois, *, data_format: str, executor: str,
             with_argmax: bool = False):
    """y, or (y, argmax) with ``with_argmax`` (the argmax grad_roi_pool takes)."""
    xp = xp_for(executor)
    x = contiguous(xp, x)
    rois = contiguous(xp, rois, acc_dtype(x.dtype))
    check_int32(x, geom.K * geom.C * geom.PH * geom.PW)
    y, argmax = _forward(geom, x, rois, data_format, executor, with_argmax=with_argmax)
    return (y, argmax) if with_argmax else y


def grad_roi_pool(geom: RoiGeometry, grad_output, x, rois, *, data_format: str,
                  deterministic: bool, executor: str, argmax=None):
    """dx; ``argmax``: the one ``roi_pool(..., with_argmax=True)`` returned for these very
    arguments (not checked), else recomputed here."""
    xp = xp_for(executor)
    x = contiguous(xp, x)
    grad_output = contiguous(xp, grad_output)
    dtype = grad_output.dtype
    rois = contiguous(xp, rois, acc_dtype(dtype))
    check_int32(x, grad_output)
    if argmax is None:
        argmax = _forward(geom, x, rois, data_format, executor, with_argmax=True)[1]
    argmax = contiguous(xp, argmax)
    layout = nhwc(data_format)
    if deterministic:
        grad_input = empty(xp, x.shape, dtype)
        tiles = -(-geom.H // GATHER_TILE[0]) * -(-geom.W // GATHER_TILE[1])
        launch(ROI_POOL, f"roi_pool_backward_gather<{ctype(dtype)}, {layout}>", executor,
               (tiles, min(geom.N, MAX_GRID_Y)), (GATHER_BLOCK,),
               (grad_output, argmax, rois, grad_input, *_sizes(geom),
                acc_scalar(dtype, geom.spatial_scale)))
        return grad_input

    def scatter(accumulator):
        launch_elementwise(ROI_POOL, f"roi_pool_backward_atomic<{ctype(dtype)}, {layout}>",
                           executor, grad_output.size,
                           (grad_output, argmax, rois, accumulator, *_sizes(geom)))

    return accumulate_to(xp, x.shape, dtype, scatter, executor)
