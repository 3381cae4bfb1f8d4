"""Which array library a call is made with, and the dtype rules of the contract.

NumPy arrays go to the reference (or to the CPU executor under ``gpuconv.simulate()``), CuPy arrays
to the CUDA kernels. Torch and JAX arrays have their own front modules (``gpuconv.torch``,
``gpuconv.jax``) and are refused here with a pointer to them. CuPy is never imported by this
module: an array can only be a CuPy array if CuPy was already imported by the caller.
"""
from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

FLOAT_DTYPE_NAMES = ("float16", "bfloat16", "float32", "float64")


def library_of(name: str, x: Any) -> str:
    """'numpy' or 'cupy' for an array argument; TypeError naming the argument otherwise."""
    if isinstance(x, np.ndarray):
        return "numpy"
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(x, cupy.ndarray):
        _check_current_device(name, x, cupy)
        _check_cupy_alignment(name, x)
        return "cupy"
    module = type(x).__module__.split(".")[0]
    if module == "torch":
        raise TypeError(f"{name} is a torch.Tensor: use gpuconv.torch.<function> for torch tensors")
    if module in ("jax", "jaxlib"):
        raise TypeError(f"{name} is a JAX array: use gpuconv.jax.<function> for JAX arrays")
    raise TypeError(f"{name} must be a numpy.ndarray or cupy.ndarray, got {type(x).__name__}")


def _check_current_device(name: str, x: Any, cupy) -> None:
    """Kernels launch on CuPy's current device: an array that lives on another one would be read
    through a foreign pointer (a fault, or with peer access a slow and silently racy read)."""
    current = cupy.cuda.Device().id
    if x.device.id != current:
        raise ValueError(f"{name} is on GPU {x.device.id} but the current CuPy device is GPU "
                         f"{current}: call inside `with cupy.cuda.Device({x.device.id}):`")


def _check_cupy_alignment(name: str, x: Any) -> None:
    """A CUDA load of a T faults on an address that is not a multiple of sizeof(T), and CuPy's
    own copies read through typed pointers too, so such an array (made from a byte-offset
    pointer) cannot be copied to an aligned one either: refused by name."""
    if not is_aligned(x, x.dtype.itemsize):
        raise ValueError(f"{name}'s data pointer ({x.data.ptr:#x}) is not a multiple of its "
                         f"{x.dtype.itemsize}-byte element size; the CUDA kernels cannot read it")


def is_aligned(array: Any, alignment: int) -> bool:
    """Whether ``array``'s first element (NumPy or CuPy) sits on an ``alignment``-byte boundary."""
    address = array.ctypes.data if isinstance(array, np.ndarray) else array.data.ptr
    return address % alignment == 0


def is_kernel_ready(a: Any) -> bool:
    """Whether a kernel may read ``a`` in place: C-contiguous, its first element aligned to the
    element size. NumPy makes misaligned arrays (``np.frombuffer`` at a byte offset, a field of
    a packed structured array) that the NumPy reference reads, but a CUDA load faults on; the
    launchers copy them, as they copy non-contiguous arrays (CuPy ones are refused above)."""
    return bool(a.flags.c_contiguous) and is_element_aligned(a)


def is_element_aligned(a: Any) -> bool:
    """Whether every element of ``a`` lies at a multiple of its size (``flags.aligned``: its
    first element's address and its strides)."""
    return not isinstance(a, np.ndarray) or bool(a.flags.aligned)


def copy_for_kernels(xp, a: Any, dtype=None):
    """A fresh C-contiguous copy of ``a`` (in ``dtype`` if given), made by ``xp`` (NumPy or
    CuPy): element-aligned, as every new allocation is (``xp.ascontiguousarray`` would hand a
    misaligned contiguous array back as it is)."""
    return xp.array(a, dtype=dtype, order="C")


def xp_of(library: str):
    if library == "numpy":
        return np
    import cupy
    return cupy


@functools.lru_cache(maxsize=None)
def dtype_name(dtype) -> str:
    """``np.dtype(dtype).name``, remembered: NumPy builds the name in Python on every access,
    and the launchers ask for it several times per call."""
    return np.dtype(dtype).name


def is_float_dtype(dtype: np.dtype) -> bool:
    return dtype_name(dtype) in FLOAT_DTYPE_NAMES


@dataclass(frozen=True)
class ArraySet:
    """The common library and dtype of a call's array arguments."""
    library: str          # "numpy" | "cupy"
    dtype: np.dtype

    @property
    def xp(self):
        return xp_of(self.library)


# The only floating-point array arguments of the API that may be None.
OPTIONAL_ARRAYS = ("bias", "residual")


def zero_stand_in(shape: tuple, dtype) -> np.ndarray:
    """A NumPy array of ``shape`` and ``dtype`` whose elements all alias one zero (no memory of
    its size): what the argument checks read in place of a framework's traced or fake array,
    whose shape and dtype are known but not its data (gpuconv.jax under jit, gpuconv.torch under
    torch.compile)."""
    zero = np.zeros(1, dtype=np.dtype(dtype))
    return np.lib.stride_tricks.as_strided(zero, shape=tuple(shape), strides=(0,) * len(shape))


def check_arrays(float_args: dict[str, Any], *, ndim: dict[str, int] | None = None,
                 optional: tuple[str, ...] = OPTIONAL_ARRAYS) -> ArraySet:
    """Check the floating-point array arguments of one call (``None`` is allowed only for the
    names in ``optional``).

    All must come from one library (mixed NumPy/CuPy is a TypeError), have one floating dtype
    (different or integer/complex dtypes are a TypeError) and, where ``ndim`` names them, the
    given number of dimensions (a ValueError). The first entry fixes the expected dtype.
    """
    library = dtype = None
    first = None
    for name, x in float_args.items():
        if x is None:
            if name in optional:
                continue
            raise TypeError(f"{name} must be an array, got None")
        lib = library_of(name, x)
        if library is None:
            library, first = lib, name
        elif lib != library:
            raise TypeError(f"{name} is a {lib} array but {first} is a {library} array: "
                            "mixing NumPy and CuPy arrays is not supported")
        if not is_float_dtype(x.dtype):
            raise TypeError(f"{name} must have a floating dtype ({', '.join(FLOAT_DTYPE_NAMES)}), "
                            f"got {x.dtype}")
        _check_native_byte_order(name, x)
        if dtype is None:
            dtype = x.dtype
        elif x.dtype != dtype:
            raise TypeError(f"{name} has dtype {x.dtype} but {first} has dtype {dtype}: "
                            "all floating-point arguments must have the same dtype")
        if ndim and name in ndim and x.ndim != ndim[name]:
            raise ValueError(f"{name} must be {ndim[name]}-D, got shape {tuple(x.shape)}")
    if library is None:
        raise TypeError(f"no array given among {', '.join(float_args)}")
    return ArraySet(library, np.dtype(dtype))


def _check_native_byte_order(name: str, x: Any) -> None:
    # The kernels read raw memory: a byte-swapped array would be silently misread (as
    # torch.from_numpy, refuse it rather than guess).
    if not np.dtype(x.dtype).isnative:
        raise TypeError(f"{name} must be in the machine's native byte order, got dtype "
                        f"{np.dtype(x.dtype).str!r}; convert it with "
                        f"{name}.astype({name}.dtype.newbyteorder('='))")


def check_index_array(name: str, x: Any, library: str, *, ndim: int | None = None) -> None:
    """An integer array argument (pooling indices) from the same library as the data."""
    lib = library_of(name, x)
    if lib != library:
        raise TypeError(f"{name} is a {lib} array but the data is a {library} array")
    if np.dtype(x.dtype).kind not in "iu":
        raise TypeError(f"{name} must have an integer dtype, got {x.dtype}")
    _check_native_byte_order(name, x)
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(x.shape)}")


def check_out(out: Any, shape: tuple[int, ...], arrays: ArraySet, *, name: str = "out") -> None:
    """A preallocated output: same library and dtype, the exact shape, writable."""
    lib = library_of(name, out)
    if lib != arrays.library:
        raise TypeError(f"{name} is a {lib} array but the inputs are {arrays.library} arrays")
    if out.dtype != arrays.dtype:
        raise TypeError(f"{name} must have dtype {arrays.dtype}, got {out.dtype}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(out.shape)}")
    if lib == "numpy" and not out.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    if isinstance(out, np.ma.MaskedArray) and np.ma.getmaskarray(out).any():
        # The kernels write its data in place and would leave masked elements masked, where the
        # reference's assignment unmasks them: refused rather than executor-dependent.
        raise ValueError(f"{name} is a numpy.ma.MaskedArray with masked elements: the mask "
                         "would not follow the values written; unmask it (out.mask = False) or "
                         "pass a plain array")


# Work NumPy's exact overlap solver may spend before the answer counts as "overlapping".
OVERLAP_MAX_WORK = 1 << 20


def shares_elements(a: Any, b: Any) -> bool:
    """Whether arrays ``a`` and ``b`` (one library) have a byte in common, exactly: two channel
    slices of one buffer interleave in address range but share nothing (DenseNet's in-buffer
    concatenation). Decided from addresses, shapes and strides only (NumPy's solver; CuPy
    arrays through stand-ins that describe their device memory and are never read); a case too
    hard for the solver counts as sharing."""
    if a.size == 0 or b.size == 0:
        return False
    # Any NumPy array, a subclass too: an ``out=`` memory-mapped file (np.memmap) is one.
    if isinstance(a, np.ndarray):
        if not np.may_share_memory(a, b):
            return False
        pair = (a, b)
    else:
        import cupy
        if not cupy.may_share_memory(a, b):
            return False
        pair = (np.asarray(_MemoryLayout(a)), np.asarray(_MemoryLayout(b)))
    try:
        return bool(np.shares_memory(*pair, max_work=OVERLAP_MAX_WORK))
    except np.exceptions.TooHardError:
        return True


class _MemoryLayout:
    """A CuPy array's device address, shape, strides and dtype as an object NumPy can wrap (the
    NumPy array made from it is only compared, never read)."""

    def __init__(self, a):
        self.__array_interface__ = {"data": (a.data.ptr, True), "shape": tuple(a.shape),
                                    "strides": tuple(a.strides), "typestr": a.dtype.str,
                                    "version": 3}
