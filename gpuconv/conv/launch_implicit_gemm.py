"""Launcher of kernels/conv/implicit_gemm.cu (CUDA-core implicit GEMM, analytic iterators)."""
from __future__ import annotations

from .._kernels import CUDA_TYPES, register
from .launch_common import (GEMM_TILES, GRID_YZ_LIMIT, ConvCall, ceil_div, cuda_bool,
                            pick_gemm_tile)


def _name(t: str, nhwc: str, tile) -> str:
    return f"conv2d_implicit_gemm<{t}, {nhwc}, {tile.template_args}>"


FAMILY = register(
    "conv/implicit_gemm.cu",
    name_expressions=[_name(CUDA_TYPES[dt], nhwc, tile)
                      for dt, tiles in GEMM_TILES.items() for nhwc in ("false", "true")
                      for tile in tiles],
    hot=[_name(CUDA_TYPES[dt], nhwc, GEMM_TILES[dt][0])
         for dt in ("float32", "float16") for nhwc in ("false", "true")],
)


def krsc_weight(call: ConvCall):
    """The weight as (K, R, S, C/groups): NHWC's k order (r, s, c) reads it contiguously."""
    return call.xp.ascontiguousarray(call.weight.transpose(0, 2, 3, 1))


def run(call: ConvCall) -> None:
    g = call.geom
    if g.groups > GRID_YZ_LIMIT:
        raise ValueError(f"implicit_gemm: groups={g.groups} exceeds the grid limit {GRID_YZ_LIMIT}")
    weight = krsc_weight(call) if call.nhwc else call.weight
    large = GEMM_TILES[call.dtype.name][0]
    blocks = ceil_div(g.gemm_m, large.block_m) * ceil_div(g.K_per_group, large.block_n) * g.groups
    tile = pick_gemm_tile(call.dtype, blocks, call.executor)
    fn = call.kernel(FAMILY, _name(call.cuda_type, cuda_bool(call.nhwc), tile))
    smem = tile.smem_bytes(call.dtype)
    for chunk in call.chunks():
        c = chunk.geom
        grid = (ceil_div(c.gemm_m, tile.block_m), ceil_div(c.K_per_group, tile.block_n), c.groups)
        fn(grid, (tile.threads, 1, 1), [chunk.x, weight, *chunk.shape_args(),
                                        *chunk.epilogue_args()], shared_mem=smem)
