"""Bridge plans: a gpuconv.torch call of a signature seen before goes straight to its launch plan.

A call of a gpuconv.torch convolution crosses the bridge (_bridge.py: the tensors' device and
layout checks, the array views) and then the gpuconv front, which checks its arguments again
and derives its plan key from the arrays before replaying the plan (gpuconv/_call_plans.py).
All of it is host time on every call of every layer, and a converted model is host-bound
(kernels/conv/NOTES.md "Host time through gpuconv.torch, continued"). The answers are a
function of the tensors' dtypes, shapes, strides, devices and first elements' alignment, of the
scalar arguments and of a little process state; so the first call of a torch signature notes
the front's plan key it led to (``_call_plans.noting_key``) and the data_format the bridge
chose, and later calls skip the device and layout checks, the front's checks and its key: they
replay the plan over views of the tensors. A replay that finds no plan (the plans were cleared)
takes the full path, which records it again.

What a key holds besides the arguments (``_context``) is what the fronts' own keys read outside
them: whether a simulation is active (CPU tensors run the simulator's plans, or the NumPy
reference, which has none), whether autotuning is on (then the convolution fronts have no key),
the process-wide deterministic mode (a gradient's key holds the mode it resolves to), and the
workspace limit's variable (a convolution key holds it: gpuconv/conv/plans.py).
A signature whose arrays are not views of its tensors is never remembered: bfloat16 on the CPU
without ml_dtypes and tensors with their neg bit set are copied, at addresses that vary.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import torch

from .. import _call_plans, _plans, _state
from .._args import _NotPlain, _plain
from ..conv import autotune
from ..conv.launch_im2col_gemm import WORKSPACE_ENV
from ._bridge import to_array

# Entries kept; a full table answers from what it has and remembers no more.
MAX_ENTRIES = _plans.MAX_PLANS
# torch signature -> (the front's plan key, data_format)
_ENTRIES: dict = {}


def clear() -> None:
    _ENTRIES.clear()


def _tensor_key(t):
    if t is None:
        return None
    if not isinstance(t, torch.Tensor):
        raise TypeError
    return (t.dtype, t.shape, t.stride(), t.device, t.data_ptr() & (_call_plans.ALIGNMENT - 1),
            t.is_neg())


def _context(cuda: bool) -> tuple:
    # The deterministic mode is item 2: BridgeCall.run pins it for the front it calls.
    return (cuda or _state.active_simulation() is not None, autotune.enabled(),
            _state.is_deterministic(), os.environ.get(WORKSPACE_ENV))


def _views_of(tensors: dict, arrays: dict) -> bool:
    """Whether every array is a view of its tensor's memory (not a copy)."""
    return all(t is None or _plans._address(arrays[name]) == t.data_ptr()
               for name, t in tensors.items())


class BridgeCall:
    """One call of gpuconv front ``front`` (the name its plan keys start with) over ``tensors``
    (the front's array roles, in its order; the first one required) and ``scalars`` (every other
    argument that the front's result depends on, the data_format included when the caller fixes
    it). Fronts whose replay is not their result (ROI calls and index gradients, which read a
    scan's answer after it: ``_call_plans.planned``'s ``replay_is_result``) are never
    remembered.

    ``data_format``: the layout a call of this signature ran in before, or None where the
    caller must check the call and choose it (a signature not seen, or not rememberable)."""

    __slots__ = ("front", "tensors", "key", "entry", "data_format")

    def __init__(self, front: str, tensors: dict, scalars: tuple):
        self.front, self.tensors = front, tensors
        try:
            first = next(iter(tensors.values()))
            self.key = (front, tuple([_tensor_key(t) for t in tensors.values()]),
                        _plain(scalars), _context(first.is_cuda))
        except (_NotPlain, TypeError, AttributeError, RuntimeError):
            # Not plain scalars, no first tensor, or not tensors with storage (a torch.func
            # wrapper's data_ptr raises): the full path checks them and says what is wrong.
            self.key = None
        self.entry = _ENTRIES.get(self.key) if self.key is not None else None
        self.data_format = self.entry[1] if self.entry is not None else None

    def place(self, check: Callable[[], tuple]) -> tuple:
        """(device, data_format) of the call: the first tensor's device and the remembered
        layout, or ``check()``'s (the full path's device and layout checks) for a signature
        not seen."""
        if self.data_format is None:
            return check()
        return next(iter(self.tensors.values())).device, self.data_format

    def run(self, data_format: str, data_roles: tuple, compute: Callable[[dict], Any]):
        """The front's result over the tensors' arrays (``data_roles`` in ``data_format``, the
        others as they are): the plan's replay, or ``compute(arrays)`` (the front's call),
        remembered for the next call. Run it on the tensors' device (``on_device_of``)."""
        arrays = {name: to_array(t, data_format if name in data_roles else "NCHW")
                  for name, t in self.tensors.items()}
        if self.entry is not None:
            result = _call_plans.replay(self.entry[0], arrays)
            if result is not None:
                return result
        # The front reads the deterministic mode again: pinned to the one this key holds, so
        # that another thread's set_deterministic meanwhile cannot file its plan under this key.
        mode = self.key[3][2] if self.key is not None else _state.is_deterministic()
        with _call_plans.noting_key() as noted, _state.deterministic_pinned(mode):
            result = compute(arrays)
        if self.key is not None and len(_ENTRIES) < MAX_ENTRIES:
            front_key = noted[0] if noted else None
            # The front's own key (not one of a front it called), with a plan recorded whose
            # replay is the result, over views of the tensors.
            if (front_key is not None and front_key[0] == self.front
                    and _call_plans.PLANS.has_plan(front_key)
                    and _views_of(self.tensors, arrays)):
                _ENTRIES[self.key] = (front_key, data_format)
        return result
