"""The scratch accumulator of the atomic ROI backward passes (kernels/roi/accumulator.cu).

Float atomics exist for float32 and float64; for half types the passes add into a zeroed float32
buffer, rounded once to the element type at the end (atomics on half elements would round
every partial sum).
"""
from __future__ import annotations

import numpy as np

from .._plans import empty, zeros
from ..pool.launch_common import ctype, i32, launch_elementwise, register_family

ACCUMULATOR = register_family("roi/accumulator.cu", "accumulator_to_element<{T}>",
                              T=("__half", "__nv_bfloat16"))


def accumulate_to(xp, shape, dtype, scatter, executor: str):
    """A zeroed accumulator of ``shape`` handed to ``scatter`` (which launches the atomic
    kernel into it), returned as an array of ``dtype``."""
    dtype = np.dtype(dtype)
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
