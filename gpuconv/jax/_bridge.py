"""Running a gpuconv call on JAX arrays, eagerly or under ``jax.jit``.

``call(fn, out_spec, *args)``: ``fn`` takes the same arguments as NumPy or CuPy arrays (``args``
may hold JAX arrays, None and lists of arrays) and calls gpuconv; ``out_spec`` is the
``jax.ShapeDtypeStruct`` (or a tuple of them) of its result.

- Concrete arrays on a GPU go to CuPy through DLPack (no copy) and run on the CUDA kernels on the
  array's device. JAX has no public stream to join, so the CuPy stream is synchronized before the
  result is handed back to JAX (through DLPack again).
- Concrete CPU arrays are read as NumPy arrays: the NumPy reference, or the CUDA kernels run on the
  CPU inside ``gpuconv.simulate()``.
- Traced arrays (under ``jax.jit``, ``vmap``, ``grad`` of a jitted function) become a callback
  that XLA runs when the program reaches it (``_traced.py``): on a GPU the CUDA kernels on XLA's
  own buffers and stream, on a CPU the NumPy reference or the simulator.
Integer results (max-pooling indices) take JAX's default integer dtype (int32 unless
``jax_enable_x64``); indices passed into gpuconv are widened to int64 first.

Placement follows JAX's rule for a jax.numpy operation: NumPy arguments and uncommitted JAX
arrays go to the device of the committed ones, and an eager result lives on its arguments'
device (not on the default device), committed to it only where an argument was.

Under ``jax.jit`` gpuconv itself first sees the arrays inside the callback, where its TypeError
or ValueError would surface as a JaxRuntimeError: the wrappers run gpuconv's own argument checks
at trace time on ``stand_in`` arrays (the traced shapes and dtypes, no data), so an invalid call
fails where it is made, with the error eager mode gives.
"""
from __future__ import annotations

import numpy as np

import jax
import jax.numpy as jnp

from gpuconv import _state
from gpuconv._arrays import zero_stand_in
from gpuconv.pool.launch_common import check_int32

from ._traced import cast, import_cupy, traced_call

GPU_PLATFORMS = ("gpu", "cuda", "rocm")


def spec(shape, dtype) -> jax.ShapeDtypeStruct:
    """The result spec of an array of ``shape``, with JAX's canonical form of ``dtype``."""
    return jax.ShapeDtypeStruct(tuple(int(s) for s in shape), jax.dtypes.canonicalize_dtype(dtype))


def spec_like(a) -> jax.ShapeDtypeStruct:
    return spec(a.shape, a.dtype)


def stand_in(a, dtype=None):
    """A NumPy array of ``a``'s shape and dtype (or ``dtype``) whose elements all alias one zero
    (no memory of its size): what gpuconv's argument checks read in place of a traced JAX array.
    None and lists (ROI boxes) map element-wise; anything else is passed on for the checks to
    refuse."""
    if a is None:
        return None
    if isinstance(a, (list, tuple)):
        return [stand_in(b, dtype) for b in a]
    if not isinstance(a, (jax.Array, jax.core.Tracer, np.ndarray)):
        return a
    if dtype is None:   # a NumPy argument is checked with the dtype JAX will give it (call)
        dtype = jax.dtypes.canonicalize_dtype(a.dtype)
    return zero_stand_in(tuple(a.shape), dtype)


def check_indices(indices) -> None:
    """max_unpool2d's indices: a JAX or NumPy array of a NumPy integer dtype (int8 to uint64)."""
    try:
        kind = np.dtype(indices.dtype).kind
    except (AttributeError, TypeError):   # no dtype, or one NumPy does not know (torch's)
        kind = None
    if kind not in ("i", "u"):
        raise TypeError(f"indices must have an integer dtype (a JAX array of a NumPy integer "
                        f"dtype), got {type(indices).__name__} of dtype "
                        f"{getattr(indices, 'dtype', None)}")


FORWARD_MODE = (
    "gpuconv.jax: forward-mode differentiation (jax.jvp, jax.jacfwd, and jax.hessian, which "
    "is jacfwd of jacrev) is not implemented: the functions are "
    "differentiated in reverse mode (jax.custom_vjp); use jax.grad, jax.vjp or jax.jacrev. "
    "Second derivatives are not implemented either.")


def differentiable_call(f, *args):
    """``f(*args)`` for a ``jax.custom_vjp`` function ``f``: under forward-mode differentiation
    JAX refuses it with a TypeError that names no gpuconv function; this says what to use."""
    try:
        return f(*args)
    except TypeError as error:
        if "forward-mode" not in str(error):
            raise
        raise NotImplementedError(FORWARD_MODE) from None


def call(fn, out_spec, *args):
    leaves, treedef = jax.tree_util.tree_flatten(args)
    leaves, device, committed = _as_jax(leaves)
    if device is None:      # traced
        return traced_call(fn, out_spec, treedef, leaves)
    if device.platform in GPU_PLATFORMS:
        return _call_cupy(fn, out_spec, treedef, leaves, device)
    arrays = jax.tree_util.tree_unflatten(treedef, [np.asarray(a) for a in leaves])
    # committed only where an argument was, as a jax.numpy result: an uncommitted one (the
    # default device's) may meet arrays committed elsewhere, e.g. a weight gradient computed
    # from uncommitted operands meeting its committed parameter
    return cast(fn(*arrays), out_spec,
                lambda r: jnp.asarray(r, device=device) if committed else jnp.asarray(r))


def _as_jax(leaves):
    """The leaves as JAX arrays, the device of the call (None when traced) and whether any
    argument was committed to it.

    NumPy leaves (jax.grad of a function called with NumPy arrays passes them through) and
    uncommitted arrays go to the device of the committed arrays, as a jax.numpy operation
    places them; with none committed, NumPy leaves go to the default device."""
    concrete = [a for a in leaves if _is_concrete(a)]
    committed = _devices([a for a in concrete if a.committed])
    home = committed.pop() if len(committed) == 1 else None
    leaves = [_placed(a, home) for a in leaves]
    if any(isinstance(a, jax.core.Tracer) for a in leaves):
        return leaves, None, False
    return leaves, _device_of(leaves), home is not None


def check_kernel_sizes(x, *shapes) -> None:
    """The pooling and ROI kernels index with 32-bit ints (pool/launch_common.check_int32):
    where the call will run on them (a GPU, or inside ``gpuconv.simulate()``), x or an output
    shape past that is refused when traced, with the eager error, instead of from inside the
    callback after XLA allocated the output."""
    if _state.active_simulation() is not None:
        kernels = True
    elif _is_concrete(x):
        kernels = on_gpu(x)
    else:
        kernels = jax.default_backend() in GPU_PLATFORMS
    if kernels:
        check_int32(*(int(np.prod(shape, dtype=np.int64)) for shape in (x.shape, *shapes)))


def on_gpu(a) -> bool:
    """Whether ``a`` is a concrete JAX array on a GPU (what _call_cupy runs)."""
    return _is_concrete(a) and _device_of([a]).platform in GPU_PLATFORMS


def _is_concrete(a) -> bool:
    # a Tracer is an instance of jax.Array too
    return isinstance(a, jax.Array) and not isinstance(a, jax.core.Tracer)


def _placed(a, home):
    if isinstance(a, jax.core.Tracer):
        return a
    if not isinstance(a, jax.Array):
        return jnp.asarray(a, device=home)
    return a if home is None or a.committed else jax.device_put(a, home)


def _devices(arrays) -> set:
    devices = set()
    for a in arrays:
        devices |= set(a.devices())
    return devices


def _device_of(leaves):
    devices = _devices(leaves)
    if len(devices) != 1:
        raise ValueError(f"the arrays of a gpuconv call must live on one device, got "
                         f"{sorted(map(str, devices))}")
    return devices.pop()


def _call_cupy(fn, out_spec, treedef, leaves, device):
    cupy = import_cupy()
    with cupy.cuda.Device(getattr(device, "local_hardware_id", device.id)):
        for a in leaves:
            a.block_until_ready()
        arrays = jax.tree_util.tree_unflatten(treedef, [cupy.from_dlpack(a) for a in leaves])
        result = cast(fn(*arrays), out_spec, lambda r: r)
        cupy.cuda.get_current_stream().synchronize()
        return jax.tree_util.tree_map(jax.dlpack.from_dlpack, result)


def as_int64(indices):
    """Indices from JAX (int32 by default) as the int64 that gpuconv's index checks and kernels
    expect; a NumPy or CuPy array stays one. Float indices are refused (as gpuconv and torch
    refuse them), not truncated."""
    check_indices(indices)
    return indices.astype(np.int64, copy=False)
