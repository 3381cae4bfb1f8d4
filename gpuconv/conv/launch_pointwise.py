"""Launcher of kernels/conv/pointwise.cu: 1x1 convolution as a batched GEMM on the tensors."""
from __future__ import annotations

from .._kernels import CUDA_TYPES, register
from .launch_common import GEMM_TILES, GRID_YZ_LIMIT, ConvCall, ceil_div, pick_gemm_tile


def _name(layout: str, t: str, tile) -> str:
    return f"conv2d_pointwise_{layout}<{t}, {tile.template_args}>"


FAMILY = register(
    "conv/pointwise.cu",
    name_expressions=[_name(layout, CUDA_TYPES[dt], tile)
                      for dt, tiles in GEMM_TILES.items() for layout in ("nchw", "nhwc")
                      for tile in tiles],
    hot=[_name(layout, CUDA_TYPES[dt], GEMM_TILES[dt][0])
         for dt in ("float32", "float16") for layout in ("nchw", "nhwc")],
)


def refusal(geom) -> str | None:
    """Why the pointwise kernels cannot run ``geom`` (None when they can)."""
    if (geom.R, geom.S) != (1, 1):
        return f"pointwise needs a 1x1 filter (R = S = 1), got {geom.R}x{geom.S}"
    pads = (geom.pad_top, geom.pad_bottom, geom.pad_left, geom.pad_right)
    if any(pads):
        return f"pointwise needs zero padding, got (top, bottom, left, right) = {pads}"
    return None


def run(call: ConvCall) -> None:
    g = call.geom
    large = GEMM_TILES[call.dtype.name][0]
    if call.nhwc:
        # One GEMM per group over all images: M = N*P*Q pixels, N = K/groups filters.
        if g.groups > GRID_YZ_LIMIT:
            raise ValueError(f"pointwise: groups={g.groups} exceeds the grid limit {GRID_YZ_LIMIT}")
        blocks = ceil_div(g.gemm_m, large.block_m) * ceil_div(g.K_per_group, large.block_n) * g.groups
        tile = pick_gemm_tile(call.dtype, blocks, call.executor)
        fn = call.kernel(FAMILY, _name("nhwc", call.cuda_type, tile))
        for chunk in call.chunks():
            c = chunk.geom
            grid = (ceil_div(c.gemm_m, tile.block_m), ceil_div(c.K_per_group, tile.block_n), c.groups)
            fn(grid, (tile.threads, 1, 1), [chunk.x, chunk.weight, *chunk.shape_args(),
                                            *chunk.epilogue_args()], shared_mem=tile.smem_bytes(call.dtype))
        return
    # NCHW: one GEMM per group over all images: M = K/groups filters, N = N*P*Q pixels.
    if g.groups > GRID_YZ_LIMIT:
        raise ValueError(f"pointwise: groups={g.groups} exceeds the grid limit {GRID_YZ_LIMIT}")
    blocks = ceil_div(g.K_per_group, large.block_m) * ceil_div(g.gemm_m, large.block_n) * g.groups
    tile = pick_gemm_tile(call.dtype, blocks, call.executor)
    fn = call.kernel(FAMILY, _name("nchw", call.cuda_type, tile))
    for chunk in call.chunks():
        c = chunk.geom
        grid = (ceil_div(c.gemm_m, tile.block_n), ceil_div(c.K_per_group, tile.block_m), c.groups)
        fn(grid, (tile.threads, 1, 1), [chunk.x, chunk.weight, *chunk.shape_args(),
                                        *chunk.epilogue_args()], shared_mem=tile.smem_bytes(call.dtype))
