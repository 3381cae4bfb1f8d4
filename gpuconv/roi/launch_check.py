"""Launcher of the rois validation kernel (kernels/roi/rois_check.cu): the first row of a CuPy
rois array that the region-of-interest kernels must not see, found on the device, so that the
front reads back one int instead of copying every box to the host."""
from __future__ import annotations

import numpy as np

from ..pool.launch_common import (INT32_LIMIT, TYPES, check_int32, ctype, i32,
                                  launch_elementwise, register_family, xp_for)

ROIS_CHECK = register_family("roi/rois_check.cu", "rois_check<{T}>", T=TYPES)


def first_bad_row(rois, n_images: int, spatial_scale: float, max_coordinate: float,
                  executor: str = "cupy") -> int | None:
    """The smallest row of the contiguous (K, 5) ``rois`` holding a non-finite value, a
    coordinate beyond ``max_coordinate`` feature-map pixels or a batch index that is not an
    integer in [0, n_images); None if there is none. Reading the answer back is one device
    synchronization (CuPy)."""
    xp = xp_for(executor)
    check_int32(rois)
    first_bad = xp.full((1,), INT32_LIMIT, dtype=np.int32)
    launch_elementwise(ROIS_CHECK, f"rois_check<{ctype(rois.dtype)}>", executor, rois.shape[0],
                       (rois, first_bad, i32(rois.shape[0]), i32(n_images),
                        np.float64(spatial_scale), np.float64(max_coordinate)))
    bad = int(first_bad[0])
    return None if bad == INT32_LIMIT else bad
