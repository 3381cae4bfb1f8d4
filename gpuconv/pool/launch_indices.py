"""Launcher of the index validation kernel (kernels/pool/indices_check.cu): the first index a
max-pooling backward or max_unpool2d was handed that its forward cannot have produced, found in
one pass on the device (the NumPy rules in geometry.py take ~20 array passes).

The scan is launched before the call's own kernels and its answer read after them
(``geometry.IndicesScan``): one synchronization, once the work is queued, and a launch plan can
hold the scan (pool/dispatch.py ``scanned_call``). A backward scatter, which reads every index
anyway, checks them itself with the same rule and answer (``fused_check_arguments``) instead."""
from __future__ import annotations

import numpy as np

from .._capture import refuse_host_read
from .._plans import unused_argument, zeros
from .launch_common import (BOOLS, check_int32, i32, index_array, launch_elementwise, nhwc,
                            pool_shape, register_family, xp_for)

# W: 0 range only, 1 strided window, 2 adaptive bin
INDICES_CHECK = register_family("pool/indices_check.cu", "pool_indices_check<{L}, {W}>",
                                L=BOOLS, W=("0", "1", "2"))
WINDOWS = {"none": "0", "strided": "1", "adaptive": "2"}


def _answer(xp):
    """The answer array of a scan: one int32, zero-filled (on CuPy a memset, not a kernel)."""
    return zeros(xp, (1,), np.int32)


def launch_indices_check(indices, geom, data_format: str, *, window: str, allow_no_index: bool,
                         executor: str):
    """The scan of ``indices`` (shape (N, C, P, Q) of ``geom`` in ``data_format``), queued: an
    int32 array of one element that will hold ``indices.size`` minus the smallest flat position
    holding an index outside [0, H*W) (-1 passes where ``allow_no_index``) or, per ``window``,
    outside its output's window; 0 if there is none (``first_bad_index`` reads it)."""
    xp = xp_for(executor)
    indices = index_array(xp, indices)
    check_int32(indices)
    outputs_after_first_bad = _answer(xp)
    name = f"pool_indices_check<{nhwc(data_format)}, {WINDOWS[window]}>"
    launch_elementwise(INDICES_CHECK, name, executor, indices.size,
                       (indices, outputs_after_first_bad,
                        *pool_shape(geom, windows=window == "strided"),
                        i32(1 if allow_no_index else 0)))
    return outputs_after_first_bad


def fused_check_arguments(window: str, allow_no_index: bool, executor: str) -> tuple:
    """(answer array, window rule, allow_no_index) as int32 kernel arguments, for a kernel that
    checks the indices as it reads them (switch_scatter.cu) with the scan's rule and answer."""
    return _answer(xp_for(executor)), i32(int(WINDOWS[window])), i32(1 if allow_no_index else 0)


def unchecked_arguments(xp) -> tuple:
    """The same arguments for the forward's own indices, which are not checked (rule -1)."""
    return unused_argument(xp, np.int32), i32(-1), i32(0)


def first_bad_index(answer, size: int) -> int | None:
    """The flat position that ``answer`` (of ``launch_indices_check`` over ``size`` indices)
    names, None if none. On a CuPy array this waits for the stream's work queued so far (one
    device synchronization; refused under a CUDA graph capture)."""
    refuse_host_read(answer, "the indices' values")
    outputs_after = int(answer.item())   # CuPy: one copy to the host, no indexing kernel or view
    return size - outputs_after if outputs_after else None
