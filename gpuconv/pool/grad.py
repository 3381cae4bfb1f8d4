"""Gradients of the pooling functions, exported as ``gpuconv.grad.*``.

``grad.F(grad_output, <F's own arguments>)`` is the gradient of F's output with respect to its
first argument x (for max_unpool2d: its values x), with PyTorch's autograd semantics: max
gradients go to the input that the forward's index names (first maximum on ties, the NaN).
Max poolings also take ``indices=`` (the forward's indices) to skip recomputing them. Every
function takes ``data_format`` and ``deterministic`` (None: the process-wide setting) keywords;
grad_output must have exactly F's output shape. Float atomics: only max_pool2d and
adaptive_max_pool2d with overlapping windows or bins, in the default mode (a scatter through the
indices, as PyTorch's; half types under the common 3x3 windows gather, which is faster there:
launch_switches.gather_wins); ``deterministic=True`` makes them gathers, bitwise reproducible.

Launch plans (gpuconv/_call_plans.py) as for the forwards, with the resolved mode in the key.
A call whose ``indices=`` values are scanned (a kernel pass whose answer is read after the
launches: on CuPy one synchronization) keeps the scan in its plan (``dispatch.scanned_call``).
"""
from __future__ import annotations

from .. import _state
from .._args import as_bool, as_flag
from .._arrays import check_arrays
from .dispatch import planned, run, scanned_call
from .geometry import (adaptive_pool2d_geometry, check_data_format, check_divisor_override,
                       check_grad_output, check_norm_type, check_pool_indices,
                       global_pool2d_geometry, has_empty_window, layout_shape,
                       max_unpool2d_geometry, nchw_shape, pool2d_geometry,
                       spatial_pyramid_geometry)

__all__ = ["max_pool2d", "avg_pool2d", "lp_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
           "global_avg_pool2d", "global_max_pool2d", "spatial_pyramid_pool2d", "max_unpool2d"]


def _checked(grad_output, x, data_format, deterministic):
    """(ArraySet, data_format, x's logical NCHW shape, deterministic flag) of a gradient call."""
    data_format = check_data_format(data_format)
    arrays = check_arrays({"x": x, "grad_output": grad_output}, ndim={"x": 4})
    deterministic = _state.is_deterministic(deterministic)
    return arrays, data_format, nchw_shape(x.shape, data_format), deterministic


def _check_output(grad_output, geom, data_format, function):
    shape = layout_shape(geom.output_shape, data_format)
    check_grad_output(grad_output, shape, function)
    return shape


def _zero_gradient(arrays, grad_output, x):
    """The gradient through an empty output (an adaptive pooling to 0 rows or columns, or of 0
    channels): zero, as PyTorch's."""
    return arrays.xp.zeros(x.shape, dtype=grad_output.dtype)


@_state.resolving_deterministic
def max_pool2d(grad_output, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, indices=None, data_format="NCHW", deterministic=None):
    """The gradient of ``gpuconv.max_pool2d`` with respect to x, for grad_output of its output's
    shape: each window's gradient goes to its first maximum (or NaN), as PyTorch's.
    ``indices=``: the forward's indices, checked and used instead of a recomputation."""
    return _max_pool2d(grad_output, x, kernel_size, stride, padding, dilation, ceil_mode,
                       return_indices, indices=indices, data_format=data_format,
                       deterministic=deterministic, scan_indices=True)


def _handed(scan) -> dict:
    """The launcher keyword of a deferred index scan (geometry.check_pool_indices): its
    backward scatter checks the indices as it reads them, its gather queues the scan first.
    None (nothing to scan, or the NumPy reference, which checked them in NumPy): no keyword."""
    return {} if scan is None else {"indices_scan": scan}


def _planned(front: str, roles: dict, scalars: tuple, deterministic):
    """``dispatch.planned`` of gradient ``front``."""
    return planned("grad." + front, roles, scalars, deterministic=deterministic)


def _max_pool2d(grad_output, x, kernel_size, stride, padding, dilation, ceil_mode,
                return_indices, *, indices, data_format, deterministic, scan_indices):
    def full_path():
        arrays, layout, shape, mode = _checked(grad_output, x, data_format, deterministic)
        as_bool("return_indices", return_indices)   # F's argument; no effect on the gradient
        geom = pool2d_geometry(shape, kernel_size, stride, padding, dilation, ceil_mode)
        out_shape = _check_output(grad_output, geom, layout, "max_pool2d")
        scan = None
        if indices is not None:
            # -1 (NO_INDEX) only where the forward can put it: a window of padding alone
            scan = check_pool_indices(indices, arrays.library, out_shape, geom, layout,
                                      window="strided", allow_no_index=has_empty_window(geom),
                                      scan=scan_indices, deferred=True)
        return run("grad_max_pool2d", _state.executor_for(arrays.library), geom, grad_output,
                   x, indices=indices, data_format=layout, deterministic=mode,
                   **_handed(scan)), scan

    return scanned_call(
        "grad.max_pool2d", {"grad_output": grad_output, "x": x, "indices": indices},
        # scan_indices is part of the signature: a scanned call must never replay the plan of
        # an unscanned one (whose launches hold no scan), nor the reverse
        (kernel_size, stride, padding, dilation, ceil_mode, return_indices, data_format,
         scan_indices), full_path, deterministic=deterministic)


@_state.resolving_deterministic
def avg_pool2d(grad_output, x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None, *, data_format="NCHW",
               deterministic=None):
    """The gradient of ``gpuconv.avg_pool2d`` with respect to x, for grad_output of its output's
    shape: each window's gradient spread over its elements with the forward's divisor."""
    plan, replayed = _planned("avg_pool2d", {"grad_output": grad_output, "x": x},
                              (kernel_size, stride, padding, ceil_mode, count_include_pad,
                               divisor_override, data_format), deterministic)
    if replayed is not None:
        return replayed
    arrays, data_format, shape, deterministic = _checked(grad_output, x, data_format, deterministic)
    count_include_pad = as_flag("count_include_pad", count_include_pad)
    divisor_override = check_divisor_override(divisor_override)
    geom = pool2d_geometry(shape, kernel_size, stride, padding, 1, ceil_mode)
    _check_output(grad_output, geom, data_format, "avg_pool2d")
    return run("grad_avg_pool2d", _state.executor_for(arrays.library), geom, grad_output, x,
               count_include_pad=count_include_pad, divisor_override=divisor_override,
               data_format=data_format, deterministic=deterministic, plan=plan)


@_state.resolving_deterministic
def lp_pool2d(grad_output, x, norm_type, kernel_size, stride=None, ceil_mode=False, *,
              data_format="NCHW", deterministic=None):
    """The gradient of ``gpuconv.lp_pool2d`` with respect to x, for grad_output of its output's
    shape (PyTorch's formula, from the forward's powers; norm_type +-inf: the max pooling's
    gradient)."""
    plan, replayed = _planned("lp_pool2d", {"grad_output": grad_output, "x": x},
                              (norm_type, kernel_size, stride, ceil_mode, data_format),
                              deterministic)
    if replayed is not None:
        return replayed
    arrays, data_format, shape, deterministic = _checked(grad_output, x, data_format, deterministic)
    norm_type = check_norm_type(norm_type)
    geom = pool2d_geometry(shape, kernel_size, stride, 0, 1, ceil_mode)
    _check_output(grad_output, geom, data_format, "lp_pool2d")
    from . import lp_infinite   # it calls max_pool2d above
    if lp_infinite.is_infinite(norm_type):
        return lp_infinite.backward(arrays.xp, grad_output, x, norm_type, kernel_size, stride,
                                    ceil_mode, data_format, deterministic)
    return run("grad_lp_pool2d", _state.executor_for(arrays.library), geom, grad_output, x,
               norm_type=norm_type, data_format=data_format, deterministic=deterministic,
               plan=plan)


@_state.resolving_deterministic
def adaptive_avg_pool2d(grad_output, x, output_size, *, data_format="NCHW", deterministic=None):
    """The gradient of ``gpuconv.adaptive_avg_pool2d`` with respect to x, for grad_output of its
    output's shape: each bin's gradient spread over its elements."""
    plan, replayed = _planned("adaptive_avg_pool2d", {"grad_output": grad_output, "x": x},
                              (output_size, data_format), deterministic)
    if replayed is not None:
        return replayed
    arrays, data_format, shape, deterministic = _checked(grad_output, x, data_format, deterministic)
    geom = adaptive_pool2d_geometry(shape, output_size, True)     # 0 channels: as the forward
    _check_output(grad_output, geom, data_format, "adaptive_avg_pool2d")
    if geom.empty_output:
        return _zero_gradient(arrays, grad_output, x)
    return run("grad_adaptive_avg_pool2d", _state.executor_for(arrays.library), geom, grad_output,
               x, data_format=data_format, deterministic=deterministic, plan=plan)


@_state.resolving_deterministic
def adaptive_max_pool2d(grad_output, x, output_size, return_indices=False, *, indices=None,
                        data_format="NCHW", deterministic=None):
    """The gradient of ``gpuconv.adaptive_max_pool2d`` with respect to x, for grad_output of its
    output's shape: each bin's gradient to its first maximum (or NaN); ``indices=`` as in
    max_pool2d."""
    return _adaptive_max_pool2d(grad_output, x, output_size, return_indices, indices=indices,
                                data_format=data_format, deterministic=deterministic,
                                scan_indices=True)


def _adaptive_max_pool2d(grad_output, x, output_size, return_indices, *, indices, data_format,
                         deterministic, scan_indices):
    def full_path():
        arrays, layout, shape, mode = _checked(grad_output, x, data_format, deterministic)
        as_bool("return_indices", return_indices)   # F's argument; no effect on the gradient
        geom = adaptive_pool2d_geometry(shape, output_size)
        out_shape = _check_output(grad_output, geom, layout, "adaptive_max_pool2d")
        scan = None
        if indices is not None:
            scan = check_pool_indices(indices, arrays.library, out_shape, geom, layout,
                                      window="adaptive", scan=scan_indices, deferred=True)
        if geom.empty_output:
            return _zero_gradient(arrays, grad_output, x), scan
        return run("grad_adaptive_max_pool2d", _state.executor_for(arrays.library), geom,
                   grad_output, x, indices=indices, data_format=layout,
                   deterministic=mode, **_handed(scan)), scan

    return scanned_call(
        "grad.adaptive_max_pool2d", {"grad_output": grad_output, "x": x, "indices": indices},
        (output_size, return_indices, data_format, scan_indices), full_path,   # as above
        deterministic=deterministic)


@_state.resolving_deterministic
def global_avg_pool2d(grad_output, x, *, data_format="NCHW", deterministic=None):
    """The gradient of ``gpuconv.global_avg_pool2d`` with respect to x, for grad_output of its
    output's shape (N, C, 1, 1)."""
    plan, replayed = _planned("global_avg_pool2d", {"grad_output": grad_output, "x": x},
                              (data_format,), deterministic)
    if replayed is not None:
        return replayed
    arrays, data_format, shape, deterministic = _checked(grad_output, x, data_format, deterministic)
    geom = global_pool2d_geometry(shape, True)     # 0 channels: as the forward
    _check_output(grad_output, geom, data_format, "global_avg_pool2d")
    if geom.empty_output:
        return _zero_gradient(arrays, grad_output, x)
    return run("grad_global_avg_pool2d", _state.executor_for(arrays.library), geom, grad_output,
               x, data_format=data_format, deterministic=deterministic, plan=plan)


@_state.resolving_deterministic
def global_max_pool2d(grad_output, x, *, indices=None, data_format="NCHW", deterministic=None):
    """The gradient of ``gpuconv.global_max_pool2d`` with respect to x, for grad_output of its
    output's shape (N, C, 1, 1): each plane's gradient to its first maximum; ``indices=`` (flat
    h * W + w) as in max_pool2d."""
    def full_path():
        arrays, layout, shape, mode = _checked(grad_output, x, data_format, deterministic)
        geom = global_pool2d_geometry(shape)
        out_shape = _check_output(grad_output, geom, layout, "global_max_pool2d")
        scan = None
        if indices is not None:
            scan = check_pool_indices(indices, arrays.library, out_shape, geom, layout,
                                      window="none")
        return run("grad_global_max_pool2d", _state.executor_for(arrays.library), geom,
                   grad_output, x, indices=indices, data_format=layout, deterministic=mode), scan

    return scanned_call("grad.global_max_pool2d",
                        {"grad_output": grad_output, "x": x, "indices": indices},
                        (data_format,), full_path, deterministic=deterministic)


@_state.resolving_deterministic
def spatial_pyramid_pool2d(grad_output, x, levels=(1, 2, 4), mode="max", *, data_format="NCHW",
                           deterministic=None):
    """The gradient of ``gpuconv.spatial_pyramid_pool2d`` with respect to x, for grad_output of its
    output's shape (N, C * sum(l * l)): the sum of each level's adaptive pooling gradient."""
    plan, replayed = _planned("spatial_pyramid_pool2d", {"grad_output": grad_output, "x": x},
                              (levels, mode, data_format), deterministic)
    if replayed is not None:
        return replayed
    arrays, data_format, shape, deterministic = _checked(grad_output, x, data_format, deterministic)
    geom = spatial_pyramid_geometry(shape, levels, mode)
    check_grad_output(grad_output, geom.output_shape, "spatial_pyramid_pool2d")
    return run("grad_spatial_pyramid_pool2d", _state.executor_for(arrays.library), geom,
               grad_output, x, data_format=data_format, deterministic=deterministic, plan=plan)


@_state.resolving_deterministic
def max_unpool2d(grad_output, x, indices, kernel_size, stride=None, padding=0, output_size=None, *,
                 data_format="NCHW", deterministic=None):
    """The gradient of ``gpuconv.max_unpool2d`` with respect to its values x: grad_output (of the
    unpooled shape) read back at ``indices``."""
    def full_path():
        arrays, layout, shape, mode = _checked(grad_output, x, data_format, deterministic)
        geom = max_unpool2d_geometry(shape, kernel_size, stride, padding, output_size, layout)
        empty = geom.H * geom.W == 0
        scan = check_pool_indices(indices, arrays.library, x.shape, geom, layout,
                                  window="none", scan=not empty)
        check_grad_output(grad_output, layout_shape(geom.input_shape, layout), "max_unpool2d")
        if empty:       # no output: x reaches nothing, its gradient is zero
            return arrays.xp.zeros(x.shape, dtype=arrays.dtype), scan
        return run("grad_max_unpool2d", _state.executor_for(arrays.library), geom, grad_output,
                   x, indices, data_format=layout, deterministic=mode), scan

    return scanned_call("grad.max_unpool2d",
                        {"grad_output": grad_output, "x": x, "indices": indices},
                        (kernel_size, stride, padding, output_size, data_format), full_path,
                        deterministic=deterministic)


def _from_own_forward(function):
    """``function`` called with every forward argument after x (``args``, as the framework
    wrappers keep them: max_pool2d's five, adaptive_max_pool2d's output_size), no value scan."""
    @_state.resolving_deterministic
    def gradient(grad_output, x, *args, indices, data_format="NCHW", deterministic=None):
        return function(grad_output, x, *args, False, indices=indices, data_format=data_format,
                        deterministic=deterministic, scan_indices=False)
    return gradient


# The max poolings' gradients for indices that gpuconv's own forward returned (gpuconv.torch and
# gpuconv.jax keep them between the passes): the same checks but the scan of the index values,
# which on CuPy costs a device pass and a host synchronization per backward.
WITH_OWN_INDICES = {"max_pool2d": _from_own_forward(_max_pool2d),
                    "adaptive_max_pool2d": _from_own_forward(_adaptive_max_pool2d)}
