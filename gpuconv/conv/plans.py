"""Launch plans of ``gpuconv.conv2d`` (gpuconv/_plans.py): the signature of a call, and which of
the forward's launch paths are recorded.

A signature is everything the front's checks and the launchers' choices read: each array's
type, dtype (byte order included), shape, strides, first element's alignment to 16 bytes (the
vector kernels' requirement) and device, the current device, the executor, and the scalar
arguments as plain values (``_args._plain``: ``True`` and ``1`` differ, NumPy integers take the
full path). Calls with ``out=`` (checks of overlap and writability that depend on addresses),
under autotuning (whose choice can change while measuring) and on the NumPy reference have none.
"""
from __future__ import annotations

import sys

import numpy as np

from .. import _state
from .._args import _NotPlain, _plain
from .._plans import PlanCache
from . import autotune

PLANS = PlanCache()

# The algorithms whose launchers do all their GPU work through recorded launches and fresh,
# derived or viewed arrays (no elementwise CuPy operation the recorder cannot see). Not
# im2col_gemm: its gemm="cublas" multiplies with cupy.matmul.
RECORDED_ALGORITHMS = frozenset({"direct", "implicit_gemm", "pointwise", "depthwise",
                                 "winograd_nonfused"})

# Alignment the key records: the widest vector access of any kernel (16 bytes).
ALIGNMENT = 16


def _array_key(a):
    if a is None:
        return None
    t = type(a)
    if t is np.ndarray:
        return (t, a.dtype, a.shape, a.strides, a.ctypes.data % ALIGNMENT)
    cupy = sys.modules.get("cupy")
    if cupy is not None and t is cupy.ndarray:
        memory = a.data
        return (t, a.dtype, a.shape, a.strides, memory.ptr % ALIGNMENT, memory.device_id)
    raise _NotPlain


def signature(x, weight, bias, residual, scalars: tuple):
    """The plan key of a conv2d call without ``out=``; None when it has no plan."""
    if weight is None or autotune.enabled():
        return None
    cupy = sys.modules.get("cupy")
    try:
        if type(x) is np.ndarray:
            if _state.active_simulation() is None:
                return None              # the NumPy reference: nothing is launched
            place = "simulator"
        elif cupy is not None and type(x) is cupy.ndarray:
            place = cupy.cuda.runtime.getDevice()
        else:
            return None
        return (place, _array_key(x), _array_key(weight), _array_key(bias),
                _array_key(residual), _plain(scalars))
    except (_NotPlain, AttributeError):
        return None
