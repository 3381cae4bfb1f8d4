"""Launcher of kernels/conv/direct.cu: the tiled direct convolution and its v1 beside it.

"direct" runs ``conv2d_direct_tiled`` when its input tile (with halo) and the chunk's weights
fit in shared memory for at least one channel per chunk and its grid fits, and
``conv2d_direct_v1`` otherwise (very large dilated filters in float64; more than 65535 blocks of
filters); "direct_v1" forces the simple kernel.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._kernels import CUDA_TYPES, register
from .gemm_tile import accumulator_itemsize
from .launch_common import (GRID_YZ_LIMIT, SMEM_LIMIT, ConvCall, ceil_div, cuda_bool,
                            decoder_args, round_up)

V1_THREADS = 256
# Input channels staged per shared-memory chunk, at most (fewer when the tile is large).
MAX_CHANNEL_TILE = 8


@dataclass(frozen=True)
class DirectTile:
    """conv2d_direct_tiled's tile (kernels/conv/direct.cu: DirectTile): BLOCK_K filters of one
    group x TILE_P x TILE_Q output pixels of one image; each thread 4 pixels x min(BLOCK_K, 8)
    filters."""
    block_k: int
    tile_p: int
    tile_q: int

    @property
    def threads(self) -> int:
        return (self.tile_p * self.tile_q // 4) * (self.block_k // min(self.block_k, 8))

    @property
    def template_args(self) -> str:
        return f"{self.block_k}, {self.tile_p}, {self.tile_q}"

    def useful_fraction(self, geom) -> float:
        """Share of the launched output slots (pixels x filters) that are real outputs."""
        pixels = ceil_div(geom.P, self.tile_p) * self.tile_p * ceil_div(geom.Q, self.tile_q) * self.tile_q
        filters = ceil_div(geom.K_per_group, self.block_k) * self.block_k
        return geom.P * geom.Q * geom.K_per_group / (pixels * filters)


# 16 filters for wide groups; 8 and 4 for groups of few filters (ResNeXt: 4, 8, 16 per group);
# a square tile for small planes (14x14: 196 of 256 outputs busy, against 196 of 512 with 8x32).
TILES = (DirectTile(16, 8, 32), DirectTile(16, 16, 16), DirectTile(8, 8, 32), DirectTile(4, 8, 32))


def _name(cuda_type: str, nhwc: str, tile: DirectTile) -> str:
    return f"conv2d_direct_tiled<{cuda_type}, {nhwc}, {tile.template_args}>"


_LAYOUTS = ("false", "true")
FAMILY = register(
    "conv/direct.cu",
    name_expressions=[f"conv2d_direct_v1<{t}, {nhwc}>" for t in CUDA_TYPES.values() for nhwc in _LAYOUTS]
    + [_name(t, nhwc, tile) for t in CUDA_TYPES.values() for nhwc in _LAYOUTS for tile in TILES],
    hot=[_name(t, nhwc, tile) for t in ("float", "__half") for nhwc in _LAYOUTS for tile in TILES],
)


def pick_tile(geom) -> DirectTile:
    """The tile that leaves the fewest output slots idle: the smallest filter block that holds
    a group's filters (16 beyond), then the pixel tile that wastes less of the plane (8x32 on
    ties: its rows are longer runs)."""
    block_k = next((k for k in (4, 8) if geom.K_per_group <= k), 16)
    candidates = [t for t in TILES if t.block_k == block_k]
    return max(candidates, key=lambda t: (t.useful_fraction(geom), t.tile_q))


def tiled_smem_bytes(geom, dtype, channel_tile: int, tile: DirectTile | None = None) -> int:
    tile = tile or pick_tile(geom)
    in_h = (tile.tile_p - 1) * geom.stride_h + (geom.R - 1) * geom.dil_h + 1
    in_w = (tile.tile_q - 1) * geom.stride_w + (geom.S - 1) * geom.dil_w + 1
    mainloop = round_up(channel_tile * in_h * in_w, 4) + channel_tile * geom.R * geom.S * tile.block_k
    epilogue = tile.block_k * (tile.tile_p * tile.tile_q + 1)  # STAGE_LD
    return max(mainloop, epilogue) * accumulator_itemsize(dtype)


def channel_tile(geom, dtype) -> int:
    """Input channels per shared-memory chunk of the tiled kernel; 0 when not even one fits."""
    ct = min(MAX_CHANNEL_TILE, geom.C_per_group)
    while ct > 0 and tiled_smem_bytes(geom, dtype, ct) > SMEM_LIMIT:
        ct //= 2
    return ct


def tiled_blocks_y(geom, tile: DirectTile | None = None) -> int:
    """The tiled kernel's grid.y: each group's filters in blocks of the tile's block_k."""
    tile = tile or pick_tile(geom)
    return geom.groups * ceil_div(geom.K_per_group, tile.block_k)


def tiled_plan(geom, dtype) -> tuple[DirectTile, int] | None:
    """(tile, channels per shared-memory chunk) of the tiled kernel, or None where ``run`` takes
    v1: not one channel's tile fits in shared memory, or the grid passes CUDA's limit (more than
    65535 blocks of filters: millions of filters, or as many groups, which only v1's
    one-dimensional grid can launch)."""
    ct = channel_tile(geom, dtype)
    tile = pick_tile(geom)
    if ct == 0 or tiled_blocks_y(geom, tile) > GRID_YZ_LIMIT:
        return None
    return tile, ct


def run(call: ConvCall, *, v1: bool = False) -> None:
    plan = None if v1 else tiled_plan(call.geom, call.dtype)
    nhwc = cuda_bool(call.nhwc)
    weight = call.kcrs_weight()
    if plan is None:
        fn = call.kernel(FAMILY, f"conv2d_direct_v1<{call.cuda_type}, {nhwc}>")
        for chunk in call.chunks():
            g = chunk.geom
            grid = (ceil_div(g.N * g.K * g.P * g.Q, V1_THREADS), 1, 1)
            fn(grid, (V1_THREADS, 1, 1), [chunk.x, weight, *chunk.shape_args(),
                                          *decoder_args(g.K, g.P, g.Q), *chunk.epilogue_args()])
        return
    g = call.geom
    tile, ct = plan
    fn = call.kernel(FAMILY, _name(call.cuda_type, nhwc, tile))
    blocks_y = tiled_blocks_y(g, tile)
    smem = tiled_smem_bytes(g, call.dtype, ct, tile)
    for chunk in call.chunks(GRID_YZ_LIMIT):
        grid = (ceil_div(g.P, tile.tile_p) * ceil_div(g.Q, tile.tile_q), blocks_y, chunk.geom.N)
        fn(grid, (tile.threads, 1, 1), [chunk.x, weight, np.int32(ct), *chunk.shape_args(),
                                        *chunk.epilogue_args()], shared_mem=smem)
