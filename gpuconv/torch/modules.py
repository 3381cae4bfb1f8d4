"""``torch.nn`` layers computed by gpuconv.

Each layer subclasses its torch counterpart and overrides only ``forward``: the constructor, the
parameters, ``state_dict`` keys, ``extra_repr`` and every attribute are torch's, so a checkpoint
loads either way and ``convert`` can turn a torch layer into its gpuconv twin by changing its
class alone. RoIAlign and RoIPool mirror ``torchvision.ops`` (which is not a dependency); they hold
no state.

``padding_mode``: the kernels pad with zeros. A Conv2d with another padding mode ("reflect",
"replicate", "circular") pads its input with ``torch.nn.functional.pad`` first and convolves
without padding, as ``torch.nn.Conv2d`` itself does; ConvTranspose2d takes "zeros" only, as
torch's.
"""
from __future__ import annotations

import torch

from ..conv.geometry import check_activation, check_algorithm
from .conv import conv2d, conv_transpose2d
from .pool import (adaptive_avg_pool2d, adaptive_max_pool2d, avg_pool2d, lp_pool2d, max_pool2d,
                   max_unpool2d)
from .roi import roi_align, roi_pool

__all__ = ["Conv2d", "ConvTranspose2d", "MaxPool2d", "AvgPool2d", "LPPool2d", "AdaptiveAvgPool2d",
           "AdaptiveMaxPool2d", "MaxUnpool2d", "RoIAlign", "RoIPool"]


class _ShownAsGpuconv:
    """Prints as ``gpuconv.<Layer>`` in a model's repr, so converted layers are visible. Holds no
    state (a class change by ``convert`` must not need any)."""

    def _get_name(self) -> str:
        return f"gpuconv.{type(self).__name__}"


PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def check_padding_mode(padding_mode, modes=PADDING_MODES) -> None:
    """A ValueError naming padding_mode unless it is one of ``modes`` (the attribute can be set
    after construction, past torch's own check)."""
    if padding_mode not in modes:
        raise ValueError(f"padding_mode must be one of {', '.join(map(repr, modes))}, "
                         f"got {padding_mode!r}")


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
        # Refused here, as torch refuses its own arguments, not at the first forward pass.
        self.activation, self.algorithm = check_activation(activation), check_algorithm(algorithm)

    def forward(self, input, residual=None):
        check_padding_mode(self.padding_mode)
        padding = self.padding
        if self.padding_mode != "zeros":
            # torch.nn.Conv2d._conv_forward's way: the padded input, convolved without padding.
            input = torch.nn.functional.pad(input, self._reversed_padding_repeated_twice,
                                            mode=self.padding_mode)
            padding = 0
        return conv2d(input, self.weight, self.bias, self.stride, padding, self.dilation,
                      self.groups, activation=self.activation, residual=residual,
                      algorithm=self.algorithm)

    def extra_repr(self) -> str:
        extras = [f"activation={self.activation!r}"] if self.activation is not None else []
        if self.algorithm != "auto":
            extras.append(f"algorithm={self.algorithm!r}")
        return ", ".join([super().extra_repr(), *extras])


class ConvTranspose2d(_ShownAsGpuconv, torch.nn.ConvTranspose2d):
    """``torch.nn.ConvTranspose2d`` on gpuconv (``forward(input, output_size=None)``)."""

    def forward(self, input, output_size=None):
        check_padding_mode(self.padding_mode, ("zeros",))    # torch's transposed layers too
        output_padding = self.output_padding
        if output_size is not None and torch.jit.is_tracing():
            # As torch's layer: the output padding taken from output_size in Python, so that a
            # trace records the padding (the same at other sizes, for U-Net's output_size=
            # skip.size()) rather than the traced output_size.
            output_padding = self._output_padding(input, output_size, self.stride, self.padding,
                                                  self.kernel_size, 2, self.dilation)
            output_size = None
        return conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding,
                                output_padding, self.groups, self.dilation,
                                output_size=output_size)


class MaxPool2d(_ShownAsGpuconv, torch.nn.MaxPool2d):
    """``torch.nn.MaxPool2d`` on gpuconv."""

    def forward(self, input):
        return max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                          ceil_mode=self.ceil_mode, return_indices=self.return_indices)


class AvgPool2d(_ShownAsGpuconv, torch.nn.AvgPool2d):
    """``torch.nn.AvgPool2d`` on gpuconv."""

    def forward(self, input):
        return avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                          self.count_include_pad, self.divisor_override)


def norm_type_as_float(norm_type) -> float:
    """``float(norm_type)``, as ``torch.nn.LPPool2d.forward`` passes it to F.lp_pool2d: the layer
    takes whatever float() reads (a 0-d tensor, a NumPy scalar, a bool, a numeric string)."""
    try:
        return float(norm_type)
    except (TypeError, ValueError, RuntimeError) as error:   # RuntimeError: a many-element tensor
        raise TypeError(f"norm_type must be a real number (LPPool2d passes float(norm_type)), "
                        f"got {type(norm_type).__name__} {norm_type!r}") from error


class LPPool2d(_ShownAsGpuconv, torch.nn.LPPool2d):
    """``torch.nn.LPPool2d`` on gpuconv."""

    def forward(self, input):
        return lp_pool2d(input, norm_type_as_float(self.norm_type), self.kernel_size,
                         self.stride, self.ceil_mode)


class AdaptiveAvgPool2d(_ShownAsGpuconv, torch.nn.AdaptiveAvgPool2d):
    """``torch.nn.AdaptiveAvgPool2d`` on gpuconv."""

    def forward(self, input):
        return adaptive_avg_pool2d(input, self.output_size)


class AdaptiveMaxPool2d(_ShownAsGpuconv, torch.nn.AdaptiveMaxPool2d):
    """``torch.nn.AdaptiveMaxPool2d`` on gpuconv."""

    def forward(self, input):
        return adaptive_max_pool2d(input, self.output_size, self.return_indices)


class MaxUnpool2d(_ShownAsGpuconv, torch.nn.MaxUnpool2d):
    """``torch.nn.MaxUnpool2d`` on gpuconv (``forward(input, indices, output_size=None)``)."""

    def forward(self, input, indices, output_size=None):
        return max_unpool2d(input, indices, self.kernel_size, self.stride, self.padding,
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
        return roi_align(input, rois, self.output_size, self.spatial_scale,
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
        return roi_pool(input, rois, self.output_size, self.spatial_scale)

    def __repr__(self) -> str:
        return (f"{self._get_name()}(output_size={self.output_size}, "
                f"spatial_scale={self.spatial_scale})")
