"""Launcher of kernels/conv/depthwise_vector.cu: the 3x3 depthwise convolution with its filters
in registers, the "vector" variant of launch_depthwise.

It runs one 3x3 filter per channel (K == C), equal strides of 1 or 2, dilation 1, in both
layouts. NHWC takes 4-channel vectors: C a multiple of 4, with x, the weight, the output, and
the bias and residual when given, aligned for the vector loads and stores (4 elements, at most
16 bytes). NCHW takes one channel per thread and has no such rule. ``refusal`` says why a
geometry cannot run; ``misaligned`` why a call's arrays cannot.
Each thread computes VECTOR_RUN outputs along q on ``rows`` output rows (``rows_per_thread``:
as many as keep the launch at MIN_ITEMS threads or more, so that small layers still fill the
GPU); kernels/conv/NOTES.md "Depthwise NHWC: 4-channel vectors" and "Depthwise NCHW: runs of
four outputs" have the arithmetic.
"""
from __future__ import annotations

import functools

import numpy as np

from .._kernels import CUDA_TYPES, register
from .launch_common import ConvCall, ceil_div, cuda_bool, is_aligned, multiprocessor_count

# DEPTHWISE_VECTOR_THREADS: with 112-146 registers per thread (fp32, CUDA 13 NVRTC), blocks of
# 128 threads keep three blocks on an SM where blocks of 256 kept one.
THREADS = 128
VECTOR_RUN = 4       # DEPTHWISE_VECTOR_RUN: outputs per thread along q
LANES = {True: 4, False: 1}   # channels per thread, by nhwc
STRIDES = (1, 2)     # the kStride instantiations
ROW_CHOICES = (4, 2, 1)
# Threads per SM the launch should offer before a thread takes several output rows: about four
# times what an SM holds at once (3-4 blocks of THREADS at the kernel's register count).
MIN_ITEMS_PER_SM = 4 * 4 * THREADS

FAMILY = register(
    "conv/depthwise_vector.cu",
    name_expressions=[f"conv2d_depthwise_vector<{t}, {s}, {nhwc}>" for t in CUDA_TYPES.values()
                      for s in STRIDES for nhwc in ("true", "false")],
    hot=[f"conv2d_depthwise_vector<{t}, {s}, {nhwc}>" for t in ("float", "__half")
         for s in STRIDES for nhwc in ("true", "false")],
)


def refusal(geom, nhwc: bool) -> str | None:
    """Why the vector kernel cannot run ``geom`` in the layout ``nhwc`` (None when it can)."""
    if geom.groups != geom.C or geom.K != geom.C:
        return f"it needs one filter per channel (K == groups == C), got K={geom.K}, C={geom.C}"
    if (geom.R, geom.S) != (3, 3):
        return f"it needs a 3x3 filter, got {geom.R}x{geom.S}"
    if geom.stride_h != geom.stride_w or geom.stride_h not in STRIDES:
        return f"it needs equal strides of 1 or 2, got {geom.stride_h}x{geom.stride_w}"
    if (geom.dil_h, geom.dil_w) != (1, 1):
        return f"it needs dilation 1, got {geom.dil_h}x{geom.dil_w}"
    if nhwc and geom.C % LANES[True]:
        return f"it needs NHWC channels in multiples of {LANES[True]}, got C={geom.C}"
    return None


def misaligned(call: ConvCall) -> str | None:
    """Which of the call's arrays is not aligned for the 4-element vectors (None when all are;
    always in NCHW, whose accesses are scalar)."""
    if not call.nhwc:
        return None
    vector_bytes = min(LANES[True] * call.dtype.itemsize, 16)  # gc::pack_elements: <= 16 B
    arrays = (("x", call.x), ("weight", call.filters), ("out", call.out), ("bias", call.bias),
              ("residual", call.residual))      # the epilogue reads bias and residual in vectors
    for name, array in arrays:
        if array is not None and not is_aligned(array, vector_bytes):
            return f"{name} is not aligned to {vector_bytes} bytes"
    if not call.out.flags.c_contiguous:
        return "out is not contiguous"
    return None


def items(geom, rows: int, nhwc: bool) -> int:
    """Threads of a launch over ``geom`` with ``rows`` output rows per thread."""
    return (geom.N * ceil_div(geom.P, rows) * ceil_div(geom.Q, VECTOR_RUN)
            * (geom.C // LANES[nhwc]))


@functools.lru_cache(maxsize=1024)
def rows_per_thread(geom, sms: int, nhwc: bool) -> int:
    """The most output rows per thread (ROW_CHOICES) that leave MIN_ITEMS_PER_SM threads per SM
    (more rows share the filter loads; fewer rows fill the GPU on small layers)."""
    for rows in ROW_CHOICES:
        if items(geom, rows, nhwc) >= MIN_ITEMS_PER_SM * sms:
            return rows
    return ROW_CHOICES[-1]


def run(call: ConvCall, flip: bool = False) -> None:
    """Launches ``call`` (refusal and misaligned both None)."""
    g = call.geom
    fn = call.kernel(FAMILY, f"conv2d_depthwise_vector<{call.cuda_type}, {g.stride_h}, "
                             f"{cuda_bool(call.nhwc)}>")
    sms = multiprocessor_count(call.executor)
    weight = call.kcrs_weight()
    for chunk in call.chunks():
        c = chunk.geom
        rows = rows_per_thread(c, sms, call.nhwc)
        grid = (ceil_div(items(c, rows, call.nhwc), THREADS), 1, 1)
        fn(grid, (THREADS, 1, 1), [chunk.x, weight, np.int32(flip), np.int32(rows),
                                   *chunk.shape_args(), *chunk.epilogue_args()])
