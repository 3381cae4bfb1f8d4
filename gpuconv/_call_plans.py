"""Launch plans of the public fronts (gpuconv/_plans.py): the signature of a call, its replay, and
its recording. The convolution fronts (gpuconv/conv/plans.py), the pooling fronts
(gpuconv/pool/api.py, grad.py) and the region-of-interest fronts (gpuconv/roi/plans.py) share one
cache; a key starts with the front's name.

A signature is everything a front's checks and its launchers' choices read: each array's type,
dtype (byte order included), shape, strides, first element's alignment to 16 bytes (the vector
kernels' requirement) and device, the current device, the executor, and the scalar arguments as
plain values (``_args._plain``: ``True`` and ``1`` differ, NumPy scalars take the full path).
The NumPy reference has none (nothing is launched); so has a call whose checks read more than
that (array values, addresses) on the host: its front passes no key. (Values checked by a kernel
of the plan, as the ROI boxes' are, do not count: a replay checks them again.)
"""
from __future__ import annotations

import contextlib
import sys
import threading
from typing import Any, Callable

import numpy as np

from . import _state
from ._args import _NotPlain, _plain
from ._plans import PlanCache

PLANS = PlanCache()
_local = threading.local()

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


def signature(front: str, roles: dict, scalars: tuple):
    """The plan key of a call of ``front`` with arrays ``roles`` (the first one required; None
    allowed after it) and ``scalars``; None when the call has no plan."""
    arrays = tuple(roles.values())
    if arrays[0] is None:
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
        return (front, place, tuple(_array_key(a) for a in arrays), _plain(scalars))
    except (_NotPlain, AttributeError):
        return None


# ``planned``'s default: a front without a deterministic mode.
_NO_MODE = object()


def planned(front: str, roles: dict, scalars: tuple, *, deterministic=_NO_MODE,
            sign: Callable = signature, replay_is_result: bool = True):
    """(key, the replayed result or None) of a call of ``front``. A gradient passes its
    ``deterministic=`` argument: the mode it resolves to joins the scalars (no key for an invalid
    one, which the full path refuses). ``sign``: the family's ``signature``.
    ``replay_is_result``: False for a front that checks what a replay returns before returning
    it (a scan's answer), which ``noting_key`` must then not offer as a plan to replay alone."""
    key = None
    if deterministic is _NO_MODE:
        key = sign(front, roles, scalars)
    elif deterministic is None or type(deterministic) is bool:
        key = sign(front, roles, (*scalars, _state.is_deterministic(deterministic)))
    noted = getattr(_local, "noted", None)
    if noted is not None and not noted:
        noted.append(key if replay_is_result else None)
    return key, replay(key, roles)


@contextlib.contextmanager
def noting_key():
    """``with noting_key() as noted:`` around one front's call: ``noted`` gets the first key a
    ``planned`` computed in the block (None where it had none, or where its replay is not the
    result), or stays empty. A front asks before any call it makes, so that is its own key
    unless it has no ``planned`` (the key's first item names the front: check it). For a bridge
    that remembers which plan its own, cheaper signature leads to (gpuconv/torch/_plans.py)."""
    outer = getattr(_local, "noted", None)
    _local.noted = noted = []
    try:
        yield noted
    finally:
        _local.noted = outer


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
