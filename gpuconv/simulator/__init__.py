"""The CPU executor for the project's CUDA kernels (simulator.md).

``with gpuconv.simulate(order=..., seed=..., sanitize=...):`` makes NumPy inputs run through the
project's CUDA kernels, compiled by g++ and executed on the CPU, through the same launchers as on
a GPU. The block applies to the code it encloses (a context variable, as numpy.errstate's): its
thread and the asyncio tasks created inside it, not other threads or tasks.
``GPUCONV_SIMULATE=1`` in the environment does the same for the whole process
(``GPUCONV_SIMULATE_ORDER``, ``GPUCONV_SIMULATE_SEED``, ``GPUCONV_SIMULATE_SANITIZE`` set the
options).

``load_module(code, name_expressions, ...)`` compiles CUDA C++ with g++ into a module whose
``get_function(name)(grid, block, args, shared_mem=...)`` mirrors ``cupy.RawModule`` (_module.py).

Ampere's asynchronous copies (cp.async) run through ``simt_async_copy``/``simt_async_commit``/
``simt_async_wait`` (runtime/simt_async_copy.h), which the CPU branches of the PTX helpers call.
A copy reads its source at issue and fills its shared-memory destination with 0xFF bytes (NaN) at
once; its bytes land only when the issuing thread waits for its group. So a pipeline that reads a
stage before the wait, or before the barrier after the other threads' waits, or refills a stage
that other threads still read, computes NaN or wrong values in some thread order, and
ThreadSanitizer reports it in every order.

A vector access of the kernels (``gc::pack_at``, kernels/common/dtypes.cuh) that is not aligned
to its size traps (``KernelFault``), as a GPU faults with "misaligned address" where a plain
x86 load would read the right values: the launchers' alignment checks are tested here too.
A pointer argument must be aligned to its parameter's pointee (a ``const __half2*`` over float16
data needs 4 bytes), and the half/bfloat16 -> integer intrinsics saturate as cvt does.

Launches a GPU refuses are refused here: more threads per block than the kernel's
``__launch_bounds__`` (``LaunchBoundsError``; _rewrite.py turns the annotation into a check),
static + dynamic shared memory past 48 KiB before ``max_dynamic_shared_size_bytes`` was set
(the GPU's default is 48 KiB less the static bytes) or past 227 KiB after
(``SharedMemoryLimitError``). Not modelled, beyond simulator.md's list: static shared memory is
counted only for the ``__shared__`` variables a block reaches; warp shuffles and votes order
memory between lanes here (on a GPU only ``__syncwarp`` and the barriers do: the kernels follow
convention 3); blocks run one after another, so a missing atomic between blocks goes unseen.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from .. import _state
from .._args import as_choice, as_int
from ._module import Function, Module, load_module
from .errors import (DeadlockError, KernelFault, LaunchBoundsError, SanitizerError,
                     SanitizerUnavailable, SharedMemoryLimitError, SimulatorError)

__all__ = ["simulate", "SimulationOptions", "make_options", "options_from_env", "load_module",
           "Module", "Function", "SimulatorError", "KernelFault", "DeadlockError",
           "SharedMemoryLimitError", "LaunchBoundsError", "SanitizerError", "SanitizerUnavailable"]

ORDERS = ("forward", "reverse", "random")
SANITIZERS = (None, "address", "thread")


@dataclass(frozen=True)
class SimulationOptions:
    order: str = "forward"
    seed: int = 0
    sanitize: str | None = None


def make_options(order="forward", seed=0, sanitize=None) -> SimulationOptions:
    return SimulationOptions(as_choice("order", order, ORDERS),
                             as_int("seed", seed, minimum=0, maximum=2**64 - 1),
                             as_choice("sanitize", sanitize, SANITIZERS))


def options_from_env() -> SimulationOptions:
    """GPUCONV_SIMULATE_ORDER / _SEED / _SANITIZE; an invalid value is a ValueError naming the
    variable (every NumPy call reads them while GPUCONV_SIMULATE is set)."""
    order = os.environ.get("GPUCONV_SIMULATE_ORDER", "forward").strip().lower()
    seed = os.environ.get("GPUCONV_SIMULATE_SEED", "0").strip()
    sanitize = os.environ.get("GPUCONV_SIMULATE_SANITIZE", "").strip().lower() or None
    try:
        return make_options(order, int(seed), sanitize)
    except ValueError as error:
        raise ValueError(f"the environment's GPUCONV_SIMULATE_ORDER={order!r}, "
                         f"GPUCONV_SIMULATE_SEED={seed!r} or GPUCONV_SIMULATE_SANITIZE="
                         f"{sanitize!r} is invalid: {error}") from None


@contextlib.contextmanager
def simulate(order: str = "forward", seed: int = 0, sanitize: str | None = None):
    """Run the CUDA kernels on the CPU for NumPy inputs inside the block.

    order: the order in which a block's threads run between barriers: "forward" (thread 0
    first), "reverse", or "random" (reshuffled at each barrier, blocks permuted too; ``seed``,
    an int in [0, 2**64), picks the shuffle). One order can hide a race another shows.
    sanitize: None, "address" (AddressSanitizer: an out-of-bounds access names the CUDA thread
    and source line) or "thread" (ThreadSanitizer: a race between barriers, in any order); the
    sanitized launches run in a helper process and are slower. The block yields its
    SimulationOptions.
    """
    options = make_options(order, seed, sanitize)
    _state.push_simulation(options)
    try:
        yield options
    finally:
        _state.pop_simulation(options)
