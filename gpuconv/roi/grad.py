"""Gradients of the region-of-interest functions, exported as ``gpuconv.grad.*``.

``grad.F(grad_output, <F's own arguments>)`` returns the gradient with respect to x, F's first
argument (api.md); x itself is passed because roi_pool routes each bin's gradient to the pixel
holding its maximum, and roi_align needs x's shape and dtype.
"""
from __future__ import annotations

import numpy as np

from .. import _state
from .._arrays import check_index_array
from ..reference import roi as reference
from . import plans
from .geometry import check_roi_arguments

__all__ = ["roi_align", "roi_pool"]


@_state.resolving_deterministic
def roi_align(grad_output, x, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1,
              aligned=False, *, data_format="NCHW", deterministic=None):
    """Gradient of ``gpuconv.roi_align`` with respect to x (shape and dtype of x).

    ``deterministic=True`` (or ``gpuconv.set_deterministic(True)``) makes the result bitwise
    reproducible.
    """
    return _roi_align(grad_output, x, boxes, output_size, spatial_scale, sampling_ratio, aligned,
                      data_format=data_format, deterministic=deterministic, values="deferred")


@_state.resolving_deterministic
def roi_align_from_checked_rois(grad_output, x, rois, output_size, spatial_scale=1.0,
                                sampling_ratio=-1, aligned=False, *, data_format="NCHW",
                                deterministic=None):
    """``roi_align``'s gradient from the rois that ``gpuconv.roi.api.roi_align_keeping_rois``
    returned for the same arguments. Not public API: the rois' values are trusted (not scanned
    again), which only a framework wrapper whose autograd keeps the boxes unchanged between
    the passes can promise; everything else is checked."""
    return _roi_align(grad_output, x, rois, output_size, spatial_scale, sampling_ratio, aligned,
                      data_format=data_format, deterministic=deterministic, values="trusted")


def _roi_align(grad_output, x, boxes, output_size, spatial_scale, sampling_ratio, aligned, *,
               data_format, deterministic, values):
    def full_path():
        mode = _state.is_deterministic(deterministic)
        call = check_roi_arguments(x, boxes, output_size, spatial_scale, sampling_ratio,
                                   aligned, data_format=data_format, grad_output=grad_output,
                                   values=values)
        geom, rois = call.geometry, call.rois
        dx = call.run(geom.input_shape(data_format),
                      lambda: reference.grad_roi_align(geom, grad_output, rois,
                                                       data_format=data_format),
                      lambda launch, executor: launch.grad_roi_align(
                          geom, grad_output, rois, data_format=data_format,
                          deterministic=mode, executor=executor))
        return _outputs(dx, call, values)

    return plans.call("grad roi_align" if values != "trusted" else "grad roi_align trusted",
                      {"grad_output": grad_output, "x": x, "boxes": boxes},
                      (output_size, spatial_scale, sampling_ratio, aligned, data_format),
                      full_path, scanned=values != "trusted", deterministic=deterministic)[0]


@_state.resolving_deterministic
def roi_pool(grad_output, x, boxes, output_size, spatial_scale=1.0, *, data_format="NCHW",
             deterministic=None):
    """Gradient of ``gpuconv.roi_pool`` with respect to x: each bin's gradient goes to the
    pixel torchvision's argmax names (none for an empty bin).

    ``deterministic=True`` (or ``gpuconv.set_deterministic(True)``) makes the result bitwise
    reproducible.
    """
    return _roi_pool(grad_output, x, boxes, output_size, spatial_scale, argmax=None,
                     data_format=data_format, deterministic=deterministic, values="deferred")


@_state.resolving_deterministic
def roi_pool_with_own_argmax(grad_output, x, rois, output_size, spatial_scale=1.0, *, argmax,
                             data_format="NCHW", deterministic=None):
    """``roi_pool``'s gradient from the argmax and the rois that
    ``gpuconv.roi.api.roi_pool_with_argmax`` returned for the same arguments (argmax None:
    recomputed). Not public API: the argmax and rois values are trusted (never scanned), which
    only gpuconv's own forward, and autograd keeping the boxes unchanged, can promise; their
    shapes, dtypes and library are checked."""
    return _roi_pool(grad_output, x, rois, output_size, spatial_scale, argmax=argmax,
                     data_format=data_format, deterministic=deterministic, values="trusted")


def _roi_pool(grad_output, x, boxes, output_size, spatial_scale, *, argmax, data_format,
              deterministic, values):
    def full_path():
        mode = _state.is_deterministic(deterministic)
        call = check_roi_arguments(x, boxes, output_size, spatial_scale, data_format=data_format,
                                   grad_output=grad_output, values=values)
        geom, rois = call.geometry, call.rois

        def kernels(launch, executor):
            if argmax is not None:
                _check_own_argmax(argmax, grad_output, call.arrays.library)
            return launch.grad_roi_pool(geom, grad_output, x, rois, data_format=data_format,
                                        deterministic=mode, executor=executor, argmax=argmax)
        dx = call.run(geom.input_shape(data_format),
                      lambda: reference.grad_roi_pool(geom, grad_output, x, rois,
                                                      data_format=data_format),
                      kernels)
        return _outputs(dx, call, values)

    front = "grad roi_pool" if values != "trusted" else "grad roi_pool trusted"
    return plans.call(front, {"grad_output": grad_output, "x": x, "boxes": boxes,
                              "argmax": argmax},
                      (output_size, spatial_scale, data_format),
                      full_path, scanned=values != "trusted", deterministic=deterministic)[0]


def _outputs(dx, call, values: str) -> tuple:
    """A gradient's full path's outputs for ``plans.call``: with the rows scan's answer unless
    the rois are trusted."""
    return (dx,) if values == "trusted" else (dx, plans.rows_answer(call))


def _check_own_argmax(argmax, grad_output, library: str) -> None:
    check_index_array("argmax", argmax, library)
    if np.dtype(argmax.dtype) != np.int64 or tuple(argmax.shape) != tuple(grad_output.shape):
        raise ValueError(f"argmax must be an int64 array of grad_output's shape "
                         f"{tuple(grad_output.shape)}, got {argmax.dtype} {tuple(argmax.shape)}")
