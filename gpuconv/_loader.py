"""The kernel loader: the only code that reads ``kernels/`` for execution (design.md).

``get_function(family, name_expression, executor)`` returns a launchable kernel for either
executor; both module types answer ``get_function(name)(grid, block, args, shared_mem=...)``:
- "cupy": ``cupy.RawModule`` on the current device, memoized per (family, device id);
- "simulator": ``gpuconv.simulator.load_module`` (g++ on the CPU), memoized per (family,
  sanitizer of the active ``simulate()``).
A family is compiled whole, as one module with all its name expressions: NVRTC needs every
instantiation up front, and one compile per family is cheaper than one per kernel. Except under
a simulator sanitizer: an instrumented build of a whole family takes g++ up to ~30 s (max_pool's
108 kernels) for the one or two kernels a sanitized run launches, so there each kernel a launch
asks for is a module of its own (~1 s).
"""
from __future__ import annotations

import os
import re
import threading

from . import _plans, _state
from ._args import as_choice
from ._kernel_source import KernelCompileError, family_code, include_dirs
from ._kernels import CUDA_TYPES, FAMILIES, KernelFamily, import_launchers

EXECUTORS = ("cupy", "simulator")
CUDA_STANDARD = "-std=c++17"

_modules: dict[tuple, object] = {}
# (name expression, module key) -> the kernel handed out from that module (_Kept)
_functions: dict[tuple, "_Kept"] = {}
# One compile at a time: two threads asking for the same family must not both build it.
_lock = threading.RLock()
# A fork while another thread holds it would leave the child a lock that nothing releases.
os.register_at_fork(after_in_child=lambda: globals().update(_lock=threading.RLock()))

__all__ = ["KernelCompileError", "get_function", "load_module", "precompile"]


# Without the per-function opt-in (cudaFuncAttributeMaxDynamicSharedMemorySize) a block holds
# at most 48 KiB of shared memory in all: the attribute's default is 48 KiB less the kernel's
# static __shared__ bytes (a 776-byte table plus 48 KiB of dynamic tiles fails to launch).
# The loader opts in for any launch above DEFAULT_DYNAMIC_SHARED_BYTES less
# STATIC_SHARED_RESERVE, the most static shared memory a kernel that also takes dynamic shared
# memory may declare. The decision is the same on both executors and the simulator enforces the
# GPU's 48 KiB total, so a kernel past the reserve fails in the simulated tests, not on a GPU.
DEFAULT_DYNAMIC_SHARED_BYTES = 48 * 1024
STATIC_SHARED_RESERVE = 4 * 1024
OPT_IN_ABOVE = DEFAULT_DYNAMIC_SHARED_BYTES - STATIC_SHARED_RESERVE


def get_function(family: KernelFamily, name_expression: str, executor: str,
                 shared_mem: int = 0):
    """The kernel ``name_expression`` (e.g. ``"conv2d_direct<float>"``) of ``family``.
    ``shared_mem``: the dynamic shared memory its launches will take; above OPT_IN_ABOVE the
    kernel's limit is raised first (the per-function opt-in,
    cudaFuncAttributeMaxDynamicSharedMemorySize; the simulator's kernels check it the same way)."""
    # Every launch asks for its kernel: one handed out before is found by the key of the module
    # it came from, without the module lookup (host time of every call), as long as that module
    # is still the one in the memo (one built anew must not be answered with the old kernel).
    module_key = _module_key(family, executor, name_expression)
    kept = _functions.get((name_expression, module_key))
    if kept is None or _modules.get(module_key) is not kept.module:
        if name_expression not in family.name_expressions:
            raise ValueError(
                f"name_expression {name_expression!r} is not registered in kernel family "
                f"{family.source}; registered: {', '.join(family.name_expressions)}")
        module = load_module(family, executor, name_expression)
        # CuPy's get_function looks the name up and wraps the handle anew on each call.
        kept = _functions[name_expression, module_key] = _Kept(
            module, module.get_function(name_expression))
    if shared_mem > kept.shared_limit:
        kept.allow_shared(shared_mem)
    rec = _plans.recorder()
    if rec is not None:
        return rec.launcher(kept.function, family, name_expression, executor, shared_mem)
    return kept.function


class _Kept:
    """A kernel handed out, the module it came from, and the dynamic shared memory its launches
    may take as far as this loader has set it (CuPy reads the attribute from the driver on every
    access: once per raise here, not once per launch)."""

    __slots__ = ("module", "function", "shared_limit")

    def __init__(self, module, function):
        self.module, self.function = module, function
        self.shared_limit = OPT_IN_ABOVE

    def allow_shared(self, shared_mem: int) -> None:
        """Opts the kernel in to ``shared_mem`` bytes of dynamic shared memory (never lowering a
        limit set before). Set even where the attribute already reads as much: a simulated
        kernel's reads 48 KiB until set (its static bytes are known only once a block runs),
        and the simulator takes a value set as the opt-in, as a GPU takes any value set."""
        self.function.max_dynamic_shared_size_bytes = max(
            self.function.max_dynamic_shared_size_bytes, shared_mem)
        self.shared_limit = shared_mem


def _module_key(family: KernelFamily, executor: str, name_expression: str | None) -> tuple:
    """What tells one built module of ``family`` from another: the device (CuPy), or the
    sanitizer of the active ``simulate()`` (simulator) and, under a sanitizer, the one kernel
    ``name_expression`` the module holds (None: the whole family)."""
    if executor == "cupy":
        import cupy
        return (family, executor, cupy.cuda.runtime.getDevice())
    as_choice("executor", executor, EXECUTORS)
    options = _state.active_simulation()
    sanitize = options.sanitize if options is not None else None
    if sanitize is None:
        return (family, executor, None)
    return (family, executor, sanitize, name_expression)


def load_module(family: KernelFamily, executor: str, name_expression: str | None = None):
    """The built module of ``family`` for ``executor``; ``name_expression``: the kernel the
    caller will take from it (a sanitized simulator build holds only that one)."""
    key = _module_key(family, executor, name_expression)
    with _lock:
        module = _modules.get(key)
        if module is None:
            if executor == "cupy":
                module = _build_cupy(family)
            else:
                only = key[3] if len(key) > 3 else None     # a sanitized build's kernel
                names = (only,) if only is not None else family.name_expressions
                module = _build_simulator(family, key[2], names)
            _modules[key] = module
    return module


def builds_on_device(family: KernelFamily) -> bool:
    """Whether ``family`` can run on the current CuPy device: any family but one built for an
    arch-specific target (KernelFamily.arch) of another compute capability."""
    if family.arch is None:
        return True
    import cupy
    return cupy.cuda.Device().compute_capability == family.compute_capability


def _build_cupy(family: KernelFamily):
    import cupy
    options = (CUDA_STANDARD, *(f"-I{d}" for d in include_dirs()), *family.options)
    if family.arch is not None:
        if not builds_on_device(family):
            # The launchers never ask for it there; a module NVRTC built would not load.
            raise KernelCompileError(
                family.source, f"{family.source} is built for {family.arch} only; this device "
                f"has compute capability {cupy.cuda.Device().compute_capability}", family.arch)
        # CuPy appends its own -arch=sm_XX for the device; NVRTC builds the arch-specific
        # target where both are given (checked with NVRTC 13: the cubin's arch is sm_90a).
        options += (f"-arch={family.arch}",)
    module = cupy.RawModule(code=family_code(family), options=options,
                            name_expressions=list(family.name_expressions))
    try:
        # RawModule may defer the compile to the first get_function; do it now so that the
        # error names the family and the memo never holds a module that cannot load.
        module.compile()
    except cupy.cuda.compiler.CompileException as error:
        raise KernelCompileError(family.source, str(error)) from None
    return module


def _build_simulator(family: KernelFamily, sanitize, name_expressions):
    from . import simulator
    # The simulator raises KernelCompileError itself, with g++'s file:line diagnostics.
    return simulator.load_module(family_code(family), name_expressions,
                                 include_dirs=[str(d) for d in include_dirs()],
                                 options=family.options, sanitize=sanitize,
                                 source_name=family.source)


def precompile(families=None, dtypes=None, executor: str = "auto") -> list[str]:
    """Build kernel families ahead of their first use; returns the sources built.

    families: None (every registered family) or a list of sources relative to ``kernels/``
    (``"conv/direct.cu"``). dtypes: None (all) or a list of dtypes; a family is built (whole)
    when one of its kernels is instantiated for one of them or for no element type (such a
    kernel serves every dtype). executor: "auto" (CuPy when a GPU is present, else the
    simulator), "cupy" or "simulator"; with CuPy a family built for another GPU architecture
    (KernelFamily.arch) is left out. Inside ``simulate(sanitize=...)`` each kernel that
    qualifies is built on its own, as the sanitized launches take them.
    """
    import_launchers()
    executor = as_choice("executor", executor, ("auto",) + EXECUTORS)
    if executor == "auto":
        executor = "cupy" if _gpu_present() else "simulator"
    elif executor == "cupy":
        try:
            import cupy  # noqa: F401
        except ImportError as error:
            raise ImportError("precompile(executor='cupy') builds for a GPU through CuPy, which "
                              "is not installed: pip install 'gpuconv[cuda12]' or "
                              "'gpuconv[cuda13]' (or use executor='simulator')") from error
    wanted = _dtype_filter(dtypes)
    chosen = [f for f in _select_families(families) if any(map(wanted, f.name_expressions))
              and (executor != "cupy" or builds_on_device(f))]
    options = _state.active_simulation() if executor == "simulator" else None
    for family in chosen:
        if options is not None and options.sanitize is not None:
            # A sanitized build holds one kernel (_module_key): build the ones launches take.
            for name in filter(wanted, family.name_expressions):
                load_module(family, executor, name)
        else:
            load_module(family, executor)
    return [family.source for family in chosen]


def _select_families(families) -> list[KernelFamily]:
    if families is None:
        return list(FAMILIES.values())
    if (isinstance(families, str) or not isinstance(families, (list, tuple))
            or not all(isinstance(f, str) for f in families)):
        raise TypeError("families must be None or a list of kernel source paths such as "
                        "'conv/direct.cu'")
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"families {unknown} are not registered kernel families; registered: "
                         f"{sorted(FAMILIES) or 'none'}")
    return [FAMILIES[f] for f in dict.fromkeys(families)]


def _dtype_filter(dtypes):
    """Whether a kernel (its name expression) serves one of ``dtypes``: it is instantiated for
    one of them, or for no element type at all (pool_indices_check serves every dtype)."""
    if dtypes is None:
        return lambda name: True
    import numpy as np
    if not isinstance(dtypes, (list, tuple)):
        raise TypeError("dtypes must be None or a list of dtypes, e.g. ['float32']")
    spellings = []
    for dtype in dtypes:
        try:
            # "bfloat16" is accepted by name: NumPy knows it only once ml_dtypes is imported.
            if dtype is None:   # np.dtype(None) would silently mean float64
                raise TypeError
            name = dtype if isinstance(dtype, str) and dtype in CUDA_TYPES else np.dtype(dtype).name
            spellings.append(CUDA_TYPES[name])
        except (TypeError, KeyError):
            raise ValueError(f"dtypes: {dtype!r} is not one of {sorted(CUDA_TYPES)}") from None
    if not spellings:      # no dtype: no kernel qualifies (an empty alternation matches all)
        return lambda name: False
    uses = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, spellings)) + r")(?!\w)")
    any_type = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, CUDA_TYPES.values()))
                          + r")(?!\w)")
    return lambda name: uses.search(name) is not None or any_type.search(name) is None


def _gpu_present() -> bool:
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver or no device: all mean "no GPU here"
        return False
