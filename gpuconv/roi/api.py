"""Public region-of-interest functions, with torchvision.ops semantics (api.md).

Each front validates once (gpuconv.roi.geometry), then hands the normalized call to the executor
that the arrays' library selects: the NumPy reference, or the CUDA kernels through the family's
launcher (on a GPU, or on the CPU under ``gpuconv.simulate()``); a call whose signature was seen
before replays that launcher's recorded launches (gpuconv/roi/plans.py).
"""
from __future__ import annotations

from ..reference import roi as reference
from . import plans
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
    return roi_align_keeping_rois(x, boxes, output_size, spatial_scale, sampling_ratio, aligned,
                                  data_format=data_format)[0]


def roi_align_keeping_rois(x, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1,
                           aligned=False, *, data_format="NCHW"):
    """(y, rois): ``roi_align``'s output and the checked, contiguous (K, 5) rois its boxes
    became. Not public API: the framework wrappers keep the rois for the backward
    (``gpuconv.roi.grad.roi_align_from_checked_rois``), which then neither rebuilds nor scans
    them again (a scan of CuPy rois is a device synchronization)."""
    def full_path():
        call = check_roi_arguments(x, boxes, output_size, spatial_scale, sampling_ratio,
                                   aligned, data_format=data_format, values="deferred")
        geom, rois = call.geometry, call.rois
        y = call.run(geom.output_shape(data_format),
                     lambda: reference.roi_align(geom, x, rois, data_format=data_format),
                     lambda launch, executor: launch.roi_align(
                         geom, x, rois, data_format=data_format, executor=executor))
        return y, rois, plans.rows_answer(call)

    return plans.call("roi_align", {"x": x, "boxes": boxes},
                      (output_size, spatial_scale, sampling_ratio, aligned, data_format),
                      full_path, scanned=True)


def roi_pool(x, boxes, output_size, spatial_scale=1.0, *, data_format="NCHW"):
    """Region-of-interest max pooling (Fast R-CNN), as ``torchvision.ops.roi_pool``.

    Arguments as ``roi_align``. Box corners are rounded to pixels; a bin with no pixel gives 0.
    Returns (K, C, PH, PW) ((K, PH, PW, C) for NHWC) of x's dtype.
    """
    return _roi_pool(x, boxes, output_size, spatial_scale, data_format=data_format,
                     with_argmax=False)[0]


def roi_pool_with_argmax(x, boxes, output_size, spatial_scale=1.0, *, data_format="NCHW"):
    """(y, argmax, rois): ``roi_pool``'s output, the argmax its backward needs (an int64 array
    of y's shape: flat h * W + w of each bin's maximum, -1 for an empty bin; None where the
    NumPy reference computes, whose backward recomputes it) and the checked (K, 5) rois. Not
    public API: the framework wrappers keep argmax and rois between the passes and hand them to
    ``gpuconv.roi.grad.roi_pool_with_own_argmax``, sparing the backward a forward pass and a
    second scan of the rois."""
    return _roi_pool(x, boxes, output_size, spatial_scale, data_format=data_format,
                     with_argmax=True)


def _roi_pool(x, boxes, output_size, spatial_scale, *, data_format, with_argmax):
    def full_path():
        call = check_roi_arguments(x, boxes, output_size, spatial_scale,
                                   data_format=data_format, values="deferred")
        geom, rois = call.geometry, call.rois
        y = call.run(geom.output_shape(data_format),
                     lambda: reference.roi_pool(geom, x, rois, data_format=data_format),
                     lambda launch, executor: launch.roi_pool(
                         geom, x, rois, data_format=data_format, executor=executor,
                         with_argmax=with_argmax))
        # only the kernels return an argmax (the reference's backward recomputes its own)
        y, argmax = y if type(y) is tuple else (y, None)
        if not with_argmax:
            return y, rois, plans.rows_answer(call)
        return y, argmax, rois, plans.rows_answer(call)

    front = "roi_pool_with_argmax" if with_argmax else "roi_pool"
    outputs = plans.call(front, {"x": x, "boxes": boxes},
                         (output_size, spatial_scale, data_format), full_path, scanned=True)
    return outputs if with_argmax else (outputs[0], None, outputs[1])
