"""Checking a launch's arguments against the kernel's C++ parameter types, and launch geometry.

CuPy passes a NumPy scalar's bytes whatever the kernel expects, so an ``np.int64`` given to an
``int`` parameter silently shifts every later argument on a GPU. The simulator knows each
parameter's type (template deduction in the generated entry) and refuses such calls with a
``TypeError`` naming the argument and both types. Pointers take a ``numpy.ndarray`` (its data
pointer is passed, no copy) or None (nullptr); an array whose element type contradicts an
arithmetic pointee (a float64 array for ``float*``) is refused too. ``void*``, ``char*`` and
struct pointees accept any array.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from ._abi import ParamDesc

# Limits of every CUDA GPU since compute capability 3.0.
MAX_BLOCK = (1024, 1024, 64)
MAX_THREADS_PER_BLOCK = 1024
MAX_GRID = (2**31 - 1, 65535, 65535)

_KIND_WORDS = {"i": "signed integer", "u": "unsigned integer", "c": "char", "f": "floating point",
               "B": "bfloat16", "b": "bool", "p": "pointer", "V": "struct", "v": "void"}


@dataclass(frozen=True)
class Param:
    position: int
    type_name: str
    size: int
    kind: str
    pointee_kind: str
    pointee_size: int
    pointee_const: bool
    pointee_align: int = 0          # alignof the pointed-to type; 0 for void

    @classmethod
    def from_desc(cls, position: int, desc: ParamDesc) -> "Param":
        return cls(position, desc.type_name.decode(errors="replace"), desc.size,
                   desc.kind.decode(), desc.pointee_kind.decode().strip("\0"),
                   desc.pointee_size, bool(desc.pointee_const), desc.pointee_align)

    def describe(self) -> str:
        return f"'{self.type_name}' ({_describe_kind(self.kind, self.size)})"


@dataclass(frozen=True)
class PackedArgument:
    """One argument ready for an executor: an array (pointer), None (nullptr) or raw bytes."""
    array: np.ndarray | None = None
    value: bytes | None = None
    writes: bool = False          # the kernel may write through this pointer


def _describe_kind(kind: str, size: int) -> str:
    word = _KIND_WORDS.get(kind, "value")
    return f"{size}-byte {word}" if kind not in ("p", "v") else word


def _numpy_kind(dtype: np.dtype) -> str:
    if dtype.name == "bfloat16":
        return "B"
    return {"i": "i", "u": "u", "f": "f", "b": "b", "V": "V"}.get(dtype.kind, dtype.kind)


def _fits(kind: str, size: int, dtype: np.dtype) -> bool:
    if kind == "c":
        return dtype.kind in "iu" and dtype.itemsize == 1
    return _numpy_kind(dtype) == kind and dtype.itemsize == size


def pack_arguments(kernel: str, params: tuple[Param, ...], args) -> list[PackedArgument]:
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"args of {kernel} must be a tuple of arguments, got {type(args).__name__}")
    if len(args) != len(params):
        expected = ", ".join(p.type_name for p in params)
        raise TypeError(f"{kernel} takes {len(params)} arguments ({expected}), got {len(args)}")
    return [_pack(kernel, p, a) for p, a in zip(params, args)]


def _pack(kernel: str, param: Param, value) -> PackedArgument:
    where = f"argument {param.position} of {kernel}"
    if param.kind == "p":
        return _pack_pointer(where, param, value)
    if isinstance(value, np.ndarray):
        raise TypeError(f"{where}: the kernel's parameter is {param.describe()}, a scalar, but got "
                        f"a numpy.ndarray; pass a NumPy scalar such as np.{_example(param)}(...)")
    if not isinstance(value, np.generic):
        if isinstance(value, (numbers.Number, bool)):
            raise TypeError(f"{where}: got a Python {type(value).__name__} {value!r} for the "
                            f"parameter {param.describe()}; pass a fixed-width NumPy scalar such "
                            f"as np.{_example(param)}({value!r}) (CuPy would pass a Python value "
                            f"with a size the kernel may not expect)")
        raise TypeError(f"{where}: expected a NumPy scalar for the parameter {param.describe()}, "
                        f"got {type(value).__name__}")
    if not _fits(param.kind, param.size, value.dtype):
        raise TypeError(f"{where}: the kernel's parameter is {param.describe()} but got "
                        f"numpy.{value.dtype.name} "
                        f"({_describe_kind(_numpy_kind(value.dtype), value.dtype.itemsize)})")
    return PackedArgument(value=value.tobytes())


def _pack_pointer(where: str, param: Param, value) -> PackedArgument:
    if value is None:
        return PackedArgument()
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{where}: the kernel's parameter is {param.describe()}; pass a "
                        f"numpy.ndarray (or None for nullptr), got {type(value).__name__}")
    if param.pointee_kind in ("i", "u", "f", "B", "b") and not _fits(
            param.pointee_kind, param.pointee_size, value.dtype):
        raise TypeError(f"{where}: the kernel's parameter is '{param.type_name}' (pointer to "
                        f"{_describe_kind(param.pointee_kind, param.pointee_size)}) but the array "
                        f"has dtype {value.dtype.name}")
    if not (value.flags.c_contiguous or value.flags.f_contiguous):
        raise ValueError(f"{where}: the array must be contiguous (strides {value.strides}); the "
                         f"launcher passes contiguous arrays to kernels")
    # A CUDA load or store of a T faults on an address that is not a multiple of alignof(T)
    # (a __half2* over float16 data needs 4 bytes, a float4* 16); the host would read it anyway,
    # so the executor checks what the device would trap: the pointee's alignment, or for a
    # void* the array's elements'.
    alignment = param.pointee_align or value.dtype.itemsize
    if alignment > 1 and value.ctypes.data % alignment:
        raise ValueError(f"{where}: the array's first element (address {value.ctypes.data:#x}) is "
                         f"not aligned to {alignment} bytes, as the kernel's parameter "
                         f"'{param.type_name}' needs on a GPU; the launcher passes aligned arrays "
                         f"to kernels")
    return PackedArgument(array=value, writes=not param.pointee_const)


def _example(param: Param) -> str:
    names = {("i", 1): "int8", ("i", 2): "int16", ("i", 4): "int32", ("i", 8): "int64",
             ("u", 1): "uint8", ("u", 2): "uint16", ("u", 4): "uint32", ("u", 8): "uint64",
             ("f", 2): "float16", ("f", 4): "float32", ("f", 8): "float64", ("b", 1): "bool_",
             ("c", 1): "int8"}
    return names.get((param.kind, param.size), "int32")


def launch_dims(name: str, value, limits: tuple[int, int, int]) -> tuple[int, int, int]:
    """grid or block as CuPy takes them: an int or a tuple of 1-3 ints -> (x, y, z)."""
    if isinstance(value, (numbers.Integral,)) and not isinstance(value, bool):
        dims = (int(value),)
    elif isinstance(value, (tuple, list)) and 1 <= len(value) <= 3 and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value):
        dims = tuple(int(v) for v in value)
    else:
        raise TypeError(f"{name} must be an int or a tuple of 1 to 3 ints, got {value!r}")
    dims = dims + (1,) * (3 - len(dims))
    for axis, (d, limit) in enumerate(zip(dims, limits)):
        if not 1 <= d <= limit:
            raise ValueError(f"{name}[{axis}] must be in [1, {limit}] (a CUDA launch limit), "
                             f"got {d}")
    if name == "block" and dims[0] * dims[1] * dims[2] > MAX_THREADS_PER_BLOCK:
        raise ValueError(f"block {dims} has {dims[0] * dims[1] * dims[2]} threads; a CUDA block "
                         f"has at most {MAX_THREADS_PER_BLOCK}")
    return dims
