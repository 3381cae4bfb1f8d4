"""Launcher of the rois validation kernel (kernels/roi/rois_check.cu): the first row of a
contiguous (K, 5) rois array that the region-of-interest kernels must not see, found on the
device, so that the front reads back one int instead of copying every box to the host; and the
copy of the rois, bad rows emptied, that the kernels read instead, so that the front may launch
them before it reads that int back (one synchronization, after the work is queued)."""
from __future__ import annotations

import numpy as np

from .._capture import refuse_host_read
from .._plans import empty, zeros
from ..pool.launch_common import (TYPES, check_int32, ctype, i32, launch_elementwise,
                                  register_family, xp_for)

ROIS_CHECK = register_family("roi/rois_check.cu", "rois_check<{T}>", T=TYPES)


def launch_rows_check(rois, n_images: int, spatial_scale: float, max_coordinate: float,
                      executor: str = "cupy"):
    """(checked, answer), both still being computed: ``checked`` is ``rois`` with every row
    holding a non-finite value, a coordinate beyond ``max_coordinate`` feature-map pixels or a
    batch index outside [0, n_images) replaced by [-1, 0, 0, 0, 0]; pass
    ``answer`` to ``first_bad_row`` for the smallest such row."""
    xp = xp_for(executor)
    check_int32(rois)
    checked = empty(xp, rois.shape, rois.dtype)
    rows_after_first_bad = zeros(xp, (1,), np.int32)    # CuPy: a memset, not a kernel
    launch_elementwise(ROIS_CHECK, f"rois_check<{ctype(rois.dtype)}>", executor, rois.shape[0],
                       (rois, checked, rows_after_first_bad, i32(rois.shape[0]), i32(n_images),
                        np.float64(spatial_scale), np.float64(max_coordinate)))
    return checked, rows_after_first_bad


def first_bad_row(answer, num_rois: int) -> int | None:
    """The row ``launch_rows_check`` found first among ``num_rois``, None if none. On a CuPy
    array this waits for the stream's work queued so far (one device synchronization; refused
    under a CUDA graph capture)."""
    refuse_host_read(answer, "the boxes' values")
    rows_after = int(answer.item())     # CuPy: one copy to the host, no indexing kernel or view
    return num_rois - rows_after if rows_after else None
