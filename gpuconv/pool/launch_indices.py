"""Launcher of the index validation kernel (kernels/pool/indices_check.cu): the first index a
max-pooling backward or max_unpool2d was handed that its forward cannot have produced, found in
one pass on the device (the NumPy rules in geometry.py take ~20 array passes)."""
from __future__ import annotations

import numpy as np

from .launch_common import (BOOLS, INT32_LIMIT, check_int32, i32, index_array, launch_elementwise,
                            nhwc, pool_shape, register_family, xp_for)

# W: 0 range only, 1 strided window, 2 adaptive bin
INDICES_CHECK = register_family("pool/indices_check.cu", "pool_indices_check<{L}, {W}>",
                                L=BOOLS, W=("0", "1", "2"))
WINDOWS = {"none": "0", "strided": "1", "adaptive": "2"}


def first_bad_index(indices, geom, data_format: str, *, window: str, allow_no_index: bool,
                    executor: str) -> int | None:
    """The smallest flat position of ``indices`` (shape (N, C, P, Q) of ``geom`` in
    ``data_format``) holding an index outside [0, H*W) (-1 passes where ``allow_no_index``) or,
    per ``window``, outside its output's window; None if there is none. Reading the answer back
    is one device synchronization (CuPy)."""
    xp = xp_for(executor)
    indices = index_array(xp, indices)
    check_int32(indices)
    first_bad = xp.full((1,), INT32_LIMIT, dtype=np.int32)
    name = f"pool_indices_check<{nhwc(data_format)}, {WINDOWS[window]}>"
    launch_elementwise(INDICES_CHECK, name, executor, indices.size,
                       (indices, first_bad, *pool_shape(geom),
                        i32(1 if allow_no_index else 0)))
    bad = int(first_bad[0])
    return None if bad == INT32_LIMIT else bad
