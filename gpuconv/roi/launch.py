"""The ROI family's launchers: what gpuconv.roi.api and gpuconv.roi.grad call for the "cupy" and
"simulator" executors, with the validated RoiGeometry and the (K, 5) rois.

Atomics: the default backward of roi_align and of roi_pool scatters with float atomicAdd
(torchvision's formulation); ``deterministic=True`` selects gather kernels without atomics.
"""
from .launch_align import grad_roi_align, roi_align
from .launch_pool import grad_roi_pool, roi_pool

__all__ = ["grad_roi_align", "grad_roi_pool", "roi_align", "roi_pool"]
