"""Public pooling functions: ``torch.nn.functional``'s signatures and semantics (api.md wins).

Each front checks its arrays, builds the geometry (``gpuconv.pool.geometry``, where every rule
lives), and hands the call to its executor (``dispatch.run``): the NumPy reference, or the CUDA
kernels through ``launch`` (on a GPU or in the CPU simulator). A call whose signature was seen
before replays the launches recorded then (``dispatch.planned``; gpuconv/_call_plans.py),
skipping all of that. Every function takes
``data_format="NCHW"`` or ``"NHWC"`` as a keyword; arrays in and out are in that layout.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import _state
from .._args import as_bool, as_flag
from .._arrays import ArraySet, check_arrays
from .dispatch import planned, run, scanned_call
from .geometry import (IndicesScan, adaptive_pool2d_geometry, check_data_format,
                       check_divisor_override, check_norm_type, check_pool_indices,
                       global_pool2d_geometry, layout_shape, max_unpool2d_geometry, nchw_shape,
                       pool2d_geometry, spatial_pyramid_geometry)

__all__ = ["max_pool2d", "avg_pool2d", "lp_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
           "global_avg_pool2d", "global_max_pool2d", "spatial_pyramid_pool2d", "max_unpool2d"]


@dataclass(frozen=True)
class PoolCall:
    """A pooling call after its checks: what its executor and the framework fronts need."""
    arrays: ArraySet
    data_format: str
    geom: Any
    output_shape: tuple         # in data_format's layout
    options: dict = field(default_factory=dict)   # the normalized keyword options


def _checked_x(x, data_format):
    """(ArraySet, validated data_format, x's logical NCHW shape)."""
    data_format = check_data_format(data_format)
    arrays = check_arrays({"x": x}, ndim={"x": 4})
    return arrays, data_format, nchw_shape(x.shape, data_format)


# Every check of each front, in one function per front: the fronts below call them, and so do
# the JAX wrappers at trace time (on stand-in arrays), so that both refuse the same calls.

def check_max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                     return_indices=False, *, data_format="NCHW") -> PoolCall:
    arrays, data_format, shape = _checked_x(x, data_format)
    return_indices = as_bool("return_indices", return_indices)
    geom = pool2d_geometry(shape, kernel_size, stride, padding, dilation, ceil_mode)
    return PoolCall(arrays, data_format, geom, layout_shape(geom.output_shape, data_format),
                    {"return_indices": return_indices})


def check_avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                     count_include_pad=True, divisor_override=None, *,
                     data_format="NCHW") -> PoolCall:
    arrays, data_format, shape = _checked_x(x, data_format)
    options = {"count_include_pad": as_flag("count_include_pad", count_include_pad),
               "divisor_override": check_divisor_override(divisor_override)}
    geom = pool2d_geometry(shape, kernel_size, stride, padding, 1, ceil_mode)
    return PoolCall(arrays, data_format, geom, layout_shape(geom.output_shape, data_format),
                    options)


def check_lp_pool2d(x, norm_type, kernel_size, stride=None, ceil_mode=False, *,
                    data_format="NCHW") -> PoolCall:
    arrays, data_format, shape = _checked_x(x, data_format)
    norm_type = check_norm_type(norm_type)
    geom = pool2d_geometry(shape, kernel_size, stride, 0, 1, ceil_mode)
    return PoolCall(arrays, data_format, geom, layout_shape(geom.output_shape, data_format),
                    {"norm_type": norm_type})


def check_adaptive_avg_pool2d(x, output_size, *, data_format="NCHW") -> PoolCall:
    arrays, data_format, shape = _checked_x(x, data_format)
    # torch's adaptive_avg_pool2d takes 0 channels (its max pooling refuses them)
    geom = adaptive_pool2d_geometry(shape, output_size, True)
    return PoolCall(arrays, data_format, geom, layout_shape(geom.output_shape, data_format))


def check_adaptive_max_pool2d(x, output_size, return_indices=False, *,
                              data_format="NCHW") -> PoolCall:
    arrays, data_format, shape = _checked_x(x, data_format)
    return_indices = as_bool("return_indices", return_indices)
    geom = adaptive_pool2d_geometry(shape, output_size)
    return PoolCall(arrays, data_format, geom, layout_shape(geom.output_shape, data_format),
                    {"return_indices": return_indices})


def check_global_pool2d(x, *, data_format="NCHW") -> PoolCall:
    """global_max_pool2d's checks (global_avg_pool2d: ``check_global_avg_pool2d``)."""
    arrays, data_format, shape = _checked_x(x, data_format)
    geom = global_pool2d_geometry(shape)
    return PoolCall(arrays, data_format, geom, layout_shape(geom.output_shape, data_format))


def check_global_avg_pool2d(x, *, data_format="NCHW") -> PoolCall:
    """adaptive_avg_pool2d(x, 1)'s checks: 0 channels give an empty output."""
    return check_adaptive_avg_pool2d(x, 1, data_format=data_format)


def check_spatial_pyramid_pool2d(x, levels=(1, 2, 4), mode="max", *,
                                 data_format="NCHW") -> PoolCall:
    arrays, data_format, shape = _checked_x(x, data_format)
    geom = spatial_pyramid_geometry(shape, levels, mode)
    return PoolCall(arrays, data_format, geom, tuple(geom.output_shape))


def check_max_unpool2d(x, indices, kernel_size, stride=None, padding=0, output_size=None, *,
                       data_format="NCHW", scan_indices=True) -> PoolCall:
    """``scan_indices=False``: the indices' type and shape only (their values are unknown when
    the JAX wrapper traces the call; the call itself scans them)."""
    call, scan = _checked_max_unpool2d(x, indices, kernel_size, stride, padding, output_size,
                                       data_format=data_format, scan_indices=scan_indices)
    if scan is not None:
        scan.raise_if_bad()
    return call


def _checked_max_unpool2d(x, indices, kernel_size, stride, padding, output_size, *, data_format,
                          scan_indices) -> tuple[PoolCall, IndicesScan | None]:
    """(the call, its indices' device scan in flight or None: geometry.check_pool_indices)."""
    arrays, data_format, shape = _checked_x(x, data_format)
    geom = max_unpool2d_geometry(shape, kernel_size, stride, padding, output_size, data_format)
    # An empty output has no position an index could name: as torch, no range check then.
    scan = check_pool_indices(indices, arrays.library, x.shape, geom, data_format,
                              window="none", scan=scan_indices and geom.H * geom.W != 0)
    return PoolCall(arrays, data_format, geom, layout_shape(geom.input_shape, data_format)), scan


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, data_format="NCHW"):
    """Max over each window; with ``return_indices`` also the int64 flat index h*W + w of each
    maximum. Ties go to the first maximum in row-major window order; a NaN wins (the last NaN's
    index); a window of padding only (dilation larger than the input) gives -inf and index -1."""
    plan, replayed = planned("max_pool2d", {"x": x}, (kernel_size, stride, padding, dilation,
                                                      ceil_mode, return_indices, data_format))
    if replayed is not None:
        return replayed
    call = check_max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode,
                            return_indices, data_format=data_format)
    return _run("max_pool2d", call, x, plan)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, data_format="NCHW"):
    """Mean over each window. The divisor is ``divisor_override`` if given, else the window
    clipped to input + padding (``count_include_pad``) or to the input alone."""
    plan, replayed = planned("avg_pool2d", {"x": x}, (kernel_size, stride, padding, ceil_mode,
                                                      count_include_pad, divisor_override,
                                                      data_format))
    if replayed is not None:
        return replayed
    call = check_avg_pool2d(x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                            divisor_override, data_format=data_format)
    return _run("avg_pool2d", call, x, plan)


def lp_pool2d(x, norm_type, kernel_size, stride=None, ceil_mode=False, *, data_format="NCHW"):
    """PyTorch's (sign(f) * relu(|f|) * kh*kw) ** (1/p), f = avg_pool2d(x ** p) (no padding);
    p = +inf / -inf: the largest / smallest |x| of each window, as PyTorch. float16/bfloat16
    inputs are computed in float32 throughout (x ** p included): finite where torch's half
    arithmetic overflows (kernels/pool/NOTES.md "lp_pool2d")."""
    plan, replayed = planned("lp_pool2d", {"x": x}, (norm_type, kernel_size, stride, ceil_mode,
                                                     data_format))
    if replayed is not None:
        return replayed
    call = check_lp_pool2d(x, norm_type, kernel_size, stride, ceil_mode, data_format=data_format)
    from . import lp_infinite   # it calls max_pool2d above
    if lp_infinite.is_infinite(call.options["norm_type"]):   # elementwise work: no plan
        return lp_infinite.forward(call.arrays.xp, x, call.options["norm_type"], kernel_size,
                                   stride, ceil_mode, call.data_format)
    return _run("lp_pool2d", call, x, plan)


def _run(name, call: PoolCall, x, plan, *extra_arrays):
    return run(name, _state.executor_for(call.arrays.library), call.geom, x, *extra_arrays,
               data_format=call.data_format, plan=plan, **call.options)


def _empty_output(call: PoolCall):
    """The output of an adaptive pooling to 0 rows or columns, or of 0 channels: empty, as
    PyTorch's (no kernel and no reference computation has anything to do)."""
    return call.arrays.xp.empty(call.output_shape, dtype=call.arrays.dtype)


def adaptive_avg_pool2d(x, output_size, *, data_format="NCHW"):
    """Mean over windows [floor(i*H/P), ceil((i+1)*H/P)); a None in output_size keeps that size;
    an output_size of 0 gives an empty output."""
    plan, replayed = planned("adaptive_avg_pool2d", {"x": x}, (output_size, data_format))
    if replayed is not None:
        return replayed
    call = check_adaptive_avg_pool2d(x, output_size, data_format=data_format)
    if call.geom.empty_output:
        return _empty_output(call)
    return _run("adaptive_avg_pool2d", call, x, plan)


def adaptive_max_pool2d(x, output_size, return_indices=False, *, data_format="NCHW"):
    """Max over the adaptive windows, with max_pool2d's rules for ties, NaN and indices."""
    plan, replayed = planned("adaptive_max_pool2d", {"x": x},
                             (output_size, return_indices, data_format))
    if replayed is not None:
        return replayed
    call = check_adaptive_max_pool2d(x, output_size, return_indices, data_format=data_format)
    if call.geom.empty_output:
        y = _empty_output(call)
        if call.options["return_indices"]:
            return y, call.arrays.xp.empty(y.shape, dtype=np.int64)
        return y
    return _run("adaptive_max_pool2d", call, x, plan)


def global_avg_pool2d(x, *, data_format="NCHW"):
    """Mean over each whole plane: (N, C, 1, 1) (NHWC: (N, 1, 1, C))."""
    plan, replayed = planned("global_avg_pool2d", {"x": x}, (data_format,))
    if replayed is not None:
        return replayed
    call = check_global_avg_pool2d(x, data_format=data_format)
    if call.geom.empty_output:
        return _empty_output(call)
    return _run("global_avg_pool2d", call, x, plan)


def global_max_pool2d(x, *, data_format="NCHW"):
    """Max over each whole plane (NaN wins): (N, C, 1, 1) (NHWC: (N, 1, 1, C))."""
    plan, replayed = planned("global_max_pool2d", {"x": x}, (data_format,))
    if replayed is not None:
        return replayed
    return _run("global_max_pool2d", check_global_pool2d(x, data_format=data_format), x, plan)


def spatial_pyramid_pool2d(x, levels=(1, 2, 4), mode="max", *, data_format="NCHW"):
    """(N, C * sum(l*l)): per level l, adaptive ``mode`` pooling to (l, l) reshaped to
    (N, C*l*l) in the layout's element order (NCHW: c, i, j; NHWC: i, j, c), levels in order."""
    plan, replayed = planned("spatial_pyramid_pool2d", {"x": x}, (levels, mode, data_format))
    if replayed is not None:
        return replayed
    call = check_spatial_pyramid_pool2d(x, levels, mode, data_format=data_format)
    return _run("spatial_pyramid_pool2d", call, x, plan)


def max_unpool2d(x, indices, kernel_size, stride=None, padding=0, output_size=None, *,
                 data_format="NCHW"):
    """Zeros of the unpooled size with x's values at their indices (flat h*W + w per plane of
    the output). Default size (P-1)*stride + kernel_size - 2*padding; ``output_size`` (2 ints, or
    4 in ``data_format`` order) must be within stride of it. Repeated indices: the last wins."""
    def full_path():
        call, scan = _checked_max_unpool2d(x, indices, kernel_size, stride, padding, output_size,
                                           data_format=data_format, scan_indices=True)
        if call.geom.H * call.geom.W == 0:
            return call.arrays.xp.zeros(call.output_shape, dtype=call.arrays.dtype), scan
        return _run("max_unpool2d", call, x, (None, None), indices), scan

    return scanned_call("max_unpool2d", {"x": x, "indices": indices},
                        (kernel_size, stride, padding, output_size, data_format), full_path)
