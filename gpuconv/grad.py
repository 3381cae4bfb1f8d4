"""``gpuconv.grad``: gradients of every operation, mirroring ``torch.nn.grad``.

``grad.conv2d_input``, ``grad.conv2d_weight``, ``grad.conv2d_bias``, and for every pooling and ROI
function F, ``grad.F(grad_output, <F's own arguments>)``: the gradient with respect to F's first
argument.
"""
from .conv.grad import *  # noqa: F401,F403
from .pool.grad import *  # noqa: F401,F403
from .roi.grad import *  # noqa: F401,F403
from .conv.grad import __all__ as _conv
from .pool.grad import __all__ as _pool
from .roi.grad import __all__ as _roi

__all__ = [*_conv, *_pool, *_roi]
