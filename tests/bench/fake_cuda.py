"""A pretend CUDA device for tests on a machine without one.

``install(monkeypatch)`` puts a fake ``cupy`` into ``sys.modules`` and fakes the few
``torch.cuda`` pieces the bench touches, for the duration of one test (monkeypatch undoes it):

- ``cupy.ndarray`` wraps a NumPy array (the "device memory"); ``cupy.<function>`` runs NumPy's
  function of the same name on the unwrapped arrays and wraps what comes back;
- ``cupy.RawModule`` compiles with gpuconv's simulator (the g++ CPU executor) and its kernels run
  there, so gpuconv's "cupy" launch path executes the real kernels;
- events time with the wall clock (launches are synchronous), streams, devices, memory pools,
  ``cupy.cuda.runtime`` (device properties, driver version, memcpyAsync) answer like CuPy's;
- torch stays the CPU build it is: ``torch.from_dlpack`` of a fake array is a CPU tensor, so the
  torch/cuDNN baselines compute on the CPU, while ``torch.cuda.is_available()``,
  ``current_stream()``, ``set_device`` and ``empty_cache`` answer as on a GPU.

What real CuPy refuses, the fake refuses too, because those are the bugs a first GPU session
would otherwise find: implicit conversion of a device array to NumPy (``__array__``), a host
``numpy.ndarray`` among the arguments of a cupy function, ufunc or kernel, ``RawModule`` options
that are not a tuple or positional arguments, a grid or block that is not a tuple (CuPy's
``Function.__call__`` types them ``tuple``), and keywords a RawKernel call does not take. Python
scalars in kernel arguments become int64/float64 as CuPy makes them, and the simulator then
checks every scalar's size against the kernel's C++ parameter.

Not modelled: asynchrony, other devices, real CUDA DLPack (torch sees a CPU tensor), bfloat16
support in CuPy, NVRTC itself (the simulator compiles with g++ instead).
"""
from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import re
import sys
import time
import types

import numpy as np

DEVICE_NAME = b"NVIDIA H100 80GB HBM3 (fake)"
DRIVER_VERSION = 13000
RUNTIME_VERSION = 13000
CUDNN_VERSION = 91300
MULTIPROCESSORS = 132
TOTAL_MEMORY = 80 * 2**30
# Small, so that the bench's L2 flush (2x the L2 per timed launch) stays cheap on a CPU.
L2_BYTES = 1 << 20
NVIDIA_SMI_LINE = "580.159.04, 1980 MHz"

_IMPLICIT_CONVERSION = ("Implicit conversion to a NumPy array is not allowed. Please use `.get()` "
                        "to construct a NumPy array explicitly.")


class CUDARuntimeError(RuntimeError):
    pass


class CUDADriverError(RuntimeError):
    pass


class CompileException(Exception):
    pass


# ---- arrays -------------------------------------------------------------------------------

def _is_host_array(x) -> bool:
    return isinstance(x, np.ndarray) and x.ndim > 0


def _refuse_host_arrays(where: str, values) -> None:
    for v in values:
        if _is_host_array(v):
            raise TypeError(f"Unsupported type {type(v)} ({where}: a host numpy.ndarray among "
                            "the arguments of a CuPy call)")
        if isinstance(v, (list, tuple)):
            _refuse_host_arrays(where, v)


def unwrap(x):
    """Fake arrays -> their NumPy arrays, inside lists, tuples and dicts too."""
    if isinstance(x, ndarray):
        return x._host
    if isinstance(x, (list, tuple)):
        return type(x)(unwrap(v) for v in x)
    if isinstance(x, dict):
        return {k: unwrap(v) for k, v in x.items()}
    return x


def wrap(x):
    """NumPy results -> fake arrays. A NumPy scalar becomes a 0-d array, as CuPy's reductions
    and element reads return 0-d device arrays."""
    if isinstance(x, np.ndarray):
        return ndarray(x)
    if isinstance(x, np.generic):
        return ndarray(np.asarray(x))
    if isinstance(x, (list, tuple)):
        return type(x)(wrap(v) for v in x)
    return x


class _Flags:
    """CuPy's flags: c_contiguous, f_contiguous, owndata (no ``writeable``)."""

    def __init__(self, flags):
        self.c_contiguous = bool(flags.c_contiguous)
        self.f_contiguous = bool(flags.f_contiguous)
        self.owndata = bool(flags.owndata)

    def __getitem__(self, name: str) -> bool:
        return {"C_CONTIGUOUS": self.c_contiguous, "F_CONTIGUOUS": self.f_contiguous,
                "OWNDATA": self.owndata}[name]


class _MemoryPointer:
    def __init__(self, ptr: int):
        self.ptr = ptr


class ndarray:  # noqa: N801 - the name CuPy gives it
    """A device array whose memory is a NumPy array."""

    __array_priority__ = 100.0
    __hash__ = None

    def __init__(self, host: np.ndarray):
        if not isinstance(host, np.ndarray):
            raise TypeError("the fake cupy.ndarray wraps a numpy.ndarray")
        self._host = host

    # -- what CuPy has and NumPy has not, or has differently
    shape = property(lambda self: self._host.shape)
    dtype = property(lambda self: self._host.dtype)
    ndim = property(lambda self: self._host.ndim)
    size = property(lambda self: self._host.size)
    nbytes = property(lambda self: self._host.nbytes)
    itemsize = property(lambda self: self._host.itemsize)
    strides = property(lambda self: self._host.strides)
    T = property(lambda self: ndarray(self._host.T))
    flags = property(lambda self: _Flags(self._host.flags))
    device = property(lambda self: Device(0))
    data = property(lambda self: _MemoryPointer(self._host.ctypes.data))

    def get(self, stream=None, order="C", out=None, blocking=True) -> np.ndarray:
        return np.array(self._host, order=order, copy=True)

    def __array__(self, dtype=None, copy=None):
        raise TypeError(_IMPLICIT_CONVERSION)

    def __dlpack__(self, **kwargs):
        return self._host.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._host.__dlpack_device__()

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        _refuse_host_arrays(f"numpy.{ufunc.__name__}", inputs)
        _refuse_host_arrays(f"numpy.{ufunc.__name__}", kwargs.get("out", ()))
        return wrap(getattr(ufunc, method)(*unwrap(inputs), **unwrap(kwargs)))

    def __array_function__(self, func, types_, args, kwargs):
        _refuse_host_arrays(f"numpy.{func.__name__}", args)
        return wrap(func(*unwrap(args), **unwrap(kwargs)))

    # -- everything else as NumPy does it, on the wrapped array
    def __getattr__(self, name):
        if name.startswith("_"):
            # NumPy's __array_interface__ & co. would hand the "device" memory to NumPy.
            raise AttributeError(f"fake cupy.ndarray has no attribute {name!r}")
        value = getattr(self._host, name)
        if not callable(value):
            return wrap(value)

        def method(*args, **kwargs):
            _refuse_host_arrays(f"ndarray.{name}", args)
            return wrap(value(*unwrap(args), **unwrap(kwargs)))
        return method

    def __getitem__(self, key):
        return wrap(self._host[unwrap(key)])

    def __setitem__(self, key, value):
        self._host[unwrap(key)] = unwrap(value)   # CuPy accepts host data on the right

    def __len__(self):
        return len(self._host)

    def __iter__(self):
        return (wrap(v) for v in self._host)

    def __bool__(self):
        return bool(self._host)

    def __float__(self):
        return float(self._host)

    def __int__(self):
        return int(self._host)

    def __repr__(self):
        return f"fake_cupy.{self._host!r}"


def _operator(name: str):
    def op(self, *others):
        _refuse_host_arrays(name, others)
        return wrap(getattr(self._host, name)(*unwrap(others)))
    op.__name__ = name
    return op


for _name in ("add", "radd", "sub", "rsub", "mul", "rmul", "truediv", "rtruediv", "floordiv",
              "rfloordiv", "mod", "pow", "rpow", "matmul", "rmatmul", "neg", "pos", "abs",
              "invert", "and", "or", "xor", "lt", "le", "gt", "ge", "eq", "ne", "iadd", "isub",
              "imul", "itruediv"):
    setattr(ndarray, f"__{_name}__", _operator(f"__{_name}__"))


def _function(name: str, fn):
    def call(*args, **kwargs):
        _refuse_host_arrays(f"cupy.{name}", args)
        return wrap(fn(*unwrap(args), **unwrap(kwargs)))
    call.__name__ = name
    return call


def asarray(a, dtype=None, order=None):
    if isinstance(a, ndarray):
        return a if dtype is None or np.dtype(dtype) == a.dtype else a.astype(dtype)
    if hasattr(a, "__cuda_array_interface__"):
        # Another library's device memory (here: host memory too), viewed as CuPy views it.
        view = np.asarray(_ArrayInterface(a.__cuda_array_interface__))
        return asarray(ndarray(view), dtype)
    return ndarray(np.array(a, dtype=dtype, order=order, copy=True))   # a host -> device copy


class _ArrayInterface:
    """A ``__cuda_array_interface__`` as NumPy's ``__array_interface__`` (the same fields)."""

    def __init__(self, interface: dict):
        self.__array_interface__ = {**interface, "version": 3}


def array(obj, dtype=None, copy=True, order="K", ndmin=0):
    return ndarray(np.array(unwrap(obj), dtype=dtype, copy=True, order=order, ndmin=ndmin))


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    return a.get(order=order) if isinstance(a, ndarray) else np.asarray(a, order=order)


def from_dlpack(x, *, device=None, copy=None):
    return ndarray(np.from_dlpack(x))


# ---- devices, streams, events, memory ------------------------------------------------------

class _Counters:
    """What the fake saw, for assertions: launches per kernel name, pool frees, ..."""

    def __init__(self):
        self.launches: dict[str, int] = {}
        self.pool_frees = 0
        self.events_recorded = 0
        self.memcpys = 0
        self.torch_set_device: list[int] = []
        self.torch_empty_cache = 0


counters = _Counters()


class Device:
    _current = 0

    def __init__(self, device=None):
        self.id = Device._current if device is None else int(device)
        if not 0 <= self.id < runtime.getDeviceCount():
            raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")
        self._previous: list[int] = []

    compute_capability = property(lambda self: "90")
    attributes = property(lambda self: {"MultiProcessorCount": MULTIPROCESSORS,
                                        "MaxThreadsPerBlock": 1024,
                                        "MaxSharedMemoryPerBlockOptin": 227 * 1024,
                                        "L2CacheSize": L2_BYTES})
    mem_info = property(lambda self: runtime.memGetInfo())

    def use(self):
        Device._current = self.id

    def synchronize(self):
        pass

    def __enter__(self):
        self._previous.append(Device._current)
        self.use()
        return self

    def __exit__(self, *exc):
        Device._current = self._previous.pop()

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(self.id)


class Stream:
    """``ptr`` 0 is the legacy default stream, as in CuPy."""
    _stack: list["Stream"] = []
    _next_ptr = itertools.count(0x1000, 0x10)

    def __init__(self, null=False, non_blocking=False, ptr=None, priority=None):
        self.ptr = 0 if null else (next(Stream._next_ptr) if ptr is None else int(ptr))
        self.device_id = Device._current

    def use(self):
        Stream._stack[-1:] = [self]
        return self

    def synchronize(self):
        pass

    def is_capturing(self) -> bool:     # no CUDA graphs here
        return False

    def record(self, event=None):
        event = event or Event()
        event.record(self)
        return event

    def __enter__(self):
        Stream._stack.append(self)
        return self

    def __exit__(self, *exc):
        Stream._stack.pop()


Stream.null = Stream(null=True)


class ExternalStream(Stream):
    def __init__(self, ptr, device_id=-1):
        super().__init__(ptr=int(ptr))


@contextlib.contextmanager
def using_allocator(allocator=None):
    """CuPy's thread-local allocator switch: every fake array is NumPy memory, so only the
    argument is checked (None, the raw allocator, or a function of a size)."""
    if allocator is not None and not callable(allocator):
        raise TypeError(f"allocator must be callable, got {type(allocator).__name__}")
    yield


def get_current_stream(device_id=-1) -> Stream:
    return Stream._stack[-1] if Stream._stack else Stream.null


class Event:
    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self.disable_timing = disable_timing
        self.time: float | None = None

    def record(self, stream=None):
        self.time = time.perf_counter()
        counters.events_recorded += 1

    def synchronize(self):
        pass

    @property
    def done(self) -> bool:
        return True


def get_elapsed_time(start_event: Event, end_event: Event) -> float:
    """Milliseconds, a Python float, as CuPy returns it."""
    for e in (start_event, end_event):
        if not isinstance(e, Event):
            raise TypeError(f"expected a cupy.cuda.Event, got {type(e).__name__}")
        if e.disable_timing:
            raise CUDARuntimeError("cudaErrorInvalidResourceHandle: event without timing")
        if e.time is None:
            raise CUDARuntimeError("cudaErrorInvalidResourceHandle: event never recorded")
    return float((end_event.time - start_event.time) * 1e3)


class _MemoryPool:
    def free_all_blocks(self, stream=None):
        counters.pool_frees += 1

    def used_bytes(self) -> int:
        return 0

    def total_bytes(self) -> int:
        return 0

    def set_limit(self, size=None, fraction=None):
        pass


_pool = _MemoryPool()


def get_default_memory_pool() -> _MemoryPool:
    return _pool


def get_default_pinned_memory_pool() -> _MemoryPool:
    return _pool


def _runtime_module() -> types.ModuleType:
    rt = types.ModuleType("cupy.cuda.runtime")
    rt.CUDARuntimeError = CUDARuntimeError
    rt.memcpyHostToHost, rt.memcpyHostToDevice, rt.memcpyDeviceToHost = 0, 1, 2
    rt.memcpyDeviceToDevice, rt.memcpyDefault = 3, 4
    rt.getDeviceCount = lambda: 1
    rt.getDevice = lambda: Device._current
    rt.driverGetVersion = lambda: DRIVER_VERSION
    rt.runtimeGetVersion = lambda: RUNTIME_VERSION
    rt.deviceSynchronize = lambda: None
    rt.memGetInfo = lambda: (TOTAL_MEMORY - (1 << 30), TOTAL_MEMORY)

    def getDeviceProperties(device: int) -> dict:  # noqa: N802 - CUDA's name
        if not isinstance(device, int) or not 0 <= device < rt.getDeviceCount():
            raise CUDARuntimeError(f"cudaErrorInvalidDevice: {device!r}")
        return {"name": DEVICE_NAME, "totalGlobalMem": TOTAL_MEMORY,
                "multiProcessorCount": MULTIPROCESSORS, "l2CacheSize": L2_BYTES,
                "major": 9, "minor": 0, "sharedMemPerBlock": 48 * 1024,
                "sharedMemPerBlockOptin": 227 * 1024, "maxThreadsPerBlock": 1024,
                "warpSize": 32, "clockRate": 1980000}

    def memcpyAsync(dst: int, src: int, size: int, kind: int, stream: int) -> None:  # noqa: N802
        for name, value in (("dst", dst), ("src", src), ("size", size), ("kind", kind),
                            ("stream", stream)):
            if not isinstance(value, int):
                raise TypeError(f"memcpyAsync: {name} must be an int, got {type(value).__name__}")
        ctypes.memmove(dst, src, size)
        counters.memcpys += 1

    rt.getDeviceProperties = getDeviceProperties
    rt.memcpyAsync = memcpyAsync
    rt.memcpy = lambda dst, src, size, kind: memcpyAsync(dst, src, size, kind, 0)
    return rt


runtime = _runtime_module()


# ---- kernels: the simulator behind CuPy's RawModule interface -------------------------------

def _check_type(name: str, value, expected: type) -> None:
    """Cython's check of a typed argument (CuPy declares ``tuple grid``, ``tuple options``...)."""
    if not isinstance(value, expected):
        raise TypeError(f"Argument '{name}' has incorrect type (expected {expected.__name__}, "
                        f"got {type(value).__name__})")


class RawKernel:
    """What ``RawModule.get_function`` returns; calls check what CuPy's Function checks."""

    def __init__(self, simulated, name: str):
        self._simulated = simulated
        self.name = name

    @property
    def max_dynamic_shared_size_bytes(self) -> int:
        return self._simulated.max_dynamic_shared_size_bytes

    @max_dynamic_shared_size_bytes.setter
    def max_dynamic_shared_size_bytes(self, value: int) -> None:
        self._simulated.max_dynamic_shared_size_bytes = int(value)

    def __call__(self, grid, block, args, **kwargs):
        unknown = set(kwargs) - {"shared_mem", "stream"}
        if unknown:
            raise TypeError(f"RawKernel.__call__ got unexpected keywords {sorted(unknown)}")
        for label, dims in (("grid", grid), ("block", block)):
            _check_type(label, dims, tuple)
        shared_mem = kwargs.get("shared_mem", 0)
        if int(shared_mem) < 0:
            raise OverflowError("can't convert negative value to size_t")
        self._simulated(grid, block, [_kernel_argument(a) for a in args],
                        shared_mem=int(shared_mem))
        counters.launches[self.name] = counters.launches.get(self.name, 0) + 1


def _kernel_argument(x):
    """CuPy's _pointer(): device arrays by pointer, NumPy scalars as they are, Python scalars
    widened to 64 bits; anything else (a host array) is refused."""
    if x is None:
        return None
    if isinstance(x, ndarray):
        return x._host
    if isinstance(x, np.generic):
        return x
    if isinstance(x, int):          # bool too: CuPy checks int first
        return np.int64(x)
    if isinstance(x, float):
        return np.float64(x)
    raise TypeError(f"Unsupported type {type(x)}")


def _source_name(code: str) -> str:
    """The name gpuconv's simulator executor gives this code's module: the kernel family's
    source, from the ``#line`` that starts family_code's text ("kernel.cu", CuPy's name, for
    other code). Same name, same cache key: the fake device runs the modules the rest of the
    suite builds instead of building its own copies (~100 s of a cold CI run)."""
    match = re.search(r'^#line 1 "([^"\n]+)"$', code[:4096], re.MULTILINE)
    return match.group(1) if match else "kernel.cu"


class RawModule:
    def __init__(self, *, code=None, path=None, options=(), backend="nvrtc",
                 translate_cucomplex=False, enable_cooperative_groups=False,
                 name_expressions=None, jitify=False):
        if code is None or path is not None:
            raise TypeError("the fake RawModule compiles source code only (code=...)")
        _check_type("code", code, str)
        _check_type("options", options, tuple)
        self.code, self.options = code, options
        self.name_expressions = None if name_expressions is None else tuple(name_expressions)
        self._module = None

    def compile(self, log_stream=None):
        from gpuconv._kernel_source import KernelCompileError
        from gpuconv.simulator import load_module
        if self._module is None:
            try:
                self._module = load_module(self.code, self.name_expressions or (),
                                           options=self.options,
                                           source_name=_source_name(self.code))
            except KernelCompileError as error:
                raise CompileException(str(error)) from None

    def get_function(self, name: str) -> RawKernel:
        _check_type("name", name, str)
        self.compile()
        if name not in self._module.name_expressions:
            raise CUDADriverError(f"CUDA_ERROR_NOT_FOUND: named symbol not found: {name}")
        return RawKernel(self._module.get_function(name), name)


# ---- the cupy module ----------------------------------------------------------------------

class _Generator:
    def __init__(self, seed):
        self._rng = np.random.default_rng(seed)

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise TypeError(f"standard_normal: dtype must be float32 or float64, got {dtype}")
        return ndarray(np.asarray(self._rng.standard_normal(size, dtype=dtype)))

    def __getattr__(self, name):
        return _function(f"random.Generator.{name}", getattr(self._rng, name))


def _module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


def _numpy_fallback(name: str):
    """Module-level ``__getattr__``: dtypes and constants as NumPy's, functions wrapped."""
    if name.startswith("__"):
        raise AttributeError(name)
    value = getattr(np, name)
    if isinstance(value, type) or not callable(value):
        return value
    return _function(name, value)


def make_cupy() -> dict[str, types.ModuleType]:
    """The fake ``cupy`` package and its submodules, by their sys.modules names."""
    cuda = _module("cupy.cuda", Device=Device, Stream=Stream, ExternalStream=ExternalStream,
                   Event=Event, get_current_stream=get_current_stream,
                   using_allocator=using_allocator,
                   get_elapsed_time=get_elapsed_time, runtime=runtime,
                   compiler=_module("cupy.cuda.compiler", CompileException=CompileException),
                   driver=_module("cupy.cuda.driver", CUDADriverError=CUDADriverError),
                   is_available=lambda: True)
    random = _module("cupy.random", default_rng=_Generator)
    lib = _module("cupy.lib", stride_tricks=_module(
        "cupy.lib.stride_tricks",
        as_strided=lambda x, shape=None, strides=None: ndarray(
            np.lib.stride_tricks.as_strided(x._host, shape=shape, strides=strides))))
    cupy = _module("cupy", __version__="14.2.0 (fake)", ndarray=ndarray, asarray=asarray,
                   array=array, asnumpy=asnumpy, from_dlpack=from_dlpack, cuda=cuda,
                   random=random, lib=lib, RawModule=RawModule, RawKernel=RawKernel,
                   get_default_memory_pool=get_default_memory_pool,
                   get_default_pinned_memory_pool=get_default_pinned_memory_pool,
                   __getattr__=_numpy_fallback)
    modules = {"cupy": cupy, "cupy.cuda": cuda, "cupy.cuda.runtime": runtime,
               "cupy.cuda.compiler": cuda.compiler, "cupy.cuda.driver": cuda.driver,
               "cupy.random": random, "cupy.lib": lib, "cupy.lib.stride_tricks": lib.stride_tricks}
    return modules


# ---- torch.cuda ---------------------------------------------------------------------------

class _TorchStream:
    cuda_stream = 0          # torch's default stream is the legacy default stream

    def synchronize(self):
        pass


def _install_torch(monkeypatch, torch) -> None:
    def set_device(device):
        index = device if isinstance(device, int) else torch.device(device).index
        if index != 0:
            raise RuntimeError(f"CUDA error: invalid device ordinal {index}")
        counters.torch_set_device.append(index)

    def empty_cache():
        counters.torch_empty_cache += 1

    cuda = torch.cuda
    monkeypatch.setattr(cuda, "is_available", lambda: True)
    monkeypatch.setattr(cuda, "device_count", lambda: 1)
    monkeypatch.setattr(cuda, "current_device", lambda: 0)
    monkeypatch.setattr(cuda, "set_device", set_device)
    monkeypatch.setattr(cuda, "current_stream", lambda device=None: _TorchStream())
    monkeypatch.setattr(cuda, "default_stream", lambda device=None: _TorchStream())
    monkeypatch.setattr(cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(cuda, "empty_cache", empty_cache)
    monkeypatch.setattr(cuda, "get_device_name", lambda device=None: DEVICE_NAME.decode())
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: CUDNN_VERSION)


# ---- installing it ------------------------------------------------------------------------

def install(monkeypatch, tmp_path, *, fake_torch: bool = True) -> _Counters:
    """Fake CuPy (and torch.cuda where torch is installed) for one test; returns the counters.

    ``tmp_path`` holds a fake ``nvidia-smi`` put first on PATH, so the driver-version query the
    bench makes is answered too.
    """
    global counters
    counters = _Counters()
    Device._current = 0
    Stream._stack = []
    for name, module in make_cupy().items():
        monkeypatch.setitem(sys.modules, name, module)
    import gpuconv._loader
    # Modules built for the fake must not outlive it (the memo is keyed by device id only).
    monkeypatch.setattr(gpuconv._loader, "_modules", {})
    smi = tmp_path / "fake-bin" / "nvidia-smi"
    smi.parent.mkdir(exist_ok=True)
    smi.write_text(f"#!/bin/sh\necho '{NVIDIA_SMI_LINE}'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{smi.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    try:
        import torch
    except ImportError:
        return counters
    if fake_torch:
        _install_torch(monkeypatch, torch)
    return counters


def pytest_configure(config):
    """As a plugin, the GPU-marked tests' CuPy paths on the fake device before a GPU session:

        PYTHONPATH=tests/bench python -m pytest -p fake_cuda -m gpu tests/kernels

    torch.cuda stays real (its tests skip): a CPU tensor cannot pass for a CUDA one there."""
    import tempfile
    from pathlib import Path
    from _pytest.monkeypatch import MonkeyPatch
    install(MonkeyPatch(), Path(tempfile.mkdtemp(prefix="fake-cuda-")), fake_torch=False)
