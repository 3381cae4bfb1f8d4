"""``torch.nn`` layers computed by gpuconv.

Each layer subclasses its torch counterpart and overrides only ``forward``: the constructor, the
parameters, ``state_dict`` keys, ``extra_repr`` and every attribute are torch's, so a checkpoint
loads either way and ``convert`` can turn a torch layer into its gpuconv twin by changing its
class alone. RoIAlign and RoIPool mirror ``torchvision.ops`` (which is not a dependency); they hold
no state.

``padding_mode``: gpuconv pads with zeros only. A Conv2d with another padding mode ("reflect",
"replicate", "circular") is refused with a ValueError at construction and at call time (should
the attribute be changed later); ``convert`` leaves such layers as they are.
"""
from __future__ import annotations

import torch

from . import conv, pool, roi

__all__ = ["Conv2d", "ConvTranspose2d", "MaxPool2d", "AvgPool2d", "LPPool2d", "AdaptiveAvgPool2d",
           "AdaptiveMaxPool2d", "MaxUnpool2d", "RoIAlign", "RoIPool"]


class _ShownAsGpuconv:
    """Prints as ``gpuconv.<Layer>`` in a model's repr, so converted layers are visible. Holds no
    state (a class change by ``convert`` must not need any)."""

    def _get_name(self) -> str:
        return f"gpuconv.{type(self).__name__}"


def check_padding_mode(padding_mode) -> None:
    if padding_mode != "zeros":
        raise ValueError(f"padding_mode must be 'zeros' for gpuconv (the kernels pad with zeros "
                         f"only), got {padding_mode!r}; keep torch.nn.Conv2d for this layer")


class Conv2d(_ShownAsGpuconv, torch.nn.Conv2d):
    """``torch.nn.Conv2d`` on gpuconv, with two keyword-only extras: ``activation`` (None, "relu",
    "tanh", "sigmoid"), fused into the kernel's epilogue, and ``algorithm`` ("auto" or one of
    ``gpuconv.conv_algorithms``). ``forward(input, residual=None)`` adds a residual before the
    activation, in the same epilogue."""

    # Class-level defaults: a torch.nn.Conv2d turned into this class by ``convert`` keeps plain
    # torch behaviour.
    activation = None
    algorithm = "auto"

    def __init__(self, *args, activation=None, algorithm="auto", **kwargs):
        super().__init__(*args, **kwargs)
        check_padding_mode(self.padding_mode)
        self.activation, self.algorithm = activation, algorithm

    def forward(self, input, residual=None):
        check_padding_mode(self.padding_mode)
        return conv.conv2d(input, self.weight, self.bias, self.stride, self.padding,
                           self.dilation, self.groups, activation=self.activation,
                           residual=residual, algorithm=self.algorithm)

    def extra_repr(self) -> str:
        extras = [f"activation={self.activation!r}"] if self.activation is not None else []
        if self.algorithm != "auto":
            extras.append(f"algorithm={self.algorithm!r}")
        return ", ".join([super().extra_repr(), *extras])


class ConvTranspose2d(_ShownAsGpuconv, torch.nn.ConvTranspose2d):
    """``torch.nn.ConvTranspose2d`` on gpuconv (``forward(input, output_size=None)``)."""

    def forward(self, input, output_size=None):
        check_padding_mode(self.padding_mode)
        return conv.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding,
                                     self.output_padding, self.groups, self.dilation,
                                     output_size=output_size)


class MaxPool2d(_ShownAsGpuconv, torch.nn.MaxPool2d):
    """``torch.nn.MaxPool2d`` on gpuconv."""

    def forward(self, input):
        return pool.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                               ceil_mode=self.ceil_mode, return_indices=self.return_indices)


class AvgPool2d(_ShownAsGpuconv, torch.nn.AvgPool2d):
    """``torch.nn.AvgPool2d`` on gpuconv."""

    def forward(self, input):
        return pool.avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                               self.count_include_pad, self.divisor_override)


class LPPool2d(_ShownAsGpuconv, torch.nn.LPPool2d):
    """``torch.nn.LPPool2d`` on gpuconv."""

    def forward(self, input):
        return pool.lp_pool2d(input, self.norm_type, self.kernel_size, self.stride,
                              self.ceil_mode)


class AdaptiveAvgPool2d(_ShownAsGpuconv, torch.nn.AdaptiveAvgPool2d):
    """``torch.nn.AdaptiveAvgPool2d`` on gpuconv."""

    def forward(self, input):
        return pool.adaptive_avg_pool2d(input, self.output_size)


class AdaptiveMaxPool2d(_ShownAsGpuconv, torch.nn.AdaptiveMaxPool2d):
    """``torch.nn.AdaptiveMaxPool2d`` on gpuconv."""

    def forward(self, input):
        return pool.adaptive_max_pool2d(input, self.output_size, self.return_indices)


class MaxUnpool2d(_ShownAsGpuconv, torch.nn.MaxUnpool2d):
    """``torch.nn.MaxUnpool2d`` on gpuconv (``forward(input, indices, output_size=None)``)."""

    def forward(self, input, indices, output_size=None):
        return pool.max_unpool2d(input, indices, self.kernel_size, self.stride, self.padding,
                                 output_size)


class RoIAlign(_ShownAsGpuconv, torch.nn.Module):
    """``torchvision.ops.RoIAlign`` on gpuconv: ``forward(input, rois)``, rois a Tensor[K, 5] or
    a list of Tensor[K_i, 4]."""

    def __init__(self, output_size, spatial_scale: float, sampling_ratio: int,
                 aligned: bool = False):
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, input, rois):
        return roi.roi_align(input, rois, self.output_size, self.spatial_scale,
                             self.sampling_ratio, self.aligned)

    def __repr__(self) -> str:
        return (f"{self._get_name()}(output_size={self.output_size}, "
                f"spatial_scale={self.spatial_scale}, sampling_ratio={self.sampling_ratio}, "
                f"aligned={self.aligned})")


class RoIPool(_ShownAsGpuconv, torch.nn.Module):
    """``torchvision.ops.RoIPool`` on gpuconv: ``forward(input, rois)``."""

    def __init__(self, output_size, spatial_scale: float):
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale

    def forward(self, input, rois):
        return roi.roi_pool(input, rois, self.output_size, self.spatial_scale)

    def __repr__(self) -> str:
        return (f"{self._get_name()}(output_size={self.output_size}, "
                f"spatial_scale={self.spatial_scale})")
