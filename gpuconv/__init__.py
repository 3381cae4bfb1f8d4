"""gpuconv: raw CUDA convolution and pooling kernels for Python.

The public API mirrors ``torch.nn.functional``, ``torch.nn.grad`` and ``torchvision.ops``; NumPy
arrays are computed by the NumPy reference (or, inside ``gpuconv.simulate()``, by the CUDA kernels
run on the CPU), CuPy arrays by the CUDA kernels on the GPU. See README.md.
"""
__version__ = "0.1.0"

from . import grad  # noqa: F401
from ._state import is_deterministic, set_deterministic  # noqa: F401
from ._loader import KernelCompileError, precompile  # noqa: F401
from .conv import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .roi import *  # noqa: F401,F403
from .simulator import simulate  # noqa: F401
from .utils import *  # noqa: F401,F403
