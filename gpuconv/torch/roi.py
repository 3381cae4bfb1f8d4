"""``roi_align`` and ``roi_pool`` for torch tensors, with ``torchvision.ops``' signatures and
semantics: ``boxes`` is a Tensor[K, 5] of rows [batch_index, x1, y1, x2, y2] or a list of
Tensor[K_i, 4], one per image, of the input's dtype and device. As in torchvision, the boxes
get no gradient; the input's gradient comes from ``gpuconv.grad``.
"""
from __future__ import annotations

import torch

from gpuconv.roi import api as roi_api
from gpuconv.roi import grad as roi_grad

from ._autograd import apply, deterministic, first_order_backward
from ._bridge import common_device, data_format_for, on_device_of, to_array, to_tensor
from ._overrides import dispatches_torch_function

__all__ = ["roi_align", "roi_pool"]


def _box_tensors(boxes) -> dict:
    if isinstance(boxes, (list, tuple)):
        return {f"boxes[{i}]": b for i, b in enumerate(boxes)}
    return {"boxes": boxes}


def _box_arrays(boxes):
    if isinstance(boxes, (list, tuple)):
        return [to_array(b) for b in boxes]
    return to_array(boxes)


class RoiFunction(torch.autograd.Function):
    """y = gpuconv.<name>(x, boxes, *args);
    grad_x = gpuconv.grad.<name>(grad_y, x, boxes, *args). As torchvision's autograd does, the
    boxes are saved for the backward (changing them in place before it is an error) and
    roi_pool keeps its forward's argmax (on the kernels; the reference recomputes it). The
    backward takes the rois the forward checked, unscanned: on CUDA tensors a scan is a device
    synchronization."""

    @staticmethod
    def forward(ctx, x, boxes, name, args):
        box_tensors = _box_tensors(boxes)
        device = common_device({"input": x, **box_tensors})
        fmt = data_format_for(x)
        argmax = None
        with on_device_of(device):
            if name == "roi_pool":
                y, argmax, rois = roi_api.roi_pool_with_argmax(to_array(x, fmt), _box_arrays(boxes),
                                                               *args, data_format=fmt)
            else:
                y, rois = roi_api.roi_align_keeping_rois(to_array(x, fmt), _box_arrays(boxes),
                                                         *args, data_format=fmt)
        # rois may view the boxes' memory: saving the boxes keeps it alive and unchanged.
        ctx.function_name, ctx.args, ctx.data_format, ctx.rois = name, args, fmt, rois
        ctx.has_argmax = argmax is not None
        kept = [to_tensor(argmax, torch.int64, fmt)] if ctx.has_argmax else []
        ctx.save_for_backward(x, *kept, *box_tensors.values())
        return to_tensor(y, x.dtype, fmt)

    @staticmethod
    @first_order_backward
    def backward(ctx, grad_out):
        x, *kept = ctx.saved_tensors    # raises if x or the boxes changed in place since
        fmt = ctx.data_format
        args = (to_array(grad_out, fmt), to_array(x, fmt), ctx.rois, *ctx.args)
        with on_device_of(x.device):
            if ctx.function_name == "roi_pool":
                argmax = to_array(kept[0], fmt) if ctx.has_argmax else None
                grad = roi_grad.roi_pool_with_own_argmax(
                    *args, argmax=argmax, data_format=fmt, deterministic=deterministic())
            else:
                grad = roi_grad.roi_align_from_checked_rois(
                    *args, data_format=fmt, deterministic=deterministic())
        return to_tensor(grad, x.dtype, fmt), None, None, None


@dispatches_torch_function
def roi_align(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """``torchvision.ops.roi_align``: (K, C, PH, PW) bilinear averages over each box's bins;
    ``sampling_ratio <= 0`` is adaptive (ceil(box size / bins) samples per bin and axis)."""
    return apply(RoiFunction, input, boxes, "roi_align",
                 (output_size, spatial_scale, sampling_ratio, aligned))


@dispatches_torch_function
def roi_pool(input, boxes, output_size, spatial_scale=1.0):
    """``torchvision.ops.roi_pool``: (K, C, PH, PW) maxima over each box's bins (box corners
    rounded to pixels; an empty bin gives 0)."""
    return apply(RoiFunction, input, boxes, "roi_pool", (output_size, spatial_scale))
