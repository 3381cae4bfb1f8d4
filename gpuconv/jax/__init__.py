"""gpuconv for JAX: the gpuconv functions on JAX arrays, differentiable (``jax.custom_vjp``
rules that call ``gpuconv.grad``) and usable under ``jax.jit``.

Eager GPU arrays go zero-copy (DLPack) to the CUDA kernels; eager CPU arrays to the NumPy
reference (or the kernels run on the CPU inside ``gpuconv.simulate()``); traced arrays (under
``jax.jit``) through a callback on XLA's own buffers: on a GPU the CUDA kernels on XLA's stream
(``_traced.py``). See docs/frameworks.md.
"""
from .conv import conv2d, conv_transpose2d, explain  # noqa: F401
from .pool import *  # noqa: F401,F403
from .roi import roi_align, roi_pool  # noqa: F401
from . import conv as _conv, pool as _pool, roi as _roi

__all__ = [*_conv.__all__, *_pool.__all__, *_roi.__all__]
