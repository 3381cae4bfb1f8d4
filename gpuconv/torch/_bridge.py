"""Torch tensors in, gpuconv arrays through, torch tensors out.

- CPU tensors become NumPy views of the tensor's memory (``.numpy()`` after ``detach()``), so
  gpuconv computes them with the NumPy reference, or with the CUDA kernels on the CPU inside
  ``gpuconv.simulate()``; results come back with ``torch.from_numpy`` (no copy).
- CUDA tensors become CuPy arrays over their memory (no copy), and every gpuconv call runs inside
  ``on_device_of``: CuPy's current device is the tensor's, CuPy's current stream *is* torch's
  current stream, so kernels are ordered with the surrounding torch work and no exchange needs
  a synchronization, and CuPy's memory comes from torch's caching allocator, so results come
  back as views of torch's own tensors (no DLPack) and a CUDA graph capture can record the call.
- bfloat16 on the CPU: NumPy has no bfloat16. With ``ml_dtypes`` installed the tensor's bits are
  reinterpreted as an ``ml_dtypes.bfloat16`` array (no copy, computed as bfloat16); without it
  the tensor is upcast to float32 and the result cast back to bfloat16 (one extra rounding).
- channels_last: a 4-D tensor laid out NHWC in memory is handed over as its NHWC permuted view
  with ``data_format="NHWC"``, so the kernels read it in place (no transpose), and the NHWC result
  is permuted back to a logical NCHW tensor that is channels_last in memory, as torch returns.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from .._external_streams import external_stream
from ._args import FLOAT_DTYPES

try:  # registers NumPy's "bfloat16" dtype; optional (see the module docstring)
    import ml_dtypes
except ImportError:  # pragma: no cover - depends on the environment
    ml_dtypes = None

# Axis orders between a logical NCHW tensor and its NHWC view.
TO_NHWC = (0, 2, 3, 1)
TO_NCHW = (0, 3, 1, 2)


def _cupy():
    try:
        import cupy
    except ImportError as error:
        raise ImportError("CUDA tensors need CuPy: pip install 'gpuconv[cuda12]' or "
                          "'gpuconv[cuda13]'") from error
    return cupy


# The tensor arguments that may be None (the others are required: a TypeError names them).
_OPTIONAL_TENSORS = frozenset(("bias", "residual"))


def common_device(named_tensors: dict) -> torch.device:
    """The one device of a call's tensors (``None`` bias or residual skipped). Mixing CPU and
    CUDA tensors is a TypeError (as mixing NumPy and CuPy arrays is); two CUDA devices are a
    ValueError."""
    device = first = None
    for name, t in named_tensors.items():
        if t is None and name in _OPTIONAL_TENSORS:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        _check_has_array(name, t)
        if device is None:
            device, first = t.device, name
        elif t.device != device:
            error = TypeError if t.device.type != device.type else ValueError
            raise error(f"{name} is on {t.device} but {first} is on {device}: all tensors of a "
                        "call must be on one device")
    if device is None:
        raise TypeError(f"no tensor given among {', '.join(named_tensors)}")
    if device.type not in ("cpu", "cuda"):
        raise TypeError(f"{first} is on a {device.type} device: gpuconv takes CPU and CUDA "
                        "tensors only")
    return device


def _check_has_array(name: str, t: torch.Tensor) -> None:
    """A tensor no NumPy or CuPy array can view (sparse and other layouts, float8 and complex32,
    quantized) is a TypeError naming it, before the bridge's conversion would fail naming none.
    Other dtypes go on to gpuconv's dtype checks. Not while Dynamo traces (torch.compile takes
    strided tensors only, and its strict mode for backward passes refuses reading ``layout``)."""
    if torch.compiler.is_compiling():
        return
    if t.layout is not torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, got layout {t.layout}")
    if t.is_quantized or t.dtype is torch.complex32 or (
            t.dtype.is_floating_point and t.dtype not in FLOAT_DTYPES):
        raise TypeError(f"{name} has dtype {t.dtype}; gpuconv computes in torch.float16, "
                        "torch.bfloat16, torch.float32 and torch.float64")


# Every call enters a device context; CPU tensors need none (one shared, reusable object).
_NO_DEVICE = contextlib.nullcontext()


def on_device_of(device: torch.device):
    """A context that runs the gpuconv calls of its block where ``device``'s tensors live (see
    module docstring)."""
    return _on_cuda_device(device) if device.type == "cuda" else _NO_DEVICE


@contextlib.contextmanager
def _on_cuda_device(device: torch.device):
    cupy = _cupy()
    index = device.index if device.index is not None else torch.cuda.current_device()
    with cupy.cuda.Device(index), external_stream(cupy, _current_stream_pointer(index), index), \
            cupy.cuda.using_allocator(_torch_allocator(cupy, index)):
        yield


# Memory for CuPy arrays made inside a gpuconv.torch call (results, workspaces, scratch) comes
# from torch's caching allocator, not CuPy's pool: one pool for the model's memory (CuPy's would
# hold freed blocks torch cannot reuse), the pool of a CUDA graph capture when one is under way
# (so that gpuconv's launches can be captured with the torch code around them), and results
# that are torch's own tensors (``to_tensor``), whose ``record_stream`` works.
_ALLOCATORS: dict = {}


def _torch_allocator(cupy, index: int):
    """CuPy's allocator function for device ``index``: ``size`` bytes -> a MemoryPointer to a
    uint8 tensor's memory, the tensor kept alive by it (``torch.empty`` on torch's current
    stream, which is CuPy's inside ``on_device_of``)."""
    allocate = _ALLOCATORS.get(index)
    if allocate is None:
        device = torch.device("cuda", index)
        memory_pointer, unowned = cupy.cuda.MemoryPointer, cupy.cuda.UnownedMemory

        def allocate(size: int):
            # rounded up to 16 bytes: a view of any dtype fits it whole
            block = torch.empty((size + 15) & ~15, dtype=torch.uint8, device=device)
            return memory_pointer(unowned(block.data_ptr(), size, block, index), 0)

        _ALLOCATORS[index] = allocate
    return allocate


# A converted model makes several bridge crossings per layer: each one's host time adds to every
# layer's (bench/model_profile.py on an H100: torch.cuda.current_stream 1.6 us against 0.1 us for
# the raw pointer; a new ExternalStream 1 us, hence gpuconv._external_streams' cache; DLPack 16 us
# into CuPy, 6-14 us back, against 3.4 and ~2 us for the direct paths below).
# kernels/conv/NOTES.md "Session 15 on the H100", host time through gpuconv.torch.


def _current_stream_pointer(index: int) -> int:
    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)   # private: fall back if gone
    return raw(index) if raw is not None else torch.cuda.current_stream(index).cuda_stream


def is_channels_last(t: torch.Tensor) -> bool:
    """True when a 4-D tensor is laid out NHWC by torch's rule, ``suggest_memory_format``, the
    one that sets the layout of a convolution's or pooling's result: the order of its strides.
    A tensor contiguous in both layouts (C == 1, or H == W == 1) counts by the strides its size-1
    dimensions keep: (3, 1, 3, 3) for a (2, 3, 1, 1) weight moved to channels_last, (3, 1, 1, 1)
    for one made NCHW. A view that is not dense (a channel slice or a strided window of a
    channels_last tensor) counts the same way."""
    if t.dim() != 4:
        return False
    if t.is_contiguous():
        # Also channels_last-contiguous only with C == 1 or H == W == 1. Under torch.jit.trace
        # the sizes are tensors, which the rule cannot test: such a tensor goes NCHW there.
        if torch.jit.is_tracing():
            return False
        _, c, h, w = t.shape
        return (c == 1 or h == w == 1) and _strides_like_nhwc(t)
    return t.is_contiguous(memory_format=torch.channels_last) or _strides_like_nhwc(t)


def _strides_like_nhwc(t: torch.Tensor) -> bool:
    """c10's is_channels_last_strides_2d: the strides increase in the order C, W, H, N (a
    size-1 dimension may share its neighbour's stride; the ambiguous cases go NCHW)."""
    sizes, strides = t.shape, t.stride()
    if strides[1] == 0:
        return False
    smallest = 0
    for d in (1, 3, 2, 0):
        if sizes[d] == 0 or strides[d] < smallest or (d == 0 and smallest == strides[1]):
            return False
        smallest = strides[d] * (sizes[d] if sizes[d] > 1 else 1)
    return True


def data_format_for(t: torch.Tensor) -> str:
    """The layout gpuconv computes ``t``, the call's input, in; a TypeError if it is not a
    tensor."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(t).__name__}")
    return "NHWC" if is_channels_last(t) else "NCHW"


def _is_transformed(t: torch.Tensor) -> bool:
    """Whether ``t`` is a torch.func transform's wrapper (a batched or gradient-tracking tensor
    of vmap/grad/jvp), or the batched gradient of a vectorized backward (autograd's own vmap:
    ``torch.autograd.grad(is_grads_batched=True)``, ``jacobian(vectorize=True)``), rather than a
    tensor with storage."""
    functorch = getattr(torch._C, "_functorch", None)
    if functorch is None:
        return False
    legacy = getattr(functorch, "is_legacy_batchedtensor", None)
    return bool(functorch.is_functorch_wrapped_tensor(t) or (legacy is not None and legacy(t)))


def transforms_unsupported() -> NotImplementedError:
    return NotImplementedError(
        "gpuconv.torch functions do not support torch.func transforms (vmap, jvp, grad, "
        "jacrev...) nor vectorized backward passes (torch.autograd.grad with "
        "is_grads_batched=True, torch.autograd.functional.jacobian/hessian with "
        "vectorize=True): their kernels take the tensors' memory, which batched or "
        "wrapped tensors do not expose. Use torch.autograd without vectorization "
        "(loss.backward(), torch.autograd.grad, jacobian(vectorize=False)) or "
        "torch.nn.functional for this layer.")


def batch_of_one(t: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """An unbatched (C, H, W) input as the batch of one it runs as: dense NCHW unless
    ``channels_last`` (a convolution whose weight is channels_last). torch's unbatched layout
    follows the weight alone, its outputs' and its gradients' too: a (C, H, W) input laid out
    HWC (``torch.from_numpy(image).permute(2, 0, 1)``) would otherwise unsqueeze to a
    channels_last batch and get a gradient laid out HWC."""
    t = t.unsqueeze(0)
    return t if channels_last else t.contiguous()


def unbatched(t: torch.Tensor) -> torch.Tensor:
    """The (C, H, W) result of an unbatched call from its batch of one: contiguous, as torch
    returns it."""
    return t.squeeze(0).contiguous()


def to_array(t, data_format: str = "NCHW"):
    """A tensor (logical NCHW if 4-D) -> a NumPy/CuPy array in ``data_format``, sharing memory
    where the dtype allows (bfloat16 without ml_dtypes is upcast). ``None`` passes through."""
    if t is None:
        return None
    try:
        return _array_of(t, data_format)
    except RuntimeError:
        if _is_transformed(t):
            raise transforms_unsupported() from None
        raise


def _array_of(t: torch.Tensor, data_format: str):
    if t.is_neg() or t.is_conj():   # views whose memory is not their values (z.conj().imag)
        t = t.resolve_conj().resolve_neg()
    if t.is_cuda:
        # Read in place from the pointer, shape and strides: no torch op (a detach and a permute
        # are ~2 us each of a layer's host time).
        view = _cupy_view(t, data_format)
        if view is not None:
            return view
        try:
            return _cupy().from_dlpack(_in_layout(t.detach(), data_format))
        except (TypeError, ValueError, BufferError) as error:
            raise TypeError(f"a CUDA tensor of dtype {t.dtype} cannot be handed to CuPy: "
                            f"{error}") from error
    if t.requires_grad:             # .numpy() refuses a tensor autograd tracks
        t = t.detach()
    t = _in_layout(t, data_format)
    if t.dtype == torch.bfloat16:
        if ml_dtypes is not None:
            return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return t.float().numpy()
    return t.numpy()


def _nhwc(t: torch.Tensor, data_format: str) -> bool:
    # A tensor of another rank passes as it is: gpuconv's checks name it and its rank.
    return data_format == "NHWC" and t.dim() == 4


def _in_layout(t: torch.Tensor, data_format: str) -> torch.Tensor:
    return t.permute(*TO_NHWC) if _nhwc(t, data_format) else t


# torch dtypes that CuPy arrays can carry, viewed in place without DLPack (others take it).
_CUPY_DTYPES = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64,
                torch.int32: np.int32, torch.int64: np.int64}


def _cupy_view(t: torch.Tensor, data_format: str = "NCHW"):
    """A CuPy array over a CUDA tensor's memory in ``data_format`` (NHWC: the logical NCHW
    tensor's axes in NHWC order), strides kept, the tensor kept alive by it; None where DLPack
    must do it (dtypes CuPy has no name for, empty tensors)."""
    dtype = _CUPY_DTYPES.get(t.dtype)
    if dtype is None or t.numel() == 0:
        return None
    cupy = _cupy()
    itemsize = t.element_size()
    shape, stride = tuple(t.shape), t.stride()
    if _nhwc(t, data_format):
        shape = tuple(shape[i] for i in TO_NHWC)
        stride = tuple(stride[i] for i in TO_NHWC)
    span = 1 + sum((n - 1) * s for n, s in zip(shape, stride))   # torch strides are >= 0
    memory = cupy.cuda.UnownedMemory(t.data_ptr(), span * itemsize, t, t.device.index)
    return cupy.ndarray(shape, dtype, cupy.cuda.MemoryPointer(memory, 0),
                        strides=tuple(s * itemsize for s in stride))


def to_tensor(a, dtype: torch.dtype, data_format: str = "NCHW") -> torch.Tensor:
    """A gpuconv result (in ``data_format``) -> a torch tensor of ``dtype`` (logical NCHW)."""
    if isinstance(a, np.ndarray):
        t = _from_numpy(_canonical_strides(a))
    else:
        t = _tensor_of_cupy(a)
    if t.dtype != dtype:  # only bfloat16 computed in float32 without ml_dtypes
        t = t.to(dtype)
    return t.permute(*TO_NCHW) if data_format == "NHWC" else t


def _canonical_strides(a: np.ndarray) -> np.ndarray:
    """``a`` with the strides a C-contiguous array gives its size-1 dimensions. A result that is
    a transposed view (the reference's NHWC results) may keep other strides there, which move
    no element but do decide torch's layout of the tensor (suggest_memory_format): a
    one-channel NHWC result would read as NCHW."""
    if 1 not in a.shape or not a.flags.c_contiguous:
        return a
    strides, step = [], a.itemsize
    for size in reversed(a.shape):
        strides.append(step)
        step *= max(size, 1)
    strides = tuple(reversed(strides))
    if strides == a.strides:
        return a
    return np.lib.stride_tricks.as_strided(a, a.shape, strides, writeable=a.flags.writeable)


def _tensor_of_cupy(a) -> torch.Tensor:
    """A torch tensor over a CuPy array's memory. Memory a torch tensor owns (the allocator of
    ``on_device_of``, an input's view) gives a view of that tensor's storage: a tensor of torch's
    own, which a CUDA graph's pool and ``record_stream`` know. Other memory (CuPy's pool) goes
    through DLPack. Either way the kernels wrote it on torch's current stream, the stream it is
    used on next, so no stream handshake is needed (DLPack's -1: none)."""
    owner = getattr(a.data.mem, "_owner", None)
    dtype = _TORCH_DTYPES.get(a.dtype)
    if isinstance(owner, torch.Tensor) and dtype is not None:
        return tensor_over(owner.untyped_storage(), a.data.ptr, dtype, a.shape, a.strides)
    return torch.utils.dlpack.from_dlpack(a.__dlpack__(stream=-1))


# NumPy dtype -> torch dtype of the arrays a kernel returns (bfloat16 where ml_dtypes names it)
_TORCH_DTYPES = {np.dtype(v): k for k, v in _CUPY_DTYPES.items()}
if ml_dtypes is not None:
    _TORCH_DTYPES[np.dtype(ml_dtypes.bfloat16)] = torch.bfloat16


def tensor_over(storage, address: int, dtype: torch.dtype, shape: tuple,
                byte_strides: tuple) -> torch.Tensor:
    """The tensor of ``dtype``, ``shape`` and ``byte_strides`` whose first element is at
    ``address`` in ``storage``."""
    itemsize = dtype.itemsize
    offset = address - storage.data_ptr()
    if offset % itemsize or any(s % itemsize for s in byte_strides):
        raise RuntimeError(f"gpuconv internal error: an array of {dtype} at byte offset {offset} "
                           f"with strides {byte_strides} is not a view of its storage")
    return torch.empty(0, dtype=dtype, device=storage.device).set_(
        storage, offset // itemsize, tuple(shape), tuple(s // itemsize for s in byte_strides))


# A dtype comparison, not ``a.dtype.name``: NumPy builds the name in Python (~4 us a call).
_BFLOAT16 = np.dtype(ml_dtypes.bfloat16) if ml_dtypes is not None else None


def _from_numpy(a) -> torch.Tensor:
    if a.dtype == _BFLOAT16:
        return torch.from_numpy(_writable(a).view("int16")).view(torch.bfloat16)
    return torch.from_numpy(_writable(a))


def _writable(a):
    # torch.from_numpy warns on read-only arrays and cannot take negative strides.
    if not a.flags.writeable or min(a.strides, default=0) < 0:
        return a.copy()
    return a
