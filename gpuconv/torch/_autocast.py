"""torch.autocast for the gpuconv.torch convolutions.

Inside an autocast region torch runs ``conv2d`` and ``conv_transpose2d`` in the region's lower
precision (CUDA: float16 unless set otherwise; CPU: bfloat16): its floating-point arguments other
than float64 are cast to that dtype first, so that a bfloat16 activation meets a float32 weight
without a dtype error and the output comes out in the lower precision. The gpuconv wrappers do
the same, with the casts outside their autograd Function, so that autograd carries each
gradient back to its parameter's own dtype.

Pooling runs in its input's dtype under autocast, as torch's does, but for max_unpool2d, which
torch's CPU autocast runs in float32 (its float32 list). torchvision's ROI autocast kernels (CPU
and CUDA) cast the input and the boxes to float32 and the result back to the input's dtype: a
float16 feature map meets float32 proposals there. ``autocast_float32`` gives both.
"""
from __future__ import annotations

import torch


def _region_dtype(device_type: str):
    """The autocast dtype of ``device_type`` if a region is active there, else None."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except TypeError:                      # torch < 2.4: no device_type argument
        enabled = (torch.is_autocast_cpu_enabled() if device_type == "cpu"
                   else device_type == "cuda" and torch.is_autocast_enabled())
    if not enabled:
        return None
    try:
        return torch.get_autocast_dtype(device_type)
    except AttributeError:                 # torch < 2.4
        return (torch.get_autocast_cpu_dtype() if device_type == "cpu"
                else torch.get_autocast_gpu_dtype())


# One C call answers "no region anywhere", the common case (torch >= 2.4).
_any_region = getattr(torch._C, "_is_any_autocast_enabled", lambda: True)


def _active_region(tensors):
    """(the first tensor of ``tensors``, the autocast dtype on its device), or None where no
    region is active there."""
    if not _any_region():
        return None
    first = next((t for t in tensors if isinstance(t, torch.Tensor)), None)
    if first is None:
        return None
    dtype = _region_dtype(first.device.type)
    return None if dtype is None else (first, dtype)


def autocast_operands(*tensors):
    """``tensors`` as an autocast region hands them to a lower-precision op (None passes)."""
    region = _active_region(tensors)
    if region is None:
        return tensors
    first, dtype = region
    return tuple(t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point()
                 and t.dtype != torch.float64 and t.device.type == first.device.type else t
                 for t in tensors)


def autocast_float32(*tensors, device_types=("cpu", "cuda")):
    """``tensors`` cast as an autocast region hands them to an op of its float32 list (floating
    tensors but float64 to float32; None and non-tensors pass), or None where no region is
    active on the first tensor's device, or that device's type is not in ``device_types``."""
    region = _active_region(tensors)
    if region is None or region[0].device.type not in device_types:
        return None
    return tuple(t.float() if isinstance(t, torch.Tensor) and t.is_floating_point()
                 and t.dtype != torch.float64 else t for t in tensors)
