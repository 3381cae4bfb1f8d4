"""Launcher of kernels/conv/pointwise.cu: 1x1 convolution as a batched GEMM on the tensors.

Launcher option ``loads`` (launch_common.LOADS, ``pick_loads``): "cp_async" fills the CUDA-core
tiles by cp.async (the ``*_async`` kernels: float32 and float64, kernels/common/async_gemm.cuh),
the default for both layouts."""
from __future__ import annotations

import functools

from .._kernels import CUDA_TYPES, register
from .gemm_tile import GemmTile
from .launch_common import (ASYNC_DTYPES, GEMM_TILES, ConvCall, async_tile, ceil_div,
                            check_gemm_grid, choose_loads, narrow_tiles, pick_filter_tile)
from .split_k import finish_forward, forward_split, gemm_splits

# The GEMM's M is the filters in NCHW (out[:, g] = W[g] * x[:, g]), the pixels in NHWC.
FILTERS_ALONG_M = {"nchw": True, "nhwc": False}


def tiles(dtype: str, layout: str) -> tuple[GemmTile, ...]:
    """Every tile the launcher can pick: large, small, the narrow ones (transposed for NCHW)."""
    return GEMM_TILES[dtype] + narrow_tiles(dtype, filters_along_m=FILTERS_ALONG_M[layout])


@functools.lru_cache(maxsize=1024)     # formatted at every launch otherwise: host time
def _name(layout: str, t: str, tile) -> str:
    suffix = "_async" if tile.async_copy else ""
    return f"conv2d_pointwise_{layout}{suffix}<{t}, {tile.template_args}>"


def _names(dtypes, tile_set) -> list[str]:
    return [_name(layout, CUDA_TYPES[dt], tile) for dt in dtypes for layout in ("nchw", "nhwc")
            for tile in tile_set(dt, layout)]


def _hot_tiles(dt, layout):
    return [t for t in tiles(dt, layout) if t != GEMM_TILES[dt][1]]


FAMILY = register(
    "conv/pointwise.cu",
    name_expressions=_names(GEMM_TILES, tiles)
    + _names(ASYNC_DTYPES, lambda dt, layout: [async_tile(t) for t in tiles(dt, layout)]),
    hot=_names(("float32", "float16"), _hot_tiles)
    + _names(("float32",), lambda dt, layout: [async_tile(t) for t in _hot_tiles(dt, layout)]),
)


def refusal(geom) -> str | None:
    """Why the pointwise kernels cannot run ``geom`` (None when they can)."""
    if (geom.R, geom.S) != (1, 1):
        return f"pointwise needs a 1x1 filter (R = S = 1), got {geom.R}x{geom.S}"
    pads = (geom.pad_top, geom.pad_bottom, geom.pad_left, geom.pad_right)
    if any(pads):
        return f"pointwise needs zero padding, got (top, bottom, left, right) = {pads}"
    return None


def pick_tile(geom, dtype, executor: str, *, nhwc: bool, widths: str = "auto") -> GemmTile:
    """The block tile (launch_common.pick_filter_tile) of the GEMM over every image: N*P*Q
    pixels by K/groups filters per group."""
    return pick_filter_tile(dtype, pixels=geom.gemm_m, filters=geom.K_per_group,
                            groups=geom.groups, executor=executor, widths=widths,
                            filters_along_m=FILTERS_ALONG_M["nhwc" if nhwc else "nchw"])


def tile_extent(tile: GemmTile, nhwc: bool) -> tuple[int, int]:
    """(pixels, filters) of one block of ``tile`` in the layout's GEMM."""
    filters_along_m = FILTERS_ALONG_M["nhwc" if nhwc else "nchw"]
    return (tile.block_n, tile.block_m) if filters_along_m else (tile.block_m, tile.block_n)


def splits(geom, tile: GemmTile, dtype, nhwc: bool, executor: str, split_k="auto") -> int:
    """The k splits of the launch over ``geom`` (split_k.py; 1: no split)."""
    pixels, filters = tile_extent(tile, nhwc)
    return gemm_splits(split_k, rows=geom.gemm_m, cols=geom.K_per_group, groups=geom.groups,
                       block_m=pixels, block_n=filters, block_k=tile.block_k,
                       gemm_k=geom.C_per_group, dtype=dtype, tensor_cores=False,
                       executor=executor)


def pick_loads(dtype, nhwc: bool, loads: str = "auto") -> str:
    """How the tiles are filled (launch_common.choose_loads): "auto" copies with cp.async in
    both layouts. NHWC first (ptxas sinks the register-staged kernel's global loads to just
    before their shared stores, so every k-tile waits out their latency: kernels/conv/NOTES.md
    "cp.async for the CUDA-core tiles"); NCHW since the H100 A/B of 2026-11-22 (bench/results/
    20261122T2135Z-H100-resnet50-loads-nchw): the copies were faster on all 15 ResNet-50 b32
    1x1 layers, by 1-13 % (float32; float64 follows the same argument, not measured)."""
    return choose_loads(dtype, loads, auto_async=True)


def run(call: ConvCall, tile_widths: str = "auto", split_k="auto", loads: str = "auto") -> None:
    """One GEMM per group over all images (pointwise.cu): pixel tiles along grid x, filter
    tiles along y."""
    g = call.geom
    loads = pick_loads(call.dtype, call.nhwc, loads)
    check_gemm_grid("pointwise", g)
    layout = "nhwc" if call.nhwc else "nchw"
    tile = pick_tile(g, call.dtype, call.executor, nhwc=call.nhwc, widths=tile_widths)
    if loads == "cp_async":
        tile = async_tile(tile)
    pixels, filters = tile_extent(tile, call.nhwc)
    fn = call.kernel(FAMILY, _name(layout, call.cuda_type, tile))
    weight = call.kcrs_weight()
    for chunk in call.chunks():
        c = chunk.geom
        split = forward_split(chunk, splits(c, tile, call.dtype, call.nhwc, call.executor,
                                            split_k))
        grid = (ceil_div(c.gemm_m, pixels), ceil_div(c.K_per_group, filters),
                c.groups * split.splits)
        fn(grid, (tile.threads, 1, 1), [chunk.x, weight, *chunk.shape_args(),
                                        *chunk.epilogue_args(), *split.args()],
           shared_mem=tile.smem_bytes(call.dtype))
        finish_forward(chunk, split)
