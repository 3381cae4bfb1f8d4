"""How a gpuconv call traced by JAX (under ``jax.jit``, ``vmap``, or ``grad`` of a jitted
function) runs: as a callback that XLA calls when the compiled program reaches it.

- ``jax.experimental.buffer_callback`` (in recent JAX releases) hands the callback XLA's own
  buffers and, on a GPU, XLA's stream: GPU buffers are viewed as CuPy arrays (their
  ``__cuda_array_interface__``, no copy) and the CUDA kernels are queued on that stream, in the
  program's order, writing the result into XLA's output buffer; CPU buffers are viewed as NumPy
  arrays, for the NumPy reference or, inside ``gpuconv.simulate()``, the CPU executor. A GPU
  call never synchronizes the stream, except where a call reads array values on the host (the
  ROI boxes' and max_unpool2d indices' checks read back 4 bytes), as in eager mode.
- An older JAX: ``jax.pure_callback``, which copies the arguments to the host and the result
  back, so the call runs on NumPy arrays whatever the device (the reference or the simulator).

XLA calls the callback on a thread of its own, which the caller's ``gpuconv.simulate()`` block
(a context variable) does not reach: the callback takes along the simulation options in force
when the call was traced (as a traced function keeps any Python state it read). They
apply to CPU buffers; GPU buffers run the CUDA kernels, as eager GPU arrays do.
"""
from __future__ import annotations

import contextlib
import functools

import jax
import numpy as np

from gpuconv import _state
from gpuconv._external_streams import external_stream
from gpuconv.simulator import simulate

try:
    from jax.experimental.buffer_callback import buffer_callback
except ImportError:         # an older JAX: the host round trip of pure_callback
    buffer_callback = None

# DLPack's device type of a CPU buffer (DLDeviceType kDLCPU); CUDA's is 2 (kDLCUDA).
_DLPACK_CPU, _DLPACK_CUDA = 1, 2

SECOND_DERIVATIVES = (
    "gpuconv.jax: second derivatives (differentiating a gradient: jax.hessian, grad of grad, "
    "jvp of a vjp) are not implemented: the gradients are gpuconv.grad calls run by a callback, "
    "which JAX cannot differentiate. Use jax.numpy / jax.lax operations where a second "
    "derivative is needed.")


def traced_call(fn, out_spec, treedef, leaves):
    """``fn(*args)`` (``args`` = ``treedef`` filled with ``leaves``, some of them traced) as a
    staged callback whose result has ``out_spec``."""
    options = _state.active_simulation()
    if buffer_callback is None:
        staged = functools.partial(jax.pure_callback, _on_host(fn, out_spec, treedef, options),
                                   out_spec, vmap_method="sequential")
    else:
        staged = buffer_callback(_on_buffers(fn, out_spec, treedef, options), out_spec,
                                 vmap_method="sequential")
    return _callback(staged, *leaves)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _callback(staged, *leaves):
    return staged(*leaves)


# A forward call is differentiated by its custom_vjp rule; only a gradient's own calls (a
# backward differentiated again) reach this rule. Raised while traced, with what it means in
# place of the callbacks' "do not support JVP".
@_callback.defjvp
def _callback_jvp(staged, primals, tangents):
    raise NotImplementedError(SECOND_DERIVATIVES)


def cast(result, out_spec, convert):
    """Each result array converted (``np.asarray`` / ``jnp.asarray``) to its spec's dtype."""
    return jax.tree_util.tree_map(lambda r, s: convert(r.astype(s.dtype, copy=False)),
                                  result, out_spec)


def import_cupy():
    """CuPy, which JAX arrays on a GPU need (eager or traced)."""
    try:
        import cupy
    except ImportError as error:
        raise ImportError("JAX arrays on a GPU need CuPy: pip install 'gpuconv[cuda12]' or "
                          "'gpuconv[cuda13]'") from error
    return cupy


def _on_numpy(fn, out_spec, treedef, options, leaves):
    """``fn`` over the leaves viewed as NumPy arrays, under the simulate() options traced."""
    arrays = jax.tree_util.tree_unflatten(treedef, [np.asarray(a) for a in leaves])
    with _simulating(options):
        return cast(fn(*arrays), out_spec, np.asarray)


def _on_host(fn, out_spec, treedef, options):
    """The pure_callback: NumPy arrays in, NumPy arrays out."""
    return lambda *host_leaves: _on_numpy(fn, out_spec, treedef, options, host_leaves)


def _on_buffers(fn, out_spec, treedef, options):
    """The buffer_callback: XLA's buffers in, the result written into its output buffers."""
    def run(context, out, *buffers):
        device_type, device_id = jax.tree_util.tree_leaves(out)[0].__dlpack_device__()
        if device_type == _DLPACK_CPU:
            _write(out, _on_numpy(fn, out_spec, treedef, options, buffers), np.asarray)
        elif device_type == _DLPACK_CUDA:
            _run_on_cuda(fn, out_spec, treedef, context, out, buffers, device_id)
        else:
            raise NotImplementedError(f"gpuconv.jax runs on CPU and CUDA devices; this buffer "
                                      f"is on DLPack device type {device_type}")
    return run


def _run_on_cuda(fn, out_spec, treedef, context, out, buffers, device_id):
    cupy = import_cupy()
    view = functools.partial(_cuda_array, cupy)
    # XLA's stream as CuPy's current one: the kernels (and CuPy's own copies and workspace
    # allocations) queue behind the program's earlier work, and its later work behind them.
    with cupy.cuda.Device(device_id), external_stream(cupy, context.stream, device_id):
        arrays = jax.tree_util.tree_unflatten(treedef, [view(b) for b in buffers])
        result = cast(fn(*arrays), out_spec, lambda r: r)
        _write(out, result, view)


def _cuda_array(cupy, buffer):
    """XLA's CUDA buffer as a CuPy array of the buffer's dtype: its __cuda_array_interface__
    spells bfloat16 as a raw 2-byte type ("<V2", XLA's TypeDescriptorForPrimitiveType), which
    CuPy takes as void."""
    array = cupy.asarray(buffer)
    dtype = np.dtype(buffer.dtype)
    return array if array.dtype == dtype else array.view(dtype)


def _write(out, result, view):
    """Copy each result array into its output buffer (``view``: the buffer as an array)."""
    for buffer, array in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(result)):
        view(buffer)[...] = array


def _simulating(options):
    if options is None:
        return contextlib.nullcontext()
    return simulate(options.order, options.seed, options.sanitize)
