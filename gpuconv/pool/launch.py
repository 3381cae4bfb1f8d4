"""The pooling family's launchers, one entry per public function and gradient: what
``gpuconv.pool.dispatch`` calls for the "cupy" and "simulator" executors. Each takes the
validated geometry, the arrays in the call's ``data_format`` and the front's keyword options
(``gpuconv.pool.reference_calls`` states the same interface for the NumPy reference).

Which backward passes use atomics: only the max poolings' (windowed and adaptive) where their
windows or bins overlap, in the default mode: a scatter through the forward's indices with float
atomics, as PyTorch's (launch_switches.py). Where windows do not overlap the scatter's plain
stores are exact in both modes; ``deterministic=True`` takes the gathers (each input element sums
the windows that cover it, in a fixed order) where they overlap. Every other pooling backward is
a gather in both modes. max_unpool2d's forward resolves repeated indices with an integer
atomicMax, whose result does not depend on the order.
"""
from .launch_adaptive import (adaptive_avg_pool2d, adaptive_max_pool2d,
                              grad_adaptive_avg_pool2d, grad_adaptive_max_pool2d,
                              grad_spatial_pyramid_pool2d, spatial_pyramid_pool2d)
from .launch_global import (global_avg_pool2d, global_max_pool2d,
                            grad_global_avg_pool2d, grad_global_max_pool2d)
from .launch_unpool import grad_max_unpool2d, max_unpool2d
from .launch_window import (avg_pool2d, grad_avg_pool2d, grad_lp_pool2d,
                            grad_max_pool2d, lp_pool2d, max_pool2d)

__all__ = ["max_pool2d", "avg_pool2d", "lp_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
           "global_avg_pool2d", "global_max_pool2d", "spatial_pyramid_pool2d", "max_unpool2d",
           "grad_max_pool2d", "grad_avg_pool2d", "grad_lp_pool2d", "grad_adaptive_avg_pool2d",
           "grad_adaptive_max_pool2d", "grad_global_avg_pool2d", "grad_global_max_pool2d",
           "grad_spatial_pyramid_pool2d", "grad_max_unpool2d"]
