"""``roi_align`` and ``roi_pool`` for torch tensors, with ``torchvision.ops``' signatures and
semantics: ``boxes`` is a Tensor[K, 5] of rows [batch_index, x1, y1, x2, y2] or a list of
Tensor[K_i, 4], one per image, of the input's dtype and device. As in torchvision, the boxes
get no gradient; the input's gradient comes from ``gpuconv.grad``.
"""
from __future__ import annotations

import torch

from gpuconv.roi import api as roi_api
from gpuconv.roi import grad as roi_grad
from gpuconv.roi.geometry import check_roi_arguments

from ._args import check_batched
from ._autocast import autocast_float32
from ._autograd import apply, deterministic, first_order_backward
from ._bridge import common_device, data_format_for, on_device_of, to_array, to_tensor
from ._custom_op import compute, computation, image, like, recording_graph, stand_in
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


# Under torch.compile (_custom_op.py): the ROI computations' arguments after the image tensors
# are the box tensors, then the other arguments, the last of which says whether the boxes were a
# list of per-image tensors.

def _unpacked(rest: tuple, statics: int) -> tuple:
    """(the boxes as given, the other arguments but the last) from ``rest``, the box tensors
    and ``statics`` other arguments."""
    box_tensors, others = rest[:-statics], rest[-statics:]
    return (list(box_tensors) if others[-1] else box_tensors[0]), others[:-1]


def _describe_roi(x, *rest):
    boxes, (name, args, fmt) = _unpacked(rest, 4)
    common_device({"input": x, **_box_tensors(boxes)})
    boxes = [stand_in(b) for b in boxes] if isinstance(boxes, list) else stand_in(boxes)
    call = check_roi_arguments(stand_in(x, fmt), boxes, *args, data_format=fmt,
                               values="trusted")
    return image(call.geometry.output_shape(fmt), fmt, x.dtype)


@computation("roi", _describe_roi, reads_host=True)
def _roi(x, *rest):
    boxes, (name, args, fmt) = _unpacked(rest, 4)
    with on_device_of(x.device):
        y = getattr(roi_api, name)(to_array(x, fmt), _box_arrays(boxes), *args, data_format=fmt)
    return to_tensor(y, x.dtype, fmt)


@computation("roi_gradient", lambda grad_out, x, *rest: like(x, rest[-2]),
             reads_host=True)
def _roi_gradient_of(grad_out, x, *rest):
    boxes, (name, args, det, fmt) = _unpacked(rest, 5)
    with on_device_of(x.device):
        grad = getattr(roi_grad, name)(to_array(grad_out, fmt), to_array(x, fmt),
                                       _box_arrays(boxes), *args, data_format=fmt,
                                       deterministic=det)
    return to_tensor(grad, x.dtype, fmt)


def _compiled_forward(ctx, x, boxes, name, args):
    """The forward under torch.compile: the boxes are saved for the backward, which checks
    them again (the checked rois are the custom operator's own)."""
    listed = isinstance(boxes, (list, tuple))
    box_tensors = tuple(boxes) if listed else (boxes,)
    common_device({"input": x, **_box_tensors(boxes)})
    fmt = data_format_for(x)
    ctx.function_name, ctx.args, ctx.data_format, ctx.rois = name, args, fmt, None
    ctx.listed = listed
    ctx.save_for_backward(x, *box_tensors)
    return compute("roi", (x, *box_tensors), (name, args, fmt, listed))


def _roi_gradient(grad_out, x, boxes, name, args, fmt):
    listed = isinstance(boxes, list)
    return compute("roi_gradient", (grad_out, x, *(boxes if listed else (boxes,))),
                   (name, args, deterministic(), fmt, listed))


class RoiFunction(torch.autograd.Function):
    """y = gpuconv.<name>(x, boxes, *args);
    grad_x = gpuconv.grad.<name>(grad_y, x, boxes, *args). As torchvision's autograd does, the
    boxes are saved for the backward (changing them in place before it is an error) and
    roi_pool keeps its forward's argmax (on the kernels; the reference recomputes it). The
    backward takes the rois the forward checked, unscanned: on CUDA tensors a scan is a device
    synchronization."""

    @staticmethod
    def forward(ctx, x, boxes, name, args):
        if recording_graph():
            return _compiled_forward(ctx, x, boxes, name, args)
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
        if ctx.rois is None:            # compiled: the boxes were saved, not checked rois
            boxes = list(kept) if ctx.listed else kept[0]
            grad = _roi_gradient(grad_out, x, boxes, ctx.function_name, ctx.args, fmt)
            return grad, None, None, None
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
    check_batched(input)
    # torchvision's ROI results are contiguous (K, C, PH, PW) whatever the input's layout (a
    # detection head may view them): a channels_last input's NHWC result is copied so
    return _applied(input, boxes, "roi_align",
                    (output_size, spatial_scale, sampling_ratio, aligned)).contiguous()


@dispatches_torch_function
def roi_pool(input, boxes, output_size, spatial_scale=1.0):
    """``torchvision.ops.roi_pool``: (K, C, PH, PW) maxima over each box's bins (box corners
    rounded to pixels; an empty bin gives 0)."""
    check_batched(input)
    # contiguous, as torchvision's (see roi_align)
    return _applied(input, boxes, "roi_pool", (output_size, spatial_scale)).contiguous()


def _applied(input, boxes, name: str, args: tuple):
    """RoiFunction of ``name``; under torch.autocast as torchvision's autocast kernels: the
    input and boxes in float32, the result cast back to the input's dtype (outside the
    Function, so that autograd carries the casts' gradients)."""
    listed = isinstance(boxes, (list, tuple))
    cast = autocast_float32(input, *(boxes if listed else (boxes,)))
    if cast is None:
        return apply(RoiFunction, input, boxes, name, args)
    boxes32 = list(cast[1:]) if listed else cast[1]
    return apply(RoiFunction, cast[0], boxes32, name, args).to(input.dtype)
