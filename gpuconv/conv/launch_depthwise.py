"""Launcher of kernels/conv/depthwise.cu: groups == C, any channel multiplier K / C.

Small filters (up to 49 taps; 3x3, 5x5, 7x7 unrolled) run ``conv2d_depthwise_direct``, one
thread per output reading taps through L1; larger ones run ``conv2d_depthwise_tiled``, which
stages an input tile with its halo in shared memory and reuses it R*S times. The shared tile is
sized to fit SMEM_LIMIT: the channel tile shrinks first (NHWC), then the pixel tile; a filter
whose smallest tile still does not fit (huge dilated filters in float64) runs the direct kernel.
"""
from __future__ import annotations

import numpy as np

from .._kernels import CUDA_TYPES, register
from .gemm_tile import accumulator_itemsize
from .launch_common import GRID_YZ_LIMIT, SMEM_LIMIT, ConvCall, ceil_div, cuda_bool, round_up

UNROLLED_SIZES = (3, 5, 7)
DIRECT_THREADS = 256
TILED_THREADS = 256   # kernels/conv/depthwise.cu: DEPTHWISE_THREADS
OUT_Q = 4             # DEPTHWISE_OUT_Q: tile_q is a multiple of it
# The direct kernel up to this filter area; the tiled one beyond (a guess to check on a GPU:
# kernels/conv/NOTES.md).
DIRECT_MAX_TAPS = 49

_LAYOUTS = ("false", "true")
_FILTERS = [(f, f) for f in UNROLLED_SIZES] + [(0, 0)]
FAMILY = register(
    "conv/depthwise.cu",
    name_expressions=(
        [f"conv2d_depthwise_direct<{t}, {nhwc}, {fr}, {fs}>" for t in CUDA_TYPES.values()
         for nhwc in _LAYOUTS for fr, fs in _FILTERS]
        + [f"conv2d_depthwise_tiled<{t}, {nhwc}>" for t in CUDA_TYPES.values() for nhwc in _LAYOUTS]),
    hot=([f"conv2d_depthwise_direct<{t}, {nhwc}, 3, 3>" for t in ("float", "__half") for nhwc in _LAYOUTS]
         + [f"conv2d_depthwise_tiled<{t}, {nhwc}>" for t in ("float", "__half") for nhwc in _LAYOUTS]),
)


def refusal(geom) -> str | None:
    """Why the depthwise kernels cannot run ``geom`` (None when they can)."""
    if geom.groups != geom.C:
        return (f"depthwise needs groups == C (one group per input channel), got groups="
                f"{geom.groups} with C={geom.C}")
    return None


def tiled_smem_bytes(geom, dtype, tile_p: int, tile_q: int, channel_tile: int) -> int:
    in_h = (tile_p - 1) * geom.stride_h + (geom.R - 1) * geom.dil_h + 1
    in_w = (tile_q - 1) * geom.stride_w + (geom.S - 1) * geom.dil_w + 1
    multiplier = geom.K // geom.C
    elements = round_up(channel_tile * in_h * in_w, 4) + channel_tile * multiplier * geom.R * geom.S
    return elements * accumulator_itemsize(dtype)


def tiled_config(geom, dtype, nhwc: bool) -> tuple[int, int, int]:
    """(tile_p, tile_q, channel_tile) that fit in shared memory.

    NCHW: one channel per block and a 16 x 32 output tile (smaller for small outputs). NHWC: up
    to 32 channels per block (a warp's worth along the contiguous dimension) and a 4 x 8 tile.
    """
    q_cap = 8 if nhwc else 32
    tile_q = min(round_up(geom.Q, OUT_Q), q_cap)
    tile_p = min(geom.P, 4 if nhwc else 16)
    ct = min(geom.C, 32) if nhwc else 1
    while tiled_smem_bytes(geom, dtype, tile_p, tile_q, ct) > SMEM_LIMIT:
        if ct > 1:
            ct = max(1, ct // 2)
        elif tile_p > 1:
            tile_p = max(1, tile_p // 2)
        elif tile_q > OUT_Q:
            tile_q = max(OUT_Q, round_up(tile_q // 2, OUT_Q))
        else:
            break  # one channel, a 1 x 4 tile: the filter alone is what does not fit
    return tile_p, tile_q, ct


def uses_tiled(geom, dtype, nhwc: bool) -> bool:
    """Large filters take the shared-memory path, if its smallest tile fits."""
    if geom.R * geom.S <= DIRECT_MAX_TAPS:
        return False
    return tiled_smem_bytes(geom, dtype, *tiled_config(geom, dtype, nhwc)) <= SMEM_LIMIT


def run(call: ConvCall) -> None:
    g = call.geom
    nhwc = cuda_bool(call.nhwc)
    if not uses_tiled(g, call.dtype, call.nhwc):
        fr, fs = (g.R, g.S) if g.R == g.S and g.R in UNROLLED_SIZES else (0, 0)
        fn = call.kernel(FAMILY, f"conv2d_depthwise_direct<{call.cuda_type}, {nhwc}, {fr}, {fs}>")
        for chunk in call.chunks():
            c = chunk.geom
            grid = (ceil_div(c.N * c.K * c.P * c.Q, DIRECT_THREADS), 1, 1)
            fn(grid, (DIRECT_THREADS, 1, 1), [chunk.x, chunk.weight, *chunk.shape_args(),
                                              *chunk.epilogue_args()])
        return
    tile_p, tile_q, ct = tiled_config(g, call.dtype, call.nhwc)
    smem = tiled_smem_bytes(g, call.dtype, tile_p, tile_q, ct)
    channel_blocks = ceil_div(g.C, ct)
    if channel_blocks > GRID_YZ_LIMIT:
        raise ValueError(f"depthwise: {channel_blocks} channel blocks exceed the grid limit "
                         f"{GRID_YZ_LIMIT}")
    fn = call.kernel(FAMILY, f"conv2d_depthwise_tiled<{call.cuda_type}, {nhwc}>")
    for chunk in call.chunks(GRID_YZ_LIMIT):
        grid = (ceil_div(g.P, tile_p) * ceil_div(g.Q, tile_q), channel_blocks, chunk.geom.N)
        fn(grid, (TILED_THREADS, 1, 1), [chunk.x, chunk.weight, np.int32(tile_p), np.int32(tile_q),
                                         np.int32(ct), *chunk.shape_args(), *chunk.epilogue_args()],
           shared_mem=smem)
