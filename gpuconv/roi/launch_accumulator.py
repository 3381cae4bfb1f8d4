"""The scratch accumulator of the atomic ROI backward passes (kernels/roi/accumulator.cu).

Float atomics exist for float32 and float64; for half types the passes add into a zeroed float32
buffer, rounded once to the element type at the end (atomics on half elements would round
every partial sum). An NCHW result may also be accumulated in an NHWC scratch and transposed
once at the end (``through_nhwc``): roi_align's scatter does where its atomics outnumber the
input's elements (launch_align.scatters_through_nhwc).
"""
from __future__ import annotations

import numpy as np

from .._plans import empty, zeros
from ..pool.launch_common import acc_dtype, ctype, i32, launch_elementwise, register_family
from .launch_transpose import transpose_planes

ACCUMULATOR = register_family("roi/accumulator.cu", "accumulator_to_element<{H}>",
                              H=("__half", "__nv_bfloat16"))


def accumulate_to(xp, shape, dtype, scatter, executor: str, *, through_nhwc: bool = False):
    """A zeroed accumulator handed to ``scatter`` (which launches the atomic kernel into it),
    returned as an array of ``shape`` (NCHW or NHWC, as the caller's) and ``dtype``.

    ``through_nhwc``: ``shape`` is (N, C, H, W) and the accumulator (N, H, W, C)."""
    dtype = np.dtype(dtype)
    if through_nhwc:
        n, c, h, w = shape
        accumulator = zeros(xp, (n, h, w, c), acc_dtype(dtype))
        scatter(accumulator)
        grad_input = empty(xp, shape, dtype)
        transpose_planes(accumulator, grad_input, n, h * w, c, executor)
        return grad_input
    if dtype in (np.float32, np.float64):
        grad_input = zeros(xp, shape, dtype)
        scatter(grad_input)
        return grad_input
    accumulator = zeros(xp, shape, np.float32)
    scatter(accumulator)
    grad_input = empty(xp, shape, dtype)
    launch_elementwise(ACCUMULATOR, f"accumulator_to_element<{ctype(dtype)}>", executor,
                       grad_input.size, (accumulator, grad_input, i32(grad_input.size)))
    return grad_input
