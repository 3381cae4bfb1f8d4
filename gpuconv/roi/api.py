"""Public region-of-interest functions, with torchvision.ops semantics (api.md).

Each front validates once (gpuconv.roi.geometry), then hands the normalized call to the executor
that the arrays' library selects: the NumPy reference, or the CUDA kernels through the family's
launcher (on a GPU, or on the CPU under ``gpuconv.simulate()``).
"""
from __future__ import annotations

from .. import _state
from ..reference import roi as reference
from .geometry import check_roi_arguments

__all__ = ["roi_align", "roi_pool"]


def roi_align(x, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False, *,
              data_format="NCHW"):
    """Region-of-interest align (Mask R-CNN), as ``torchvision.ops.roi_align``.

    x: (N, C, H, W), or (N, H, W, C) with ``data_format="NHWC"``.
    boxes: a (K, 5) array of rows [batch_index, x1, y1, x2, y2], or a list of (K_i, 4) arrays,
        one per image (the batch index is the list position); same library and dtype as x.
    output_size: int or (PH, PW), >= 1. spatial_scale: > 0, maps box to feature coordinates.
    sampling_ratio: samples per bin along each axis; any value <= 0 is adaptive,
        ceil(roi_size / bins), as in torchvision. aligned: shift boxes by -0.5 pixel.
    Returns (K, C, PH, PW) ((K, PH, PW, C) for NHWC) of x's dtype.
    """
    call = check_roi_arguments(x, boxes, output_size, spatial_scale, sampling_ratio, aligned,
                               data_format=data_format)
    geom = call.geometry
    if geom.is_empty:
        return call.arrays.xp.zeros(geom.output_shape(data_format), dtype=call.arrays.dtype)
    executor = _state.executor_for(call.arrays.library)
    if executor == "reference":
        return reference.roi_align(geom, x, call.rois, data_format=data_format)
    from . import launch
    return launch.roi_align(geom, x, call.rois, data_format=data_format, executor=executor)


def roi_pool(x, boxes, output_size, spatial_scale=1.0, *, data_format="NCHW"):
    """Region-of-interest max pooling (Fast R-CNN), as ``torchvision.ops.roi_pool``.

    Arguments as ``roi_align``. Box corners are rounded to pixels; a bin with no pixel gives 0.
    Returns (K, C, PH, PW) ((K, PH, PW, C) for NHWC) of x's dtype.
    """
    call = check_roi_arguments(x, boxes, output_size, spatial_scale, data_format=data_format)
    geom = call.geometry
    if geom.is_empty:
        return call.arrays.xp.zeros(geom.output_shape(data_format), dtype=call.arrays.dtype)
    executor = _state.executor_for(call.arrays.library)
    if executor == "reference":
        return reference.roi_pool(geom, x, call.rois, data_format=data_format)
    from . import launch
    return launch.roi_pool(geom, x, call.rois, data_format=data_format, executor=executor)


def roi_pool_with_argmax(x, boxes, output_size, spatial_scale=1.0, *, data_format="NCHW"):
    """``roi_pool``'s output and the argmax its backward needs: (y, argmax), argmax an int64
    array of y's shape (flat h * W + w of each bin's maximum, -1 for an empty bin), or None
    where the NumPy reference computes (its backward recomputes). Not public API: the framework
    wrappers keep the argmax between the passes and hand it to
    ``gpuconv.roi.grad.roi_pool_with_own_argmax``, sparing the backward a forward pass."""
    call = check_roi_arguments(x, boxes, output_size, spatial_scale, data_format=data_format)
    geom = call.geometry
    executor = _state.executor_for(call.arrays.library)
    if geom.is_empty or executor == "reference":
        return roi_pool(x, boxes, output_size, spatial_scale, data_format=data_format), None
    from . import launch
    return launch.roi_pool(geom, x, call.rois, data_format=data_format, executor=executor,
                           with_argmax=True)
