"""Launcher of kernels/conv/im2col_gemm.cu: im2col into a bounded workspace, then a GEMM per group.

The column buffer holds ``C*R*S`` rows of ``ldc >= images * P * Q`` columns for a chunk of the
batch; the chunk is as many images as fit in the workspace limit (at least one image, so a
single huge image may exceed the limit). ``gemm="own"`` runs the project's SIMT GEMM with the
fused epilogue; ``gemm="cublas"`` multiplies with the executor's matmul (``cupy.matmul``, i.e.
cuBLAS, on a GPU; ``numpy.matmul`` stands in for it in the simulator, so the column and
epilogue kernels of that path stay tested on a CPU) and then runs the epilogue kernel. That
path is the benchmark's "im2col + cuBLAS" variant, not one "auto" takes: its product comes back
in the input's dtype (as cuBLAS's float16 GEMM returns it), so in float16/bfloat16 the epilogue
adds bias and residual to a rounded product, where the fused kernels add them to the float32
accumulator (audit 16: up to a few hundred ulp where the bias or residual cancels the product).
"""
from __future__ import annotations

import os

import numpy as np

from .._args import as_choice, as_int
from .._kernels import CUDA_TYPES, register
from .gemm_tile import GemmTile
from .launch_common import (GEMM_TILES, GRID_YZ_LIMIT, INDEX_LIMIT, ConvCall, ceil_div,
                            check_gemm_grid, cuda_bool, narrow_tiles, pick_filter_tile,
                            round_up)

GEMMS = ("own", "cublas")
# Default bound of the column buffer; GPUCONV_WORKSPACE_BYTES or workspace_bytes= override it.
DEFAULT_WORKSPACE_BYTES = 256 * 2 ** 20
IM2COL_THREADS = 256
EPILOGUE_THREADS = 256


def _gemm_name(t: str, lanes_along_m: str, tile) -> str:
    return f"conv2d_gemm_columns<{t}, {lanes_along_m}, {tile.template_args}>"


def tiles(dtype_name: str) -> tuple[GemmTile, ...]:
    """The GEMM's tiles (M = filters, N = columns): large, small, the narrow ones transposed."""
    return GEMM_TILES[dtype_name] + narrow_tiles(dtype_name, filters_along_m=True)


FAMILY = register(
    "conv/im2col_gemm.cu",
    name_expressions=(
        [f"conv2d_im2col<{t}, {nhwc}>" for t in CUDA_TYPES.values() for nhwc in ("false", "true")]
        + [_gemm_name(CUDA_TYPES[dt], lanes, tile) for dt in GEMM_TILES
           for lanes in ("false", "true") for tile in tiles(dt)]
        + [f"conv2d_columns_epilogue<{t}>" for t in CUDA_TYPES.values()]),
    hot=[_gemm_name(CUDA_TYPES[dt], lanes, tile)
         for dt in ("float32", "float16") for lanes in ("false", "true")
         for tile in (GEMM_TILES[dt][0],) + narrow_tiles(dt, filters_along_m=True)],
)


WORKSPACE_ENV = "GPUCONV_WORKSPACE_BYTES"


def workspace_limit(workspace_bytes: int | None = None) -> int:
    if workspace_bytes is None:
        env = os.environ.get(WORKSPACE_ENV, "").strip()
        if not env:
            return DEFAULT_WORKSPACE_BYTES
        try:
            workspace_bytes = int(env)
        except ValueError:
            workspace_bytes = 0
        if workspace_bytes < 1:
            raise ValueError(f"{WORKSPACE_ENV} must be an integer >= 1 (bytes), got {env!r}")
    return as_int("workspace_bytes", workspace_bytes, minimum=1)


def _images_by_index(geom) -> int:
    """Images whose column buffer (C*R*S rows, ldc = images * P*Q padded by up to 3 columns)
    stays within 32-bit offsets."""
    return (INDEX_LIMIT // (geom.C * geom.R * geom.S) - 3) // max(1, geom.P * geom.Q)


def refusal(geom) -> str | None:
    """Why im2col_gemm cannot run ``geom`` (None when it can; the grid: heuristics.refusal)."""
    if _images_by_index(geom) < 1:
        return (f"the column buffer of one image ({geom.C * geom.R * geom.S} x "
                f"{geom.P * geom.Q}) has 2^31 or more elements")
    return None


def images_per_chunk(geom, itemsize: int, limit_bytes: int) -> int:
    """Images whose columns fit in the workspace (>= 1) and in 32-bit offsets."""
    why = refusal(geom)
    if why is not None:
        raise ValueError(f"im2col_gemm: {why}; use algorithm='implicit_gemm'")
    by_workspace = limit_bytes // max(1, geom.C * geom.R * geom.S * geom.P * geom.Q * itemsize)
    return max(1, min(by_workspace, _images_by_index(geom), geom.N))


def run(call: ConvCall, *, gemm: str = "own", workspace_bytes: int | None = None,
        tile_widths: str = "auto") -> None:
    gemm = as_choice("gemm", gemm, GEMMS)
    g = call.geom
    check_gemm_grid("im2col_gemm", g)
    xp = call.xp
    images = images_per_chunk(g, call.dtype.itemsize, workspace_limit(workspace_bytes))
    rows = g.C * g.R * g.S
    ldc = round_up(images * g.P * g.Q, 4)
    columns = xp.empty((rows, ldc), dtype=call.dtype)
    im2col = call.kernel(FAMILY, f"conv2d_im2col<{call.cuda_type}, {cuda_bool(call.nhwc)}>")
    weight = call.kcrs_weight()
    if gemm == "own":
        tile = pick_filter_tile(call.dtype, pixels=ldc, filters=g.K_per_group, groups=g.groups,
                                executor=call.executor, filters_along_m=True, widths=tile_widths)
        # Lanes along the output's contiguous dimension: filters (M) for NHWC, pixels for NCHW.
        gemm_fn = call.kernel(FAMILY, _gemm_name(call.cuda_type, cuda_bool(call.nhwc), tile))
    else:
        epilogue_fn = call.kernel(FAMILY, f"conv2d_columns_epilogue<{call.cuda_type}>")
        weight_by_group = weight.reshape(g.groups, g.K_per_group, g.gemm_k)
    for chunk in call.chunks(images):
        n_images = chunk.geom.N
        chunk_ldc = round_up(n_images * g.P * g.Q, 4)
        # A smaller last chunk uses the front of the buffer with its own row stride.
        cols = columns.reshape(-1)[:rows * chunk_ldc].reshape(rows, chunk_ldc)
        head = [np.int32(chunk_ldc), np.int32(n_images)]
        im2col((ceil_div(chunk_ldc, IM2COL_THREADS), min(g.C, GRID_YZ_LIMIT), 1), (IM2COL_THREADS, 1, 1),
               [chunk.x, cols, *head, *chunk.shape_args()])
        if gemm == "own":
            grid = (ceil_div(chunk_ldc, tile.block_n), ceil_div(g.K_per_group, tile.block_m), g.groups)
            gemm_fn(grid, (tile.threads, 1, 1), [weight, cols, *head, *chunk.shape_args(),
                                                 *chunk.epilogue_args()],
                    shared_mem=tile.smem_bytes(call.dtype))
        else:
            # NumPy (with ml_dtypes) promotes a bfloat16 product to float32; the epilogue kernel
            # reads the input's dtype.
            y = xp.matmul(weight_by_group, cols.reshape(g.groups, g.gemm_k, chunk_ldc))
            y = y.astype(call.dtype, copy=False)
            grid = (ceil_div(n_images * g.P * g.Q, EPILOGUE_THREADS), min(g.K, GRID_YZ_LIMIT), 1)
            epilogue_fn(grid, (EPILOGUE_THREADS, 1, 1), [y, *head, *chunk.shape_args(),
                                                        *chunk.epilogue_args()])
