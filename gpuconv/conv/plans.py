"""Launch plans of ``gpuconv.conv2d`` and of its gradients ``gpuconv.grad.conv2d_input`` /
``conv2d_weight`` / ``conv2d_bias`` (gpuconv/_plans.py): the signature of a call, and which
launch paths are recorded.

A signature is everything the front's checks and the launchers' choices read: each array's
type, dtype (byte order included), shape, strides, first element's alignment to 16 bytes (the
vector kernels' requirement) and device, the current device, the executor, and the scalar
arguments as plain values (``_args._plain``: ``True`` and ``1`` differ, NumPy integers take the
full path). Calls with ``out=`` (checks of overlap and writability that depend on addresses),
under autotuning (whose choice can change while measuring) and on the NumPy reference have none.
"""
from __future__ import annotations

import sys
from typing import Any, Callable

import numpy as np

from .. import _state
from .._args import _NotPlain, _plain
from .._plans import PlanCache
from . import autotune

PLANS = PlanCache()

# The forward algorithms whose launchers do all their GPU work through recorded launches and
# fresh, derived or viewed arrays (no elementwise CuPy operation the recorder cannot see). Not
# im2col_gemm: its gemm="cublas" multiplies with cupy.matmul. Every backward launcher does
# (launch_bwd_data's fill of unreached pixels goes through _plans.apply).
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


def signature(arrays: tuple, scalars: tuple):
    """The plan key of a call of ``arrays`` (the first one required; None allowed after it)
    and ``scalars``; None when the call has no plan."""
    if arrays[0] is None or autotune.enabled():
        return None
    first = type(arrays[0])
    cupy = sys.modules.get("cupy")
    try:
        if first is np.ndarray:
            if _state.active_simulation() is None:
                return None              # the NumPy reference: nothing is launched
            place = "simulator"
        elif cupy is not None and first is cupy.ndarray:
            place = cupy.cuda.runtime.getDevice()
        else:
            return None
        return (place, tuple(_array_key(a) for a in arrays), _plain(scalars))
    except (_NotPlain, AttributeError):
        return None


def replay(key, roles: dict):
    """The result of replaying ``key``'s plan over ``roles``; None without a key or a plan."""
    return PLANS.replay(key, roles) if key is not None else None


def run(key, roles: dict, launch: Callable[[], Any],
        recorded_if: Callable[[Any], bool] = lambda ran: True):
    """``launch()`` (the launcher call of a validated front), recorded as ``key``'s plan when
    ``key`` is new and ``recorded_if(what the path noted it ran)`` holds."""
    if not PLANS.wants(key):
        return launch()
    with PLANS.record(key, roles) as recording:
        result = launch()
        recording.keep(result, allowed=recorded_if(recording.ran))
    return result
