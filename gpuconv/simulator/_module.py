"""``load_module``: the simulator's counterpart of ``cupy.RawModule`` (simulator.md).

    mod = load_module(code, ["conv2d_direct<float, 3>", "my_kernel"], include_dirs=[...])
    mod.get_function("conv2d_direct<float, 3>")(grid, block, args, shared_mem=0)

The thread order (forward, reverse, random + seed) is read from the active ``simulate()`` at each
launch; the sanitizer mode is fixed when the module is loaded (a sanitized module runs in the
runner process, _runner.py). Modules are memoized per process on everything that built them,
and the compiled objects are cached on disk (_toolchain.cache_dir()).
"""
from __future__ import annotations

import numbers
import os
import threading
from typing import Sequence

from .. import _state
from .._args import as_choice
from . import _abi, _build, _failures
from ._native import NativeModule
from ._params import MAX_BLOCK, MAX_GRID, MAX_THREADS_PER_BLOCK, launch_dims, pack_arguments

SANITIZERS = (None, "address", "thread")
DEFAULT_DYNAMIC_SHARED_LIMIT = 48 * 1024   # without the opt-in attribute, as on a GPU
# The most shared memory an sm_90 block may opt in to (cudaDevAttrMaxSharedMemoryPerBlockOptin):
# setting max_dynamic_shared_size_bytes past it (less the static bytes) fails on a GPU.
OPT_IN_SHARED_LIMIT = 227 * 1024
_STACK_KB = {None: 64, "address": 256, "thread": 256}

_modules: dict[tuple, "Module"] = {}
_lock = threading.Lock()
# A fork while another thread holds it would leave the child a lock that nothing releases.
os.register_at_fork(after_in_child=lambda: globals().update(_lock=threading.Lock()))


def load_module(code: str, name_expressions: Sequence[str], *, include_dirs: Sequence[str] = (),
                options: Sequence[str] = (), sanitize: str | None = None,
                source_name: str = "kernel.cu") -> "Module":
    """Compiles ``code`` (CUDA C++) for the CPU and returns a module of its kernels.

    name_expressions: kernels to export, as for ``cupy.RawModule``: template instantiations
    ("conv2d_direct<float, 3>") or plain ``extern "C"`` kernel names. options: NVRTC-style flags;
    -D, -U and -I are honoured, the rest ignored. sanitize: None, "address" or "thread".
    source_name: the file name errors and reports use for ``code``.
    """
    if not isinstance(code, str):
        raise TypeError(f"code must be a str of CUDA source, got {type(code).__name__}")
    if isinstance(name_expressions, str) or not all(isinstance(n, str) for n in name_expressions):
        raise TypeError("name_expressions must be a sequence of str, e.g. ['kernel<float>']")
    names = tuple(dict.fromkeys(n.strip() for n in name_expressions))
    if not names or any(not n for n in names):
        raise ValueError("name_expressions must name at least one kernel and hold no empty name")
    sanitize = as_choice("sanitize", sanitize, SANITIZERS)
    if not isinstance(source_name, str) or not source_name:
        raise TypeError("source_name must be a non-empty str")
    parsed = _build.parse_options(options, include_dirs)
    key = (code, names, parsed, sanitize, source_name)
    with _lock:
        module = _modules.get(key)
        if module is None:
            built = _build.build_module(code, names, parsed, sanitize, source_name)
            module = _modules[key] = Module(built, names, sanitize, source_name)
    return module


def clear_memo() -> None:
    """Forgets the modules loaded in this process (the disk cache stays); for tests."""
    with _lock:
        _modules.clear()


# (source, name expression, order) of every launch that completed in this process: lets the test
# suite check that every kernel of the library ran under every thread order.
_launched: set[tuple[str, str, str]] = set()


def launched_kernels() -> frozenset[tuple[str, str, str]]:
    """(source, name expression, order) of each simulated launch that completed so far."""
    return frozenset(_launched)


class Module:
    """Kernels of one compiled source; ``get_function`` as on ``cupy.RawModule``."""

    def __init__(self, built: _build.BuiltModule, names: tuple[str, ...], sanitize: str | None,
                 source_name: str):
        self.path = built.path
        self.from_cache = built.from_cache      # True when no compiler ran for this load
        self.sanitize = sanitize
        self.source_name = source_name
        self.name_expressions = names
        if sanitize is None:
            self._executor = NativeModule(built.path, len(names))
        else:
            from ._runner import RunnerModule
            self._executor = RunnerModule(built.path, len(names), sanitize)
        self._functions: dict[str, Function] = {}

    def get_function(self, name: str) -> "Function":
        if name not in self._functions:
            if name not in self.name_expressions:
                raise ValueError(f"{name!r} is not a name expression of {self.source_name}; "
                                 f"loaded: {', '.join(self.name_expressions)}")
            index = self.name_expressions.index(name)
            self._functions[name] = Function(self, index, name, self._executor.params[index])
        return self._functions[name]


class Function:
    """One kernel, called like ``cupy.RawKernel``: ``fn(grid, block, args, shared_mem=0)``."""

    max_threads_per_block = MAX_THREADS_PER_BLOCK

    def __init__(self, module: Module, index: int, name: str, params):
        self._module = module
        self._index = index
        self.name = name
        self.params = params
        # As on cupy.RawKernel: launches may use more dynamic shared memory only after raising it.
        # Until it is set, a block's static + dynamic shared memory must fit in 48 KiB (the
        # runtime checks the static part when a block reaches it); once set, in 227 KiB.
        self._shared_limit = DEFAULT_DYNAMIC_SHARED_LIMIT
        self._shared_opted_in = False

    @property
    def max_dynamic_shared_size_bytes(self) -> int:
        return self._shared_limit

    @max_dynamic_shared_size_bytes.setter
    def max_dynamic_shared_size_bytes(self, value) -> None:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"max_dynamic_shared_size_bytes must be an int, got "
                            f"{type(value).__name__}")
        if not 0 <= value <= OPT_IN_SHARED_LIMIT:
            raise ValueError(f"max_dynamic_shared_size_bytes must be in [0, {OPT_IN_SHARED_LIMIT}] "
                             f"(227 KiB, what an sm_90 block may opt in to), got {value}")
        self._shared_limit, self._shared_opted_in = int(value), True

    def __call__(self, grid, block, args, *, shared_mem: int = 0, stream=None) -> None:
        # stream: accepted for cupy.RawKernel compatibility; simulated launches are synchronous.
        config = _abi.LaunchConfig()
        config.grid[:] = launch_dims("grid", grid, MAX_GRID)
        config.block[:] = launch_dims("block", block, MAX_BLOCK)
        config.shared_mem = _shared_mem(shared_mem, self.max_dynamic_shared_size_bytes, self.name)
        config.shared_opt_in = self._shared_limit if self._shared_opted_in else 0
        packed = pack_arguments(self.name, self.params, args)
        options = _state.active_simulation()
        order = options.order if options is not None else "forward"
        config.order = _abi.ORDER_CODES[order]
        config.seed = options.seed if options is not None else 0
        config.stack_size = _stack_bytes(self._module.sanitize)
        error = self._module._executor.launch(self._index, config, packed, kernel=self.name)
        _failures.raise_for(error, self.name)
        _launched.add((self._module.source_name, self.name, order))

    def __repr__(self) -> str:
        return f"<simulated kernel {self.name} of {self._module.source_name}>"


def _shared_mem(value, limit: int, kernel: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"shared_mem must be an int, got {type(value).__name__}")
    value = int(value)
    if value < 0:
        raise ValueError(f"shared_mem must be >= 0, got {value}")
    if value > limit:
        raise ValueError(f"shared_mem={value} bytes exceeds the {limit} bytes {kernel} may use; "
                         f"raise its max_dynamic_shared_size_bytes first (as with cupy.RawKernel)")
    return value


def _stack_bytes(sanitize: str | None) -> int:
    text = os.environ.get("GPUCONV_SIMULATE_STACK_KB", "").strip()
    if not text:
        kib = _STACK_KB[sanitize]
    elif text.isdigit() and int(text) >= 16:
        kib = int(text)
    else:
        raise ValueError(f"the environment's GPUCONV_SIMULATE_STACK_KB={text!r} is invalid: "
                         "the stack of each simulated CUDA thread in KiB, an integer >= 16")
    return ((kib * 1024 + 4095) // 4096) * 4096
