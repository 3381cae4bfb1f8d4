"""Errors of the CPU executor.

A kernel that misbehaves under the simulator raises one of these instead of crashing the
interpreter; each names the kernel, the CUDA block and thread, and the source line when known.
Compile failures raise ``gpuconv._kernel_source.KernelCompileError`` (the loader's error for both
executors).
"""
from __future__ import annotations


class SimulatorError(RuntimeError):
    """Base class: a launch on the CPU executor failed.

    ``kernel`` is the name expression, ``block``/``thread`` the CUDA indices ``(x, y, z)`` of the
    thread that failed (None when the failure is not one thread's), ``source`` is ``"file:line"``
    of the offending statement when known.
    """

    def __init__(self, message: str, *, kernel: str = "", block=None, thread=None,
                 source: str | None = None):
        super().__init__(message)
        self.kernel = kernel
        self.block = block
        self.thread = thread
        self.source = source


class KernelFault(SimulatorError):
    """A CUDA thread faulted: invalid memory access, stack overflow, integer division by zero,
    ``__trap()``, a failed ``assert()``, or a misused barrier or warp collective."""


class DeadlockError(SimulatorError):
    """The threads of a block wait forever: not all of them reach a barrier, or a warp
    collective misses lanes. ``source`` names the barrier."""


class SharedMemoryLimitError(SimulatorError):
    """A block uses more shared memory than a GPU gives one (48 KiB static, 227 KiB in all)."""


class LaunchBoundsError(SimulatorError):
    """A kernel was launched with more threads per block than its ``__launch_bounds__``: a GPU
    refuses such a launch ("too many resources requested for launch")."""


class SanitizerError(SimulatorError):
    """AddressSanitizer or ThreadSanitizer reported an error in a kernel; ``report`` is the
    sanitizer's report (with CUDA block/thread and source lines)."""

    def __init__(self, message: str, *, report: str = "", sanitizer: str = "", **kwargs):
        super().__init__(message, **kwargs)
        self.report = report
        self.sanitizer = sanitizer


class SanitizerUnavailable(SimulatorError):
    """A sanitizer mode cannot run on this machine (no libasan/libtsan, or its runtime refuses
    to start); the message says why."""
