"""Process-wide settings and the choice of executor for a call.

Three executors compute an operation (design.md, "One path for data, three executors"):
- "reference": the NumPy reference (NumPy arrays, outside ``simulate()``),
- "simulator": the project's CUDA kernels run on the CPU (NumPy arrays inside ``simulate()`` or
  with ``GPUCONV_SIMULATE=1``),
- "cupy": the CUDA kernels on a GPU (CuPy arrays).
``gpuconv.simulator`` pushes its options onto ``_simulation_stack``; nothing else writes it.
"""
from __future__ import annotations

import os
import threading

import numpy as np

_local = threading.local()
_deterministic = False


def _stack() -> list:
    if not hasattr(_local, "simulation_stack"):
        _local.simulation_stack = []
    return _local.simulation_stack


def push_simulation(options) -> None:
    _stack().append(options)


def pop_simulation() -> None:
    _stack().pop()


def active_simulation():
    """The innermost ``simulate()`` options, the env default, or None."""
    stack = _stack()
    if stack:
        return stack[-1]
    if os.environ.get("GPUCONV_SIMULATE", "").strip() not in ("", "0"):
        from .simulator import options_from_env
        return options_from_env()
    return None


def executor_for(library: str) -> str:
    if library == "cupy":
        return "cupy"
    return "simulator" if active_simulation() is not None else "reference"


def set_deterministic(flag: bool = True) -> None:
    """Make every backward pass bitwise reproducible (no floating-point atomics)."""
    global _deterministic
    _deterministic = _flag("flag", flag, "a bool")


def is_deterministic(override: bool | None = None) -> bool:
    """The ``deterministic=`` keyword of a call if given, else the process-wide setting."""
    if override is None:
        return _deterministic
    if type(override) is bool:      # the common case, checked first
        return override
    return _flag("deterministic", override, "a bool or None")


def _flag(name: str, value, allowed: str) -> bool:
    """A bool or NumPy's bool (what comparing arrays gives), as a bool; an int is not one."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be {allowed}, got {type(value).__name__} {value!r}")
    return bool(value)
