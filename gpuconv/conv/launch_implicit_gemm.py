"""Launcher of kernels/conv/implicit_gemm.cu (CUDA-core implicit GEMM).

Two kernels gather the activations (the GEMM's A operand) differently and compute the same
sums in the same order (kernels/conv/NOTES.md):

- "precomputed" (``conv2d_implicit_gemm_precomputed``, CUTLASS's "optimized" iterator): per-row
  offsets and tap masks computed before the main loop, a shared table of the block tile's live
  taps (a tap that reads only padding for every pixel of the tile is skipped: dilated layers),
  no division in the main loop. Needs R*S <= MAX_TAPS (the mask's bits).
- "analytic" (``conv2d_implicit_gemm``): the taps decomposed with FastDivmod in the main loop;
  any filter size. The readable statement of the gather.

``run(call, iterator="auto")`` picks the precomputed kernel whenever it can run the filter;
``iterator="analytic"`` / ``"precomputed"`` force one (``launch.conv2d(..., iterator=...)``:
tests, benchmarks and tuning compare them). It is a launcher option, not an algorithm name.
"""
from __future__ import annotations

from .._args import as_choice
from .._kernels import CUDA_TYPES, register
from .geometry import ConvGeometry
from .launch_common import (GEMM_TILES, GRID_YZ_LIMIT, ConvCall, ceil_div, cuda_bool,
                            pick_gemm_tile)

ITERATORS = ("auto", "precomputed", "analytic")
KERNELS = {"analytic": "conv2d_implicit_gemm", "precomputed": "conv2d_implicit_gemm_precomputed"}

# kernels/common/conv_tap_table.cuh: MAX_TAPS (bits of a row's tap mask).
MAX_TAPS = 32


def _name(iterator: str, t: str, nhwc: str, tile) -> str:
    return f"{KERNELS[iterator]}<{t}, {nhwc}, {tile.template_args}>"


FAMILY = register(
    "conv/implicit_gemm.cu",
    name_expressions=[_name(it, CUDA_TYPES[dt], nhwc, tile)
                      for it in ("analytic", "precomputed")
                      for dt, tiles in GEMM_TILES.items() for nhwc in ("false", "true")
                      for tile in tiles],
    hot=[_name(it, CUDA_TYPES[dt], nhwc, GEMM_TILES[dt][0])
         for it in ("analytic", "precomputed")
         for dt in ("float32", "float16") for nhwc in ("false", "true")],
)


def choose_iterator(geom: ConvGeometry, iterator: str = "auto") -> str:
    """The kernel ("precomputed" | "analytic") that runs ``geom`` for the requested iterator."""
    iterator = as_choice("iterator", iterator, ITERATORS)
    taps = geom.R * geom.S
    if iterator == "precomputed" and taps > MAX_TAPS:
        raise ValueError(f"iterator='precomputed' needs R*S <= {MAX_TAPS} filter taps (one bit "
                         f"each in a row's tap mask); got {geom.R}x{geom.S} = {taps}; use "
                         "iterator='analytic' or 'auto'")
    if iterator == "auto":
        return "precomputed" if taps <= MAX_TAPS else "analytic"
    return iterator


def krsc_weight(call: ConvCall):
    """The weight as (K, R, S, C/groups): NHWC's k order (r, s, c) reads it contiguously."""
    return call.xp.ascontiguousarray(call.weight.transpose(0, 2, 3, 1))


def run(call: ConvCall, iterator: str = "auto") -> None:
    g = call.geom
    kernel = choose_iterator(g, iterator)
    if g.groups > GRID_YZ_LIMIT:
        raise ValueError(f"implicit_gemm: groups={g.groups} exceeds the grid limit {GRID_YZ_LIMIT}")
    weight = krsc_weight(call) if call.nhwc else call.weight
    large = GEMM_TILES[call.dtype.name][0]
    blocks = ceil_div(g.gemm_m, large.block_m) * ceil_div(g.K_per_group, large.block_n) * g.groups
    tile = pick_gemm_tile(call.dtype, blocks, call.executor)
    fn = call.kernel(FAMILY, _name(kernel, call.cuda_type, cuda_bool(call.nhwc), tile))
    smem = tile.smem_bytes(call.dtype)  # dynamic; the tap table is static shared memory
    for chunk in call.chunks():
        c = chunk.geom
        grid = (ceil_div(c.gemm_m, tile.block_m), ceil_div(c.K_per_group, tile.block_n), c.groups)
        fn(grid, (tile.threads, 1, 1), [chunk.x, weight, *chunk.shape_args(),
                                        *chunk.epilogue_args()], shared_mem=smem)
