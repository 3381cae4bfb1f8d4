"""gpuconv for PyTorch.

- Functions with ``torch.nn.functional``'s names and signatures (and ``torchvision.ops``' for
  roi_align / roi_pool), plus gpuconv's extras: ``import gpuconv.torch as F``.
- ``torch.nn`` layers (``gpuconv.torch.Conv2d`` ...), state_dict-compatible with torch's.
- ``convert(model)``: every supported layer of a model switched to gpuconv in place.

CUDA tensors run on the CUDA kernels (zero-copy, torch's current stream and device); CPU tensors
on the NumPy reference, or on the CUDA kernels executed on the CPU inside ``gpuconv.simulate()``.
See docs/frameworks.md.
"""
from .conv import conv2d, conv_transpose2d  # noqa: F401
from .convert import ConversionReport, Skipped, Swapped, convert  # noqa: F401
from .modules import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .roi import roi_align, roi_pool  # noqa: F401
from . import conv as _conv, modules as _modules, pool as _pool, roi as _roi

__all__ = [*_conv.__all__, *_pool.__all__, *_roi.__all__, *_modules.__all__,
           "convert", "ConversionReport", "Swapped", "Skipped"]
