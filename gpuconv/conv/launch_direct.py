"""Launcher of kernels/conv/direct.cu: the tiled direct convolution and its v1 beside it.

"direct" runs ``conv2d_direct_tiled`` when its input tile (with halo) and the chunk's weights
fit in shared memory for at least one channel per chunk, and ``conv2d_direct_v1`` otherwise
(very large dilated filters in float64); "direct_v1" forces the simple kernel.
"""
from __future__ import annotations

import numpy as np

from .._kernels import CUDA_TYPES, register
from .gemm_tile import accumulator_itemsize
from .launch_common import GRID_YZ_LIMIT, SMEM_LIMIT, ConvCall, ceil_div, cuda_bool, round_up

# conv2d_direct_tiled's tile (kernels/conv/direct.cu: DIRECT_*).
TILE_P = 8
TILE_Q = 32
BLOCK_K = 16
THREADS = 128
V1_THREADS = 256
# Input channels staged per shared-memory chunk, at most (fewer when the tile is large).
MAX_CHANNEL_TILE = 8

_LAYOUTS = ("false", "true")
FAMILY = register(
    "conv/direct.cu",
    name_expressions=[f"conv2d_direct_{kind}<{t}, {nhwc}>"
                      for kind in ("v1", "tiled") for t in CUDA_TYPES.values() for nhwc in _LAYOUTS],
    hot=[f"conv2d_direct_tiled<{t}, {nhwc}>" for t in ("float", "__half") for nhwc in _LAYOUTS],
)


def tiled_smem_bytes(geom, dtype, channel_tile: int) -> int:
    in_h = (TILE_P - 1) * geom.stride_h + (geom.R - 1) * geom.dil_h + 1
    in_w = (TILE_Q - 1) * geom.stride_w + (geom.S - 1) * geom.dil_w + 1
    mainloop = round_up(channel_tile * in_h * in_w, 4) + channel_tile * geom.R * geom.S * BLOCK_K
    epilogue = BLOCK_K * (TILE_P * TILE_Q + 1)  # DIRECT_STAGE_LD
    return max(mainloop, epilogue) * accumulator_itemsize(dtype)


def channel_tile(geom, dtype) -> int:
    """Input channels per shared-memory chunk of the tiled kernel; 0 when not even one fits."""
    ct = min(MAX_CHANNEL_TILE, geom.C_per_group)
    while ct > 0 and tiled_smem_bytes(geom, dtype, ct) > SMEM_LIMIT:
        ct //= 2
    return ct


def uses_tiled(geom, dtype) -> bool:
    return channel_tile(geom, dtype) > 0


def run(call: ConvCall, *, v1: bool = False) -> None:
    ct = 0 if v1 else channel_tile(call.geom, call.dtype)
    nhwc = cuda_bool(call.nhwc)
    if ct == 0:
        fn = call.kernel(FAMILY, f"conv2d_direct_v1<{call.cuda_type}, {nhwc}>")
        for chunk in call.chunks():
            g = chunk.geom
            grid = (ceil_div(g.N * g.K * g.P * g.Q, V1_THREADS), 1, 1)
            fn(grid, (V1_THREADS, 1, 1), [chunk.x, chunk.weight, *chunk.shape_args(),
                                          *chunk.epilogue_args()])
        return
    fn = call.kernel(FAMILY, f"conv2d_direct_tiled<{call.cuda_type}, {nhwc}>")
    g = call.geom
    blocks_y = g.groups * ceil_div(g.K_per_group, BLOCK_K)
    if blocks_y > GRID_YZ_LIMIT:
        raise ValueError(f"direct: groups * ceil(K/groups / {BLOCK_K}) = {blocks_y} exceeds the "
                         f"grid limit {GRID_YZ_LIMIT}; use algorithm='implicit_gemm'")
    smem = tiled_smem_bytes(g, call.dtype, ct)
    for chunk in call.chunks(GRID_YZ_LIMIT):
        grid = (ceil_div(g.P, TILE_P) * ceil_div(g.Q, TILE_Q), blocks_y, chunk.geom.N)
        fn(grid, (THREADS, 1, 1), [chunk.x, chunk.weight, np.int32(ct), *chunk.shape_args(),
                                   *chunk.epilogue_args()], shared_mem=smem)
