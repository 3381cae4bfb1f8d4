"""Process-wide settings and the choice of executor for a call.

Three executors compute an operation (design.md, "One path for data, three executors"):
- "reference": the NumPy reference (NumPy arrays, outside ``simulate()``),
- "simulator": the project's CUDA kernels run on the CPU (NumPy arrays inside ``simulate()`` or
  with ``GPUCONV_SIMULATE=1``),
- "cupy": the CUDA kernels on a GPU (CuPy arrays).
``gpuconv.simulator`` pushes its options with ``push_simulation``; nothing else writes them.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import os

import numpy as np

# The simulate() blocks in force, innermost last, in a context variable, as numpy.errstate keeps
# its state: a block applies to the code it encloses (its thread, and asyncio tasks created
# inside it), not to other threads (a thread started inside does not inherit it, as with
# torch.no_grad) nor to tasks that run while it waits.
_simulations: contextvars.ContextVar[tuple] = contextvars.ContextVar("gpuconv_simulations",
                                                                     default=())
_deterministic = False
# The process-wide deterministic mode as one call read it (``deterministic_pinned``).
_pinned_deterministic: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "gpuconv_pinned_deterministic", default=None)

# The spellings of an on/off environment variable (GPUCONV_SIMULATE, GPUCONV_AUTOTUNE); any
# other value is a mistake to report, not a silent choice ("none" must not turn one on).
_ON = ("1", "true", "yes", "on")
_OFF = ("", "0", "false", "no", "off")


def flag_value(name: str, text: str | None) -> bool:
    """The on/off environment variable ``name`` holding ``text`` (None: unset)."""
    value = (text or "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ValueError(f"the environment's {name}={text!r} is invalid: use 1, true, yes or on to "
                     f"turn it on; 0, false, no, off or nothing to leave it off")


def env_flag(name: str) -> bool:
    return flag_value(name, os.environ.get(name))


def push_simulation(options) -> None:
    _simulations.set(_simulations.get() + (options,))


def pop_simulation(options) -> None:
    """Remove the entry ``push_simulation(options)`` added (by identity: each block's options
    are its own object), wherever it now is: blocks left in another order than entered (two
    generators, each inside its own block, resumed in turn) each remove their own."""
    stack = _simulations.get()
    for i in range(len(stack) - 1, -1, -1):
        if stack[i] is options:
            _simulations.set(stack[:i] + stack[i + 1:])
            return


def active_simulation():
    """The innermost ``simulate()`` options, the env default, or None."""
    stack = _simulations.get()
    if stack:
        return stack[-1]
    if env_flag("GPUCONV_SIMULATE"):
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


def is_deterministic(deterministic: bool | None = None) -> bool:
    """The ``deterministic=`` keyword of a call if given, else the process-wide setting (as
    ``deterministic_pinned`` fixed it, inside one)."""
    if deterministic is None:
        pinned = _pinned_deterministic.get()
        return _deterministic if pinned is None else pinned
    if type(deterministic) is bool:      # the common case, checked first
        return deterministic
    return _flag("deterministic", deterministic, "a bool or None")


def _flag(name: str, value, allowed: str) -> bool:
    """A bool or NumPy's bool (what comparing arrays gives), as a bool; an int is not one."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be {allowed}, got {type(value).__name__} {value!r}")
    return bool(value)


@contextlib.contextmanager
def deterministic_pinned(mode: bool):
    """Inside the block, ``is_deterministic()`` answers ``mode`` whatever set_deterministic
    does meanwhile in another thread: for a caller that keyed a plan on the mode it read and
    then calls a front that reads it again."""
    token = _pinned_deterministic.set(mode)
    try:
        yield
    finally:
        _pinned_deterministic.reset(token)


def resolving_deterministic(gradient):
    """Decorator of a gradient front: ``deterministic=None`` becomes the mode in force at entry,
    so that the plan's key and the path that runs it see one mode. (Read twice, another thread's
    set_deterministic in between filed the atomic launches under the deterministic key, for good.)
    """
    @functools.wraps(gradient)
    def front(*args, deterministic=None, **kwargs):
        if deterministic is None:
            deterministic = is_deterministic()
        return gradient(*args, deterministic=deterministic, **kwargs)
    return front
