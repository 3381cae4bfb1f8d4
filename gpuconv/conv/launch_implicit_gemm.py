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

Block tiles (``pick_tile``): 128 x 128 in general, 128 pixels x 32 or 64 filters for groups of
that few filters (ResNeXt, ResNet's 64-filter layers), 64 x 64 when a wider tile would not fill
the SMs; 128 x 64 where it was measured faster (launch_common.MID_TILE_*: large CUDA-core GEMMs,
and on tensor cores before the 64 x 64 fallback). ``tile_widths="wide"`` (launcher option)
leaves the narrow tiles out.

Two multiply-accumulates (launcher option ``math``): float16 and bfloat16 run on the tensor
cores (``*_mma`` kernels, mma.m16n8k16 with float accumulators) unless ``math="cuda_cores"``;
float32 and float64 run on the CUDA cores (TF32 is not used: strict float32 products).
On the tensor cores, channels-last input with C/groups a multiple of 8 and 16-byte aligned
arrays takes ``conv2d_implicit_gemm_precomputed_mma_vec`` with the precomputed iterator: both
operands move 8 channels (16 bytes) per cp.async into tiles stored along k, VECTOR_STAGES
k-tiles of shared memory (``vector_kernel``, ``vector_tile``; sm_80 and later, as the tensor
cores' mma.m16n8k16 already is), its block tile on 4 warps or 8 (launcher option
``warp_tiles``: launch_common.vector_tile).

``math="wgmma"`` runs the same channels-last 8-channel case on Hopper's warpgroup tensor
cores instead (``conv2d_implicit_gemm_precomputed_wgmma``, kernels/conv/implicit_gemm_wgmma.cu,
a family built for sm_90a only): the picked tile's shape as a WgmmaTile of
launch_common.WGMMA_STAGES stages, on a compute capability 9.0 GPU or in the simulator;
elsewhere, or for a case the 8-channel kernel cannot run, a ValueError says why
(``wgmma_refusal``). Not chosen by "auto" until it is measured on an H100 (kernels/conv/NOTES.md,
"Warpgroup tensor cores").

How the CUDA-core tiles are filled (launcher option ``loads``, launch_common.LOADS):
"cp_async" runs ``conv2d_implicit_gemm_precomputed_async`` (float32 and float64 with the
precomputed iterator: one element per cp.async into ASYNC_STAGES stages,
kernels/common/async_gemm.cuh).
"""
from __future__ import annotations

import functools

from .._args import INT32_MAX, as_choice
from .._kernels import CUDA_TYPES, register
from .gemm_tile import GemmTile, MmaTile
from .geometry import ConvGeometry
from .launch_common import (ASYNC_DTYPES, FORWARD_LARGE_WARPS_MIN_K, GEMM_TILES,
                            MMA_NARROW_TILES, MMA_TILES, NARROW_TILES, TENSOR_CORE_DTYPES,
                            VECTOR_CHANNELS, ConvCall, async_tile, ceil_div,
                            check_gemm_grid, cuda_bool, is_aligned, pick_filter_tile,
                            uses_tensor_cores, wgmma_tile)
from .launch_common import choose_loads as common_choose_loads
from .launch_common import vector_tile as common_vector_tile
from .launch_common import wgmma_refusal as common_wgmma_refusal
from .split_k import finish_forward, forward_split, gemm_splits

ITERATORS = ("auto", "precomputed", "analytic")
# (iterator, tensor cores) -> kernel template
KERNELS = {("analytic", False): "conv2d_implicit_gemm",
           ("precomputed", False): "conv2d_implicit_gemm_precomputed",
           ("analytic", True): "conv2d_implicit_gemm_mma",
           ("precomputed", True): "conv2d_implicit_gemm_precomputed_mma"}

# The CUDA-core kernel whose tiles are filled by cp.async (loads="cp_async").
ASYNC_KERNEL = "conv2d_implicit_gemm_precomputed_async"

# kernels/common/conv_tap_table.cuh: MAX_TAPS (bits of a row's tap mask).
MAX_TAPS = 32
MAX_BLOCK_K = 32  # conv_tap_table.cuh's: the deepest k-tile of the precomputed kernels


def tiles(dtype: str, tensor_cores: bool = False) -> tuple[GemmTile | MmaTile, ...]:
    """Every tile the launcher can pick for this dtype: large, small, then the narrow ones."""
    if tensor_cores:
        return MMA_TILES + MMA_NARROW_TILES
    return GEMM_TILES[dtype] + NARROW_TILES[dtype]


def pick_tile(geom: ConvGeometry, dtype, executor: str, widths: str = "auto",
              tensor_cores: bool = False) -> GemmTile | MmaTile:
    """The block tile (launch_common.pick_filter_tile): M = N*P*Q pixels, N = K/groups."""
    return pick_filter_tile(dtype, pixels=geom.gemm_m, filters=geom.K_per_group,
                            groups=geom.groups, executor=executor, widths=widths,
                            tensor_cores=tensor_cores, mid_tile=True, gemm_k=geom.gemm_k)


# The kernel whose operands move 8 channels per load (NHWC, precomputed iterator, tensor cores),
# built for every tensor-core tile, with VECTOR_STAGES shared-memory stages.
VECTOR_KERNEL = "conv2d_implicit_gemm_precomputed_mma_vec"
VECTOR_TILES = MMA_TILES + MMA_NARROW_TILES


@functools.lru_cache(maxsize=1024)     # formatted at every launch otherwise: host time
def kernel_name(iterator: str, cuda_t: str, nhwc: bool, tile) -> str:
    """The name expression of the kernel for ``iterator`` ("analytic" | "precomputed")."""
    if isinstance(tile, MmaTile) and tile.rows_along_k:
        return f"{VECTOR_KERNEL}<{cuda_t}, {tile.template_args}>"
    if isinstance(tile, GemmTile) and tile.async_copy:
        return f"{ASYNC_KERNEL}<{cuda_t}, {cuda_bool(nhwc)}, {tile.template_args}>"
    template = KERNELS[iterator, isinstance(tile, MmaTile)]
    return f"{template}<{cuda_t}, {cuda_bool(nhwc)}, {tile.template_args}>"


def vector_shape(geom: ConvGeometry, nhwc: bool, iterator: str, tile) -> bool:
    """Whether the case has what the 8-channel kernel needs of its shape: NHWC, the precomputed
    iterator, a tensor-core tile it is built for, and C/groups a multiple of 8 (a vector never
    straddles a tap or a group)."""
    return (nhwc and iterator == "precomputed" and isinstance(tile, MmaTile)
            and tile in VECTOR_TILES and geom.C_per_group % VECTOR_CHANNELS == 0)


def vector_kernel(call: ConvCall, iterator: str, tile, weight) -> bool:
    """Whether the 8-channel kernel runs ``call`` on ``tile``: ``vector_shape``, and 16-byte
    aligned input and weights (every row then starts aligned)."""
    return (vector_shape(call.geom, call.nhwc, iterator, tile)
            and is_aligned(call.x, 16) and is_aligned(weight, 16))


def vector_tile(tile: MmaTile, gemm_k: int, warp_tiles: str = "auto") -> MmaTile:
    """launch_common.vector_tile on the forward pass's measured warp threshold."""
    return common_vector_tile(tile, gemm_k, warp_tiles, large_from_k=FORWARD_LARGE_WARPS_MIN_K)


def _instantiations(iterators, dtypes, tile_set):
    return [kernel_name(it, CUDA_TYPES[dt], nhwc, tile)
            for it in iterators for dt in dtypes for nhwc in (False, True)
            for tile in tile_set(dt)]


def _vector_instantiations(dtypes):
    return [kernel_name("precomputed", CUDA_TYPES[dt], True, vector_tile(t, 0, warps))
            for dt in dtypes for t in VECTOR_TILES for warps in ("large", "small")]


def _async_tiles(dt):
    return tuple(async_tile(t) for t in tiles(dt))


FAMILY = register(
    "conv/implicit_gemm.cu",
    name_expressions=_instantiations(("analytic", "precomputed"), GEMM_TILES, tiles)
    + _instantiations(("precomputed",), ASYNC_DTYPES, _async_tiles)
    + _instantiations(("analytic", "precomputed"), TENSOR_CORE_DTYPES,
                      lambda dt: tiles(dt, tensor_cores=True))
    + _vector_instantiations(TENSOR_CORE_DTYPES),
    hot=_instantiations(("analytic", "precomputed"), ("float32", "float16"),
                        lambda dt: (GEMM_TILES[dt][0],) + NARROW_TILES[dt])
    + _instantiations(("precomputed",), ("float32",),
                      lambda dt: tuple(async_tile(t) for t in (GEMM_TILES[dt][0],)
                                       + NARROW_TILES[dt]))
    + _instantiations(("analytic", "precomputed"), ("float16",),
                      lambda dt: (MMA_TILES[0],) + MMA_NARROW_TILES)
    + _vector_instantiations(("float16",)),
)


# The Hopper kernel (math="wgmma"): every tensor-core tile's shape (launch_common.wgmma_tile).
WGMMA_KERNEL = "conv2d_implicit_gemm_precomputed_wgmma"
WGMMA_FAMILY = register(
    "conv/implicit_gemm_wgmma.cu",
    name_expressions=[f"{WGMMA_KERNEL}<{CUDA_TYPES[dt]}, {wgmma_tile(t).template_args}>"
                      for dt in TENSOR_CORE_DTYPES for t in VECTOR_TILES],
    hot=[f"{WGMMA_KERNEL}<__half, {wgmma_tile(t).template_args}>" for t in VECTOR_TILES],
    arch="sm_90a",
)


def wgmma_refusal(call: ConvCall, iterator: str, tile, weight) -> str | None:
    """Why math="wgmma" cannot run ``call`` (None when it can): it needs what the 8-channel
    kernel needs (``vector_kernel``) and a compute capability 9.0 GPU (or the simulator)."""
    why = common_wgmma_refusal(WGMMA_FAMILY, call.executor, call.nhwc)
    if why is not None:
        return why
    if iterator != "precomputed":
        return f"runs the precomputed iterator only; got {iterator!r}"
    if call.geom.C_per_group % VECTOR_CHANNELS:
        return (f"needs C/groups a multiple of {VECTOR_CHANNELS} (8-channel copies); got "
                f"{call.geom.C_per_group}")
    if not vector_kernel(call, iterator, tile, weight):
        return "needs 16-byte aligned input and weights (8-channel copies)"
    return None


def choose_loads(call: ConvCall, iterator: str, tensor_cores: bool, loads: str = "auto") -> str:
    """launch_common.choose_loads, and a forced "cp_async" needs the precomputed iterator."""
    loads = common_choose_loads(call.dtype, loads, tensor_cores=tensor_cores)
    if loads == "cp_async" and iterator != "precomputed":
        raise ValueError("loads='cp_async' runs the precomputed iterator's kernel; got "
                         f"iterator {iterator!r} (R*S > {MAX_TAPS} filter taps, an NCHW image "
                         "past 32-bit channel offsets, or forced)")
    return loads


def precomputed_refusal(geom: ConvGeometry, nhwc: bool) -> str | None:
    """Why the precomputed iterator cannot run ``geom`` (None when it can)."""
    taps = geom.R * geom.S
    if taps > MAX_TAPS:
        return (f"needs R*S <= {MAX_TAPS} filter taps (one bit each in a row's tap mask); got "
                f"{geom.R}x{geom.S} = {taps}")
    # NCHW: the k cursor holds a channel as its element offset c * H*W in an int, and the last
    # k-tile's threads (and the cursor's final step) run up to 2 * MAX_BLOCK_K channels past
    # C/groups (conv_tap_table.cuh, PrecomputedNchwSource): past INT32_MAX such an offset
    # wraps below the channel end and a masked-out element is read.
    if nhwc:
        return None
    reach = ((geom.C_per_group + 2 * MAX_BLOCK_K) * geom.H * geom.W
             + geom.R * geom.dil_h * geom.W + geom.S * geom.dil_w)
    if reach > INT32_MAX:
        return (f"NCHW needs (C/groups + {2 * MAX_BLOCK_K}) * H * W within 32-bit offsets; got "
                f"({geom.C_per_group} + {2 * MAX_BLOCK_K}) * {geom.H} * {geom.W}")
    return None


def choose_iterator(geom: ConvGeometry, iterator: str = "auto", nhwc: bool = False) -> str:
    """The kernel ("precomputed" | "analytic") that runs ``geom`` in the layout for the
    requested iterator: "auto" is the precomputed one wherever it can run."""
    iterator = as_choice("iterator", iterator, ITERATORS)
    why = precomputed_refusal(geom, nhwc) if iterator != "analytic" else None
    if iterator == "precomputed" and why is not None:
        raise ValueError(f"iterator='precomputed' {why}; use iterator='analytic' or 'auto'")
    if iterator == "auto":
        return "precomputed" if why is None else "analytic"
    return iterator


def splits(geom: ConvGeometry, tile, dtype, tensor_cores: bool, executor: str,
           split_k="auto") -> int:
    """The k splits of the launch over ``geom`` (split_k.py; 1: no split)."""
    return gemm_splits(split_k, rows=geom.gemm_m, cols=geom.K_per_group, groups=geom.groups,
                       block_m=tile.block_m, block_n=tile.block_n, block_k=tile.block_k,
                       gemm_k=geom.C_per_group * geom.R * geom.S, dtype=dtype,
                       tensor_cores=tensor_cores, executor=executor)


def run(call: ConvCall, iterator: str = "auto", tile_widths: str = "auto",
        math: str = "auto", split_k="auto", loads: str = "auto",
        warp_tiles: str = "auto") -> None:
    g = call.geom
    iterator = choose_iterator(g, iterator, call.nhwc)
    tensor_cores = uses_tensor_cores(call.dtype, math)
    loads = choose_loads(call, iterator, tensor_cores, loads)
    check_gemm_grid("implicit_gemm", g)
    weight = call.krsc_weight() if call.nhwc else call.kcrs_weight()
    tile = pick_tile(g, call.dtype, call.executor, tile_widths, tensor_cores)
    family = FAMILY
    if math == "wgmma":
        why = wgmma_refusal(call, iterator, tile, weight)
        if why is not None:
            raise ValueError(f"math='wgmma' {why}")
        tile, family = wgmma_tile(tile), WGMMA_FAMILY
        name = f"{WGMMA_KERNEL}<{call.cuda_type}, {tile.template_args}>"
    else:
        if vector_kernel(call, iterator, tile, weight):
            tile = vector_tile(tile, g.gemm_k, warp_tiles)
        elif loads == "cp_async":
            tile = async_tile(tile)
        name = kernel_name(iterator, call.cuda_type, call.nhwc, tile)
    smem = tile.smem_bytes(call.dtype)  # dynamic; the tap table is static shared memory
    fn = call.kernel(family, name, smem)
    for chunk in call.chunks():
        c = chunk.geom
        split = forward_split(chunk, splits(c, tile, call.dtype, tensor_cores, call.executor,
                                            split_k))
        grid = (ceil_div(c.gemm_m, tile.block_m), ceil_div(c.K_per_group, tile.block_n),
                c.groups * split.splits)
        fn(grid, (tile.threads, 1, 1), [chunk.x, weight, *chunk.shape_args(),
                                        *chunk.epilogue_args(), *split.args()], shared_mem=smem)
        finish_forward(chunk, split)
