"""Launchers of the sliding-window poolings: max_pool2d, avg_pool2d, lp_pool2d, forward and
backward (kernels/pool/{max_pool,avg_pool,lp_pool}.cu).

Every backward here is a gather (one thread per input element summing the windows that cover it
in a fixed order), so it is bitwise reproducible in both modes and ``deterministic`` changes
nothing; no zero-fill pass is needed either.
"""
from __future__ import annotations

import numpy as np

from .geometry import Pool2dGeometry
from .._plans import empty
from .launch_common import (BOOLS, TYPES, acc_dtype, acc_scalar, bound_tables, channel_vectors,
                            check_int32, contiguous, ctype, flag, forward_operands, i32,
                            launch_elementwise, layout_shape, nhwc, nhwc_vector, no_indices,
                            pool_shape, register_family, xp_for)
from .launch_global import global_avg_pool2d, grad_global_avg_pool2d
from .launch_switches import gather_wins, max_pool_backward, windows_overlap


# The square windows whose taps the forward kernels load as one batch (their kWindow template
# argument; 0 stands for every other window): the common 2x2 and 3x3, which on an H100 ran
# latency-bound with the run-time loops (kernels/pool/NOTES.md, "Forward windows as one batch").
BATCHED_WINDOWS = (2, 3)
WINDOWS = ("0",) + tuple(map(str, BATCHED_WINDOWS))

# The square windows (taps, stride; dilation 1) whose backward gathers know their candidate
# outputs at compile time (the kWindow, kStride template arguments; "0, 0" for every other
# window): the common ones, whose run-time bounds cost more instructions than the gather itself
# (kernels/pool/NOTES.md, "Backward gathers of the common windows"). Max pooling gathers only
# where windows overlap (launch_switches.formulation): not 2x2 with stride 2.
AVG_GATHER_WINDOWS = ((2, 2), (3, 1), (3, 2))
MAX_GATHER_WINDOWS = ((3, 1), (3, 2))


def _gathers(windows) -> tuple[str, ...]:
    return ("0, 0",) + tuple(f"{taps}, {stride}" for taps, stride in windows)


# I: the forward writes indices (return_indices, or the backward's recomputation). Every max
# and average kernel's last flag: NHWC channel vectors (kVectors, launch_common.channel_vectors),
# instantiated for NHWC only.
MAX_POOL = register_family("pool/max_pool.cu", "max_pool2d_forward<{T}, {L}, {I}, {K}, false>",
                           "max_pool2d_forward<{T}, true, {I}, {K}, true>",
                           "max_pool2d_backward<{T}, {L}, {G}, false>",
                           "max_pool2d_backward<{T}, true, {G}, true>", T=TYPES, L=BOOLS,
                           I=BOOLS, K=WINDOWS, G=_gathers(MAX_GATHER_WINDOWS))
AVG_POOL = register_family("pool/avg_pool.cu", "avg_pool2d_forward<{T}, {L}, {K}, false>",
                           "avg_pool2d_forward<{T}, true, {K}, true>",
                           "avg_pool2d_backward<{T}, {L}, {G}, false>",
                           "avg_pool2d_backward<{T}, true, {G}, true>", T=TYPES, L=BOOLS,
                           K=WINDOWS, G=_gathers(AVG_GATHER_WINDOWS))
LP_POOL = register_family("pool/lp_pool.cu", "lp_pool2d_forward<{T}, {L}>",
                          "lp_pool2d_scaled<{T}, {L}>", "lp_pool2d_backward<{T}, {L}>",
                          T=TYPES, L=BOOLS)


def batched_window(geom: Pool2dGeometry) -> int:
    """The forward kernels' kWindow for ``geom``: its size when it is one of BATCHED_WINDOWS'
    squares, else 0 (the run-time loops)."""
    return geom.R if geom.R == geom.S and geom.R in BATCHED_WINDOWS else 0


def gather_window(geom: Pool2dGeometry, windows) -> str:
    """The backward gathers' "kWindow, kStride" for ``geom``: its (taps, stride) when it is one
    of ``windows`` (AVG_ or MAX_GATHER_WINDOWS), else "0, 0" (run-time bounds)."""
    square = (geom.R == geom.S and geom.stride_h == geom.stride_w
              and geom.dil_h == geom.dil_w == 1)
    if square and (geom.R, geom.stride_h) in windows:
        return f"{geom.R}, {geom.stride_h}"
    return "0, 0"


def _gather_args(geom: Pool2dGeometry, windows,
                 per_thread: int = 1) -> tuple[str, np.int32, int]:
    """(the gather's "kWindow, kStride", its use_tables argument, its dynamic shared memory),
    its threads taking ``per_thread`` input elements each: the window-bound tables
    (kernels/common/pool_window.cuh) serve the run-time bounds only."""
    window = gather_window(geom, windows)
    if window != "0, 0":
        return window, np.int32(0), 0
    return (window, *bound_tables(2 * geom.H + 2 * geom.W,
                                  geom.N * geom.C * geom.H * geom.W // per_thread))


# --------------------------------------------------------------------------------------------
# max_pool2d


def _max_pool_indices(geom, x, data_format, executor):
    """(values, int64 indices) of max_pool2d for x already contiguous."""
    xp = xp_for(executor)
    y = empty(xp, layout_shape(geom.N, geom.C, geom.P, geom.Q, data_format), x.dtype)
    indices = empty(xp, y.shape, np.int64)
    _max_forward(geom, x, y, indices, data_format, executor)
    return y, indices


def _max_forward(geom, x, y, indices, data_format, executor):
    vectors = channel_vectors(data_format, geom.C, x, y,
                              *((indices,) if indices is not None else ()))
    name = (f"max_pool2d_forward<{ctype(x.dtype)}, {nhwc(data_format)}, "
            f"{flag(indices is not None)}, {batched_window(geom)}, {flag(vectors > 1)}>")
    xp = xp_for(executor)
    args = (x, y, indices if indices is not None else no_indices(xp),
            *pool_shape(geom))
    launch_elementwise(MAX_POOL, name, executor, y.size // vectors, args)


def max_pool2d(geom: Pool2dGeometry, x, *, return_indices: bool, data_format: str, executor: str):
    xp = xp_for(executor)
    x, y = forward_operands(xp, geom, x, data_format)
    indices = empty(xp, y.shape, np.int64) if return_indices else None
    _max_forward(geom, x, y, indices, data_format, executor)
    return (y, indices) if return_indices else y


def grad_max_pool2d(geom: Pool2dGeometry, grad_output, x, *, indices, data_format: str,
                    deterministic: bool, executor: str, indices_scan=None):
    # the gather's channel vectors are settled on its final operands (grad_through_switches);
    # the tables' choice takes the vector their shapes allow
    per_thread = nhwc_vector(grad_output.dtype, geom.C) if data_format == "NHWC" else 1
    window, use_tables, smem = _gather_args(geom, MAX_GATHER_WINDOWS, per_thread)
    return max_pool_backward(
        MAX_POOL, "max_pool2d_backward", grad_output, x, indices,
        lambda x: _max_pool_indices(geom, x, data_format, executor)[1],
        (*pool_shape(geom), use_tables), geom, overlapping=windows_overlap(geom),
        data_format=data_format, deterministic=deterministic, executor=executor,
        shared_mem=smem, gather_template_tail=f", {window}", gather_vectors=True,
        prefer_gather=gather_wins(grad_output.dtype, window != "0, 0"),
        indices_scan=indices_scan)


# --------------------------------------------------------------------------------------------
# avg_pool2d


def _avg_args(count_include_pad: bool, divisor_override):
    return (i32(1 if count_include_pad else 0), i32(divisor_override or 0))


def whole_plane_window(geom: Pool2dGeometry, divisor_override) -> bool:
    """One unpadded window that is the whole plane, divided by its size (GoogLeNet's and
    Inception's 7x7 / 8x8 average pools before the classifier): a global average, which the
    reductions of launch_global compute with a block of threads per plane instead of a thread
    looping over the plane (googlenet.avgpool7 on an H100: 25 us, 0.35 of the roofline floor,
    about PyTorch's time)."""
    return (geom.P == 1 and geom.Q == 1 and geom.R == geom.H and geom.S == geom.W
            and geom.pad_h == 0 and geom.pad_w == 0 and divisor_override is None)


def avg_pool2d(geom: Pool2dGeometry, x, *, count_include_pad: bool, divisor_override,
               data_format: str, executor: str):
    if whole_plane_window(geom, divisor_override):
        return global_avg_pool2d(geom, x, data_format=data_format, executor=executor)
    x, y = forward_operands(xp_for(executor), geom, x, data_format)
    vectors = channel_vectors(data_format, geom.C, x, y)
    name = (f"avg_pool2d_forward<{ctype(x.dtype)}, {nhwc(data_format)}, {batched_window(geom)}, "
            f"{flag(vectors > 1)}>")
    launch_elementwise(AVG_POOL, name, executor, y.size // vectors,
                       (x, y, *pool_shape(geom),
                        *_avg_args(count_include_pad, divisor_override)))
    return y


def grad_avg_pool2d(geom: Pool2dGeometry, grad_output, x, *, count_include_pad: bool,
                    divisor_override, data_format: str, deterministic: bool, executor: str):
    if whole_plane_window(geom, divisor_override):
        return grad_global_avg_pool2d(geom, grad_output, x, data_format=data_format,
                                      deterministic=deterministic, executor=executor)
    xp = xp_for(executor)
    grad_output = contiguous(xp, grad_output)
    check_int32(x, grad_output)
    grad_input = empty(xp, layout_shape(geom.N, geom.C, geom.H, geom.W, data_format),
                       grad_output.dtype)
    vectors = channel_vectors(data_format, geom.C, grad_output, grad_input)
    window, use_tables, smem = _gather_args(geom, AVG_GATHER_WINDOWS, vectors)
    name = (f"avg_pool2d_backward<{ctype(grad_output.dtype)}, {nhwc(data_format)}, {window}, "
            f"{flag(vectors > 1)}>")
    launch_elementwise(AVG_POOL, name, executor, grad_input.size // vectors,
                       (grad_output, grad_input, *pool_shape(geom),
                        *_avg_args(count_include_pad, divisor_override), use_tables), smem)
    return grad_input


# --------------------------------------------------------------------------------------------
# lp_pool2d (no padding: geometry gives pad 0, dilation 1)


def lp_norms(dtype, norm_type: float) -> tuple:
    """lp_pool.cu's (norm_type, inverse_norm) in the accumulator type, the reciprocal taken in
    double first (PyTorch's 1.0 / norm_type): for a norm_type past float's range (1e39) it is
    a small number, not the 0 a reciprocal of the rounded inf would be. Past the range either
    rounds to inf, as PyTorch's float32 pow takes it, without NumPy's overflow warning."""
    with np.errstate(over="ignore"):
        return acc_scalar(dtype, norm_type), acc_scalar(dtype, 1.0 / norm_type)


def lp_pool2d(geom: Pool2dGeometry, x, *, norm_type: float, data_format: str, executor: str):
    x, y = forward_operands(xp_for(executor), geom, x, data_format)
    name = f"lp_pool2d_forward<{ctype(x.dtype)}, {nhwc(data_format)}>"
    launch_elementwise(LP_POOL, name, executor, y.size,
                       (x, y, *pool_shape(geom), *lp_norms(x.dtype, norm_type)))
    return y


def grad_lp_pool2d(geom: Pool2dGeometry, grad_output, x, *, norm_type: float, data_format: str,
                   deterministic: bool, executor: str):
    xp = xp_for(executor)
    x = contiguous(xp, x)
    grad_output = contiguous(xp, grad_output)
    check_int32(x, grad_output)
    dtype, layout = ctype(x.dtype), nhwc(data_format)
    p, inverse = lp_norms(x.dtype, norm_type)
    # first pass: each window's f * R*S in the accumulator type
    scaled = empty(xp, grad_output.shape, acc_dtype(x.dtype))
    launch_elementwise(LP_POOL, f"lp_pool2d_scaled<{dtype}, {layout}>", executor, scaled.size,
                       (x, scaled, *pool_shape(geom), p))
    grad_input = empty(xp, x.shape, x.dtype)
    launch_elementwise(LP_POOL, f"lp_pool2d_backward<{dtype}, {layout}>", executor,
                       grad_input.size,
                       (grad_output, x, scaled, grad_input, *pool_shape(geom), p, inverse))
    return grad_input
