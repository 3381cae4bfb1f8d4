from . import grad  # noqa: F401  (gpuconv.grad re-exports its functions)
from .api import *  # noqa: F401,F403
from .api import __all__  # noqa: F401
