"""The backward of max pooling through its switches (the forward's indices), windowed and
adaptive: which formulation runs, and the scatter's launcher (kernels/pool/switch_scatter.cu).

- windows/bins that do not overlap: a scatter of plain stores into zeros (bitwise reproducible:
  no two outputs name the same input), in both modes;
- overlapping, default mode: a scatter of float atomics into zeros (PyTorch's formulation; float
  accumulator for half types, rounded once), except where the gather is faster (``gather_wins``);
- overlapping, ``deterministic=True``: the gathers of max_pool.cu / adaptive_pool.cu
  (``launch_common.grad_through_switches``), which sum each input's windows in a fixed order.
The scatter touches each output once plus a memset of grad_input; the gather visits every input
and tests each covering window (kernels/pool/NOTES.md "Max-pooling backward as a scatter").
"""
from __future__ import annotations

import numpy as np

from .._plans import zeros
from .launch_common import (BOOLS, TYPES, ctype, grad_through_switches, instantiations,
                            launch_elementwise, pool_shape, register, switch_operands, xp_for)
from .launch_indices import unchecked_arguments

# Plain stores in the element type; atomics in the accumulator type (float for half types).
_STORE = instantiations("pool_switch_scatter<{T}, {T}, {L}, false>", T=TYPES, L=BOOLS)
_ATOMIC = [f"pool_switch_scatter<{t}, {'double' if t == 'double' else 'float'}, {layout}, true>"
           for t in TYPES for layout in BOOLS]
SWITCH_SCATTER = register("pool/switch_scatter.cu", _STORE + _ATOMIC, hot=_STORE + _ATOMIC)


def gather_wins(dtype, compile_time_window: bool) -> bool:
    """Whether overlapping windows take the gather in the default mode too: for a half type
    (float16, bfloat16) under a window whose candidates the gather knows at compile time. The
    half types' scatter needs a float scratch, its memset and a rounding pass over grad_input's
    size, where the gather writes each element once; on the H100 (session 25) the gather took
    0.71-0.75x the scatter's time at 3x3/2 in fp16 (both layouts) and ~0.95x at 3x3/1. In
    float32 the scatter, which checks handed indices as it reads them, took 0.66-0.89x the
    gather's time at 3x3/2 and 3x3/1, both layouts (kernels/pool/NOTES.md "Session 25 on the
    H100")."""
    return compile_time_window and np.dtype(dtype).itemsize == 2


def formulation(overlapping: bool, deterministic: bool, prefer_gather: bool = False) -> str:
    """"store" | "atomic" | "gather" (see the module docstring); ``prefer_gather``:
    ``gather_wins`` for the call."""
    if not overlapping:
        return "store"
    return "gather" if deterministic or prefer_gather else "atomic"


def max_pool_backward(family, gather_kernel: str, grad_output, x, indices, recompute_indices,
                      gather_args, geom, *, overlapping: bool, data_format: str,
                      deterministic: bool, executor: str, shared_mem: int = 0,
                      gather_template_tail: str = "", gather_vectors: bool = False,
                      prefer_gather: bool = False, indices_scan=None):
    """grad_input of a max pooling over ``geom`` (N, C, H, W -> P, Q) from its switches:
    ``indices`` (the forward's, or ``recompute_indices(x)`` when None). The gather path is
    ``launch_common.grad_through_switches`` with ``gather_kernel``, ``gather_args`` and
    ``gather_template_tail`` (and its ``vectors_flag``: ``gather_vectors``); ``prefer_gather``:
    as ``formulation``'s. ``indices_scan``: the front's ``geometry.IndicesScan`` of ``indices``
    not yet queued, or None: the scatter claims it (it checks each index as it reads it), the
    gather queues its pass first."""
    xp = xp_for(executor)
    how = formulation(overlapping, deterministic, prefer_gather)
    if how == "gather":
        if indices_scan is not None:
            indices_scan.launch()
        return grad_through_switches(xp, family, gather_kernel, grad_output, x, indices,
                                     recompute_indices, gather_args, data_format=data_format,
                                     executor=executor, shared_mem=shared_mem,
                                     template_tail=gather_template_tail,
                                     vectors_flag=gather_vectors)
    grad_output, x, indices = switch_operands(xp, grad_output, x, indices, recompute_indices)
    layout = "true" if data_format == "NHWC" else "false"
    t = ctype(grad_output.dtype)
    check = indices_scan.claim() if indices_scan is not None else unchecked_arguments(xp)

    def scatter(target):
        kernel = (f"pool_switch_scatter<{t}, {ctype(target.dtype)}, {layout}, "
                  f"{'true' if how == 'atomic' else 'false'}>")
        launch_elementwise(SWITCH_SCATTER, kernel, executor, grad_output.size,
                           (grad_output, indices, target, *pool_shape(geom), *check))
        return target

    if how == "store":
        return scatter(zeros(xp, x.shape, grad_output.dtype))
    from ..roi.launch_accumulator import accumulate_to   # the atomic passes' float scratch
    return accumulate_to(xp, x.shape, grad_output.dtype, scatter, executor)


def windows_overlap(geom) -> bool:
    """Whether two outputs of a windowed pooling can share an input: along an axis with more
    than one output, the window's extent exceeds the stride."""
    extent_h, extent_w = (geom.R - 1) * geom.dil_h + 1, (geom.S - 1) * geom.dil_w + 1
    return ((geom.P > 1 and extent_h > geom.stride_h)
            or (geom.Q > 1 and extent_w > geom.stride_w))


def bins_overlap(geom) -> bool:
    """Whether two adaptive bins share an input: along an axis with more than one bin, the
    size is not a multiple of the bins (bins [floor(i*H/P), ceil((i+1)*H/P)))."""
    return (geom.P > 1 and geom.H % geom.P != 0) or (geom.Q > 1 and geom.W % geom.Q != 0)
