"""Launchers of the weight- and bias-gradient kernels (kernels/conv/wgrad_*.cu, bias_grad.cu).

Weight-gradient algorithms (the kernels' headers say how each works):
- "implicit_gemm": dW = dy * X with X gathered from x on the fly, split-K over N*P*Q; float16
  and bfloat16 on the tensor cores (``conv2d_wgrad_implicit_gemm_mma``) unless
  ``math="cuda_cores"``; channels-last with K/groups and C/groups multiples of 8 and 16-byte
  aligned arrays, the kernel that copies both operands 8 filters / channels at a time with
  cp.async (``conv2d_wgrad_implicit_gemm_mma_vec``, ``vector_kernel``); launcher option
  ``math="wgmma"`` runs that case on Hopper's warpgroup tensor cores
  (``conv2d_wgrad_implicit_gemm_wgmma``, a family built for sm_90a only: a compute capability
  9.0 GPU or the simulator; ``wgmma_refusal``), not chosen by "auto" until it is measured.
- "im2col_gemm": x unfolded into a column buffer per batch chunk, then a GEMM, split-K.
- "depthwise": C/groups == 1: conv2d_wgrad_depthwise_tiled (dy and x tiles in shared memory, each
  thread a run of taps in registers for its whole split; ``depthwise_tile_config``); where its
  smallest tile does not fit, NHWC 32 filters per warp (conv2d_wgrad_depthwise_nhwc), NCHW the
  direct kernel, whose one-block-per-filter layout is the depthwise one.
- "direct": one block per filter row (k, c) and split, every tap by a fixed-order block sum.
- "winograd_nonfused": 3x3 filters, stride 1, dilation 1: dW = G^T [sum over 2x2 output tiles t of
  (A dY_t A^T) (.) (B^T x_t B)] G, the 16 sums as the 1x1 weight gradient of the transformed
  tensors (the implicit GEMM above, with its split-K), per batch chunk added in chunk order.

Summation and determinism (``SplitSums`` in launch_bwd_common.py): one split of one chunk is a
plain store. Otherwise the split partials go to a workspace that conv2d_split_reduce sums in
split order, which gives the same bits on every run; only the GEMM algorithms in the default
(non-deterministic) mode add their splits with float atomics instead. The direct, depthwise and
bias kernels never use atomics.
"""
from __future__ import annotations

import math

from .._args import as_choice
from .._kernels import CUDA_TYPES, cuda_type, register
from .gemm_tile import GemmTile, MmaTile, WgmmaTile
from . import launch_winograd
from .launch_bwd_common import (GRID_YZ_LIMIT, MAX_SPLITS, SplitSums, acc_dtype, array_module,
                                batch_chunks, bool_name, ceil_div, check_weight_size,
                                choose_splits, column_buffer_refusal, column_images, contiguous,
                                i32, launch, output, pixels_per_split, shape_args, type_names)
from .launch_common import (SMEM_LIMIT, TENSOR_CORE_DTYPES, VECTOR_CHANNELS, WARP_TILES,
                            WEIGHT_GRAD_LARGE_WARPS_MIN_K, is_aligned, multiprocessor_count,
                            uses_tensor_cores, wgmma_tile)
from .launch_common import vector_tile as common_vector_tile
from .launch_common import wgmma_refusal as common_wgmma_refusal
from .launch_depthwise import WINDOW_RUN

TILE = GemmTile(block_m=64, block_n=128, block_k=8, thread_m=4, thread_n=8)
# The forward implicit GEMM's large tile, also built for the CUDA-core weight-gradient GEMMs so
# that bench/tile_sweep.py (--direction weight_grad) can time it against TILE.
WIDE_TILE = GemmTile(block_m=128, block_n=128, block_k=8, thread_m=8, thread_n=8)
# The implicit GEMM's tensor-core tile (16-bit dtypes): the same 64 x 128 block, 8 warps of 32 x 32.
MMA_TILE = MmaTile(block_m=64, block_n=128, block_k=32, warp_m=32, warp_n=32)


def vector_tile(gemm_k: int, warp_tiles: str = "auto") -> MmaTile:
    """The tensor-core tile filled 8 filters / channels per cp.async (k-major stages), on the
    warps launch_common.vector_tile picks for a GEMM of depth ``gemm_k`` (pixels per split)."""
    return common_vector_tile(MMA_TILE, gemm_k, warp_tiles, rows_along_k=False,
                              large_from_k=WEIGHT_GRAD_LARGE_WARPS_MIN_K)


DIRECT_THREADS = 256      # WGRAD_DIRECT_THREADS in wgrad_direct.cu
LANES, ROWS = 32, 8       # WGRAD_DEPTHWISE_LANES/ROWS, BIAS_GRAD_LANES/ROWS
DEPTHWISE_TILE_THREADS = 256  # WGRAD_DEPTHWISE_TILE_THREADS
# Blocks of the tiled depthwise weight gradient per SM that the splits aim for: each holds
# <= 48 KiB of shared memory and 256 threads, so four fit, and they overlap one another's staging.
DEPTHWISE_BLOCKS_PER_SM = 4
# Splits of the tiled depthwise weight gradient: more than the GEMMs' MAX_SPLITS, because its
# partial buffers are tiny (K * R * S values each) while a narrow layer has few channel blocks:
# MobileNetV2's first depthwise layer (32 channels, NHWC: one channel block) ran 64 blocks on
# the H100's 132 SMs at MAX_SPLITS (463 us, cuDNN 59). Bounded by the partial buffers' bytes.
DEPTHWISE_MAX_SPLITS = 1024
DEPTHWISE_MAX_PARTIAL_BYTES = 64 << 20
BIAS_THREADS = 256        # BIAS_GRAD_THREADS
IM2COL_THREADS = 256

_TYPES = type_names()


def _names(template: str, layouts: bool = True, tile: GemmTile | None = None) -> list[str]:
    names = []
    for t in _TYPES:
        for nhwc in ((False, True) if layouts else (None,)):
            args = [t] + ([bool_name(nhwc)] if nhwc is not None else []) + \
                   ([tile.template_args] if tile else [])
            names.append(f"{template}<{', '.join(args)}>")
    return names


_IMPLICIT_NAMES = _names("conv2d_wgrad_implicit_gemm", tile=TILE) + [
    n for n in _names("conv2d_wgrad_implicit_gemm", tile=WIDE_TILE) if "double" not in n] + [
    f"conv2d_wgrad_implicit_gemm_mma<{CUDA_TYPES[dt]}, {bool_name(nhwc)}, {MMA_TILE.template_args}>"
    for dt in TENSOR_CORE_DTYPES for nhwc in (False, True)] + [
    f"conv2d_wgrad_implicit_gemm_mma_vec<{CUDA_TYPES[dt]}, {vector_tile(0, warps).template_args}>"
    for dt in TENSOR_CORE_DTYPES for warps in ("large", "small")]
IMPLICIT_GEMM = register("conv/wgrad_implicit_gemm.cu", _IMPLICIT_NAMES, hot=_IMPLICIT_NAMES)

# Hopper's warpgroup tensor cores (math="wgmma"): the vector kernel's case, MN-major stages
# (kernels/conv/wgrad_implicit_gemm_wgmma.cu), on MMA_TILE's block where the group has at most
# 64 filters and on two warpgroups of 128 filters otherwise: the 128 x 128 block issues 2.3
# instructions per 1024 multiply-adds where 64 x 128 issues 3.5 (the copies' gathers are shared
# by twice the filters; kernels/conv/NOTES_backward.md "Warpgroup tensor cores for the weight
# gradient").
WGMMA_KERNEL = "conv2d_wgrad_implicit_gemm_wgmma"
WGMMA_TILE = wgmma_tile(MMA_TILE)
WGMMA_WIDE_TILE = WgmmaTile(128, MMA_TILE.block_n, WGMMA_TILE.stages)
_WGMMA_NAMES = [f"{WGMMA_KERNEL}<{CUDA_TYPES[dt]}, {tile.template_args}>"
                for dt in TENSOR_CORE_DTYPES for tile in (WGMMA_TILE, WGMMA_WIDE_TILE)]
WGMMA_FAMILY = register("conv/wgrad_implicit_gemm_wgmma.cu", _WGMMA_NAMES, hot=_WGMMA_NAMES,
                        arch="sm_90a")

_COLUMNS_NAMES = _names("conv2d_wgrad_gemm_columns", tile=TILE)
IM2COL_GEMM = register("conv/wgrad_im2col_gemm.cu", _names("conv2d_wgrad_im2col") + _COLUMNS_NAMES,
                       hot=_COLUMNS_NAMES)

_DIRECT_NAMES = _names("conv2d_wgrad_direct")
DIRECT = register("conv/wgrad_direct.cu", _DIRECT_NAMES, hot=_DIRECT_NAMES)

_DEPTHWISE_NAMES = (_names("conv2d_wgrad_depthwise_tiled")
                    + _names("conv2d_wgrad_depthwise_nhwc", layouts=False))
DEPTHWISE = register("conv/wgrad_depthwise.cu", _DEPTHWISE_NAMES, hot=_DEPTHWISE_NAMES)

REDUCE = register("conv/wgrad_reduce.cu", _names("conv2d_split_reduce", layouts=False))

_BIAS_NAMES = (_names("conv2d_bias_grad_nchw", layouts=False)
               + _names("conv2d_bias_grad_nhwc", layouts=False))
BIAS = register("conv/bias_grad.cu", _BIAS_NAMES, hot=_BIAS_NAMES)


def _reduce_name(dtype) -> str:
    return f"conv2d_split_reduce<{cuda_type(dtype)}>"


# --------------------------------------------------------------------------------------------
# applicability: None if the algorithm can run this case, else why not (a sentence)


def why_not(algorithm: str, geom, dtype, data_format: str) -> str | None:
    taps = geom.C_per_group * geom.R * geom.S
    if algorithm in ("implicit_gemm", "im2col_gemm"):
        if geom.groups > GRID_YZ_LIMIT:
            return f"its grid has one z slice per group and groups={geom.groups} exceeds {GRID_YZ_LIMIT}"
        if ceil_div(taps, TILE.block_n) > GRID_YZ_LIMIT:
            return f"C/groups * R * S = {taps} is too large for its grid"
    if algorithm == "im2col_gemm":
        why = column_buffer_refusal(geom)
        if why is not None:
            return why
    elif algorithm == "depthwise":
        if geom.C_per_group != 1:
            return (f"it needs a depthwise convolution (C/groups == 1), got C/groups = "
                    f"{geom.C_per_group}")
    elif algorithm == "winograd_nonfused":
        tile = launch_winograd.choose_output_tile("weight_grad", geom)
        why = launch_winograd.refusal(geom, tile)
        if why is None:
            # Its products run as this implicit GEMM (C/groups as the taps on grid.y).
            products = launch_winograd.gemm_geometry(geom, tile, 1, rows_in=geom.C, rows_out=geom.K)
            why = why_not("implicit_gemm", products, dtype, data_format)
            why = why and f"its products' GEMM: {why}"
        return why
    elif algorithm == "pointwise":
        # Runs as the implicit GEMM (see choose_weight_algorithm): for a 1x1 filter its gather
        # has no taps, so it is the plain GEMM a separate pointwise kernel would be.
        if (geom.R, geom.S) != (1, 1):
            return f"it needs a 1x1 filter, got {geom.R}x{geom.S}"
        return why_not("implicit_gemm", geom, dtype, data_format)
    return None


# --------------------------------------------------------------------------------------------
# weight gradient


class _Call:
    def __init__(self, geom, x, dy, data_format: str, executor: str, math: str = "auto",
                 warp_tiles: str = "auto"):
        self.geom, self.executor, self.math, self.warp_tiles = geom, executor, math, warp_tiles
        self.xp = array_module(executor)
        self.nhwc = data_format == "NHWC"
        self.x = contiguous(self.xp, x)
        self.dy = contiguous(self.xp, dy)
        self.dtype = self.dy.dtype
        self.t = cuda_type(self.dtype)
        check_weight_size(geom)
        self.chunks = self._chunks()

    def _chunks(self, max_images: int | None = None) -> list[tuple[int, int]]:
        g = self.geom
        return batch_chunks(g.N, max(g.C * g.H * g.W, g.K * g.P * g.Q), max_images=max_images,
                            what="one image of x or of grad_output")

    def limit_chunks(self, max_images: int) -> None:
        self.chunks = self._chunks(max_images)

    @property
    def chunk_pixels(self) -> int:
        return max(n1 - n0 for n0, n1 in self.chunks) * self.geom.P * self.geom.Q

    @property
    def weight_elements(self) -> int:
        return math.prod(self.geom.weight_shape)

    def sums(self, splits: int, allow_atomics: bool) -> SplitSums:
        return SplitSums(self.xp, self.geom.weight_shape, self.dtype, splits, len(self.chunks),
                         allow_atomics, self.executor, REDUCE, _reduce_name(self.dtype))

    def name(self, template: str, tile: bool = False) -> str:
        args = [self.t, bool_name(self.nhwc)] + ([TILE.template_args] if tile else [])
        return f"{template}<{', '.join(args)}>"


def _gemm_grid_splits(call: _Call, block=TILE) -> tuple[tuple[int, int], int]:
    """The grid's (filter tiles, tap tiles) of a block of ``block``'s shape, and the splits."""
    g = call.geom
    tiles_xy = (ceil_div(g.K_per_group, block.block_m),
                ceil_div(g.C_per_group * g.R * g.S, block.block_n))
    splits = choose_splits(call.executor, tiles_xy[0] * tiles_xy[1] * g.groups, call.chunk_pixels,
                           max_splits=min(MAX_SPLITS, GRID_YZ_LIMIT // g.groups),
                           sum_elements=call.weight_elements)
    return tiles_xy, splits


def vector_kernel(call: _Call, tensor_cores: bool) -> bool:
    """Whether conv2d_wgrad_implicit_gemm_mma_vec runs the call: tensor cores, channels-last,
    K/groups and C/groups multiples of 8 (a vector never straddles a group or a tap), x and dy
    16-byte aligned."""
    g = call.geom
    return (tensor_cores and call.nhwc and g.K_per_group % VECTOR_CHANNELS == 0
            and g.C_per_group % VECTOR_CHANNELS == 0
            and is_aligned(call.x, 16) and is_aligned(call.dy, 16))


def wgmma_refusal(call: _Call) -> str | None:
    """Why math="wgmma" cannot run ``call`` (None when it can): it needs what the vector
    kernel needs (``vector_kernel``) and a compute capability 9.0 GPU (or the simulator)."""
    why = common_wgmma_refusal(WGMMA_FAMILY, call.executor, call.nhwc)
    if why is not None:
        return why
    g = call.geom
    for what, channels in (("K/groups", g.K_per_group), ("C/groups", g.C_per_group)):
        if channels % VECTOR_CHANNELS:
            return (f"needs {what} a multiple of {VECTOR_CHANNELS} (8-channel copies of x and "
                    f"grad_output); got {channels}")
    for what, array in (("input", call.x), ("grad_output", call.dy)):
        if not is_aligned(array, 16):
            return f"needs a 16-byte aligned {what} (8-channel copies)"
    return None


def wgmma_block(geom) -> WgmmaTile:
    """The warpgroup tile of math="wgmma": 64 filters for groups of at most 64, else 128."""
    return WGMMA_TILE if geom.K_per_group <= WGMMA_TILE.block_m else WGMMA_WIDE_TILE


def implicit_gemm(call: _Call, deterministic: bool):
    g = call.geom
    tensor_cores = uses_tensor_cores(call.dtype, call.math)
    block = TILE
    if call.math == "wgmma":
        why = wgmma_refusal(call)
        if why is not None:
            raise ValueError(f"math='wgmma' {why}")
        block = wgmma_block(g)
    (tiles_m, tiles_n), splits = _gemm_grid_splits(call, block)
    sums = call.sums(splits, allow_atomics=not deterministic)
    dw, ws = sums.pointers
    family = IMPLICIT_GEMM
    # The other kernels have TILE's block shape on every tile: one grid and split choice.
    if call.math == "wgmma":
        tile, family = block, WGMMA_FAMILY
        name = f"{WGMMA_KERNEL}<{call.t}, {tile.template_args}>"
    elif vector_kernel(call, tensor_cores):
        tile = vector_tile(pixels_per_split(call.chunk_pixels, splits, MMA_TILE.block_k),
                           call.warp_tiles)
        name = f"conv2d_wgrad_implicit_gemm_mma_vec<{call.t}, {tile.template_args}>"
    else:
        tile = MMA_TILE if tensor_cores else TILE
        template = "conv2d_wgrad_implicit_gemm" + ("_mma" if tensor_cores else "")
        name = f"{template}<{call.t}, {bool_name(call.nhwc)}, {tile.template_args}>"
    smem = tile.smem_bytes(call.dtype)  # the main loop's tiles, then the staged epilogue
    for chunk, (n0, n1) in enumerate(call.chunks):
        pps = pixels_per_split((n1 - n0) * g.P * g.Q, splits, tile.block_k)
        launch(family, name, call.executor, (tiles_m, tiles_n, g.groups * splits),
               (tile.threads, 1, 1),
               (call.x[n0:n1], call.dy[n0:n1], *shape_args(g, n1 - n0), i32(splits), i32(pps),
                dw, ws, sums.mode(chunk)), shared_mem=smem)
    return sums.finish()


def im2col_gemm(call: _Call, deterministic: bool):
    g = call.geom
    rows = g.C * g.R * g.S
    pq = g.P * g.Q
    call.limit_chunks(column_images(g, call.dtype.itemsize))  # the columns are in x's dtype
    (tiles_m, tiles_n), splits = _gemm_grid_splits(call)
    sums = call.sums(splits, allow_atomics=not deterministic)
    dw, ws = sums.pointers
    columns = output(call.xp, (rows * call.chunk_pixels,), call.dtype, call.executor)
    smem = TILE.smem_bytes(call.dtype)  # the main loop's tiles, then the staged epilogue
    unfold = call.name("conv2d_wgrad_im2col")
    gemm = call.name("conv2d_wgrad_gemm_columns", tile=True)
    for chunk, (n0, n1) in enumerate(call.chunks):
        n_images = n1 - n0
        ldc = n_images * pq
        launch(IM2COL_GEMM, unfold, call.executor,
               (ceil_div(ldc, IM2COL_THREADS), min(g.C, GRID_YZ_LIMIT), 1), (IM2COL_THREADS, 1, 1),
               (call.x[n0:n1], columns, i32(ldc), i32(n_images), *shape_args(g, n_images)))
        pps = pixels_per_split(ldc, splits, TILE.block_k)
        launch(IM2COL_GEMM, gemm, call.executor, (tiles_m, tiles_n, g.groups * splits),
               (TILE.threads, 1, 1),
               (call.dy[n0:n1], columns, i32(ldc), i32(n_images), *shape_args(g, n_images),
                i32(splits), i32(pps), dw, ws, sums.mode(chunk)), shared_mem=smem)
    return sums.finish()


def direct(call: _Call, deterministic: bool):
    g = call.geom
    rows = g.K * g.C_per_group
    splits = choose_splits(call.executor, rows, call.chunk_pixels,
                           max_splits=min(MAX_SPLITS, GRID_YZ_LIMIT),
                           sum_elements=call.weight_elements)
    sums = call.sums(splits, allow_atomics=False)
    dw, ws = sums.pointers
    name = call.name("conv2d_wgrad_direct")
    for chunk, (n0, n1) in enumerate(call.chunks):
        pps = pixels_per_split((n1 - n0) * g.P * g.Q, splits, 1)
        launch(DIRECT, name, call.executor, (rows, splits, 1), (DIRECT_THREADS, 1, 1),
               (call.x[n0:n1], call.dy[n0:n1], *shape_args(g, n1 - n0), i32(splits), i32(pps),
                dw, ws, sums.mode(chunk)))
    return sums.finish()


def _odd(elements: int) -> int:
    return elements | 1


def depthwise_tile_smem_bytes(geom, dtype, tile_p: int, tile_q: int, channel_tile: int) -> int:
    """wgrad_depthwise.cu's dynamic shared memory: the x and dy tiles with their odd pitches, or
    the parts' sums (THREADS * RUN accumulators) if more."""
    g = geom
    run_taps = ceil_div(g.S, WINDOW_RUN) * WINDOW_RUN
    x_rows = (tile_p - 1) * g.stride_h + (g.R - 1) * g.dil_h + 1
    x_cols = max(tile_q + run_taps, (tile_q - 1) * g.stride_w + (run_taps - 1) * g.dil_w + 1)
    staged = channel_tile * (_odd(x_rows * _odd(x_cols))
                             + (g.K // g.C) * _odd(tile_p * _odd(tile_q)))
    return max(staged, DEPTHWISE_TILE_THREADS * WINDOW_RUN) * acc_dtype(dtype).itemsize


def depthwise_tile_config(geom, dtype, nhwc: bool) -> tuple[int, int, int, int]:
    """(tile_p, tile_q, channel_tile, parts) of conv2d_wgrad_depthwise_tiled.

    A thread owns one tap item (filter, filter row, run of WINDOW_RUN taps): multiplier * R *
    ceil(S / RUN) items per channel. NHWC: up to 32 filters per block (a warp's worth along the
    contiguous dimension); NCHW: channels for about 8 parts of the block's rows. ``parts``: how
    many thread groups split the tile rows, as many as the block's 256 threads hold and the tile
    has rows. Tiles: up to 64 columns (a row split evenly), up to 16 rows; shrunk to SMEM_LIMIT
    by rows (down to the parts or 4), columns (down to 16), channels, then anything.
    """
    g = geom
    multiplier = g.K // g.C
    per_channel = multiplier * g.R * ceil_div(g.S, WINDOW_RUN)
    threads = DEPTHWISE_TILE_THREADS
    if nhwc:
        ct = min(g.C, max(1, LANES // multiplier), max(1, threads // per_channel))
    else:
        ct = min(g.C, max(1, threads // (per_channel * 8)))

    def parts_for(ct: int) -> int:
        return max(1, threads // (ct * per_channel))

    parts = parts_for(ct)
    tile_q = ceil_div(g.Q, ceil_div(g.Q, 64))
    tile_p = min(g.P, max(parts, 16))
    while depthwise_tile_smem_bytes(g, dtype, tile_p, tile_q, ct) > SMEM_LIMIT:
        if tile_p > max(parts, 4):
            tile_p = max(max(parts, 4), tile_p // 2)
        elif tile_q > 16:
            tile_q = ceil_div(tile_q, 2)
        elif ct > 1:
            ct //= 2
            parts = parts_for(ct)
        elif tile_p > 1:
            tile_p //= 2
        elif tile_q > 1:
            tile_q = ceil_div(tile_q, 2)
        else:
            break  # one channel, one output: its x rows alone are what does not fit
    return tile_p, tile_q, ct, min(parts, tile_p)  # a part per row at most


def depthwise_tile_refusal(geom, dtype, nhwc: bool) -> str | None:
    """Why conv2d_wgrad_depthwise_tiled cannot run ``geom`` (None when it can)."""
    config = depthwise_tile_config(geom, dtype, nhwc)
    smem = depthwise_tile_smem_bytes(geom, dtype, *config[:3])
    if smem > SMEM_LIMIT:
        return f"its smallest tile needs {smem} bytes of shared memory (limit {SMEM_LIMIT})"
    return None


def depthwise(call: _Call, deterministic: bool, variant: str = "auto"):
    """``variant``: "tiled" (conv2d_wgrad_depthwise_tiled), "fallback" (the kernels for a tile
    that does not fit), or "auto": the tiled kernel wherever it fits (tests force the others)."""
    if variant == "tiled" or (variant == "auto"
                              and depthwise_tile_refusal(call.geom, call.dtype, call.nhwc) is None):
        return depthwise_tiled(call)
    if not call.nhwc:
        return direct(call, deterministic)
    g = call.geom
    lanes_blocks = ceil_div(g.K, LANES)
    splits = choose_splits(call.executor, lanes_blocks, call.chunk_pixels,
                           max_splits=min(MAX_SPLITS, GRID_YZ_LIMIT),
                           sum_elements=call.weight_elements)
    sums = call.sums(splits, allow_atomics=False)
    dw, ws = sums.pointers
    name = f"conv2d_wgrad_depthwise_nhwc<{call.t}>"
    for chunk, (n0, n1) in enumerate(call.chunks):
        pps = pixels_per_split((n1 - n0) * g.P * g.Q, splits, 1)
        launch(DEPTHWISE, name, call.executor, (lanes_blocks, splits, 1), (LANES, ROWS, 1),
               (call.x[n0:n1], call.dy[n0:n1], *shape_args(g, n1 - n0), i32(splits), i32(pps),
                dw, ws, sums.mode(chunk)))
    return sums.finish()


def depthwise_tiled(call: _Call):
    g = call.geom
    tile_p, tile_q, ct, parts = depthwise_tile_config(g, call.dtype, call.nhwc)
    smem = depthwise_tile_smem_bytes(g, call.dtype, tile_p, tile_q, ct)
    tap_items = ct * (g.K // g.C) * g.R * ceil_div(g.S, WINDOW_RUN)
    tap_chunks = 1 if parts > 1 else ceil_div(tap_items, DEPTHWISE_TILE_THREADS)
    blocks_x = ceil_div(g.C, ct) * tap_chunks
    tiles_image = ceil_div(g.P, tile_p) * ceil_div(g.Q, tile_q)
    tiles = max(n1 - n0 for n0, n1 in call.chunks) * tiles_image
    wanted = ceil_div(DEPTHWISE_BLOCKS_PER_SM * multiprocessor_count(call.executor), blocks_x)
    partial_bytes = g.K * g.R * g.S * acc_dtype(call.dtype).itemsize
    max_splits = min(DEPTHWISE_MAX_SPLITS, DEPTHWISE_MAX_PARTIAL_BYTES // partial_bytes,
                     GRID_YZ_LIMIT)
    splits = max(1, min(tiles, wanted, max_splits))
    tiles_per_split = ceil_div(tiles, splits)
    splits = ceil_div(tiles, tiles_per_split)   # none left without a tile in the largest chunk
    sums = call.sums(splits, allow_atomics=False)
    dw, ws = sums.pointers
    name = call.name("conv2d_wgrad_depthwise_tiled")
    for chunk, (n0, n1) in enumerate(call.chunks):
        launch(DEPTHWISE, name, call.executor, (blocks_x, splits, 1),
               (DEPTHWISE_TILE_THREADS, 1, 1),
               (call.x[n0:n1], call.dy[n0:n1], i32(tile_p), i32(tile_q), i32(ct), i32(parts),
                i32(tiles_per_split), *shape_args(g, n1 - n0), dw, ws, sums.mode(chunk)),
               shared_mem=smem)
    return sums.finish()


def winograd(call: _Call, deterministic: bool):
    g = call.geom
    m = launch_winograd.choose_output_tile("weight_grad", g)   # why_not checked this tile
    acc = acc_dtype(call.dtype)
    images = launch_winograd.images_per_chunk(g, m, acc.itemsize)
    v = launch_winograd.workspace(call.xp, g, m, g.C, images, acc, call.executor)
    z = launch_winograd.workspace(call.xp, g, m, g.K, images, acc, call.executor)
    data_format = "NHWC" if call.nhwc else "NCHW"
    du = None
    for n0 in range(0, g.N, images):
        n1 = min(n0 + images, g.N)
        vv = launch_winograd.transform_tiles("conv2d_winograd_input_transform", call.x[n0:n1], v,
                                             m, g.C, g, n1 - n0, call.nhwc, call.executor)
        zz = launch_winograd.transform_tiles("conv2d_winograd_grad_output_transform",
                                             call.dy[n0:n1], z, m, g.K, g, n1 - n0, call.nhwc,
                                             call.executor)
        tiles = (n1 - n0) * launch_winograd.tiles_per_image(g, m)
        products = launch_winograd.gemm_geometry(g, m, tiles, rows_in=g.C, rows_out=g.K)
        part = implicit_gemm(_Call(products, vv, zz, data_format, call.executor), deterministic)
        du = part if du is None else du + part
    return launch_winograd.filter_gradient(call.xp, du, call.x, call.dy, g, m, call.nhwc,
                                           call.executor)


RUNNERS = {"implicit_gemm": implicit_gemm, "im2col_gemm": im2col_gemm, "direct": direct,
           "depthwise": depthwise, "winograd_nonfused": winograd}


def run(algorithm: str, geom, x, dy, data_format: str, deterministic: bool, executor: str,
        math: str = "auto", warp_tiles: str = "auto"):
    """dw (K, C/groups, R, S) for an algorithm the caller has checked (``why_not`` is None).
    ``math`` ("auto" | "cuda_cores" | "tensor_cores" | "wgmma"): implicit_gemm's
    multiply-accumulate (``wgmma_refusal`` says where "wgmma" runs);
    ``warp_tiles`` ("auto" | "large" | "small"): the warps of its 8-channel tensor-core tile
    (``vector_tile``)."""
    call = _Call(geom, x, dy, data_format, executor, math,
                 as_choice("warp_tiles", warp_tiles, WARP_TILES))
    return RUNNERS[algorithm](call, deterministic)


# --------------------------------------------------------------------------------------------
# bias gradient


def bias_grad(dy, data_format: str, executor: str):
    """db[k] = dy summed over every axis but the channels; always deterministic."""
    xp = array_module(executor)
    dy = contiguous(xp, dy)
    nhwc = data_format == "NHWC"
    if nhwc:
        n, p, q, k = dy.shape
    else:
        n, k, p, q = dy.shape
    pq = p * q
    chunks = batch_chunks(n, k * pq, what="one image of grad_output")
    blocks = ceil_div(k, LANES) if nhwc else k
    pixels = max(n1 - n0 for n0, n1 in chunks) * pq
    splits = choose_splits(executor, blocks, pixels, max_splits=min(MAX_SPLITS, GRID_YZ_LIMIT),
                           sum_elements=k)
    sums = SplitSums(xp, (k,), dy.dtype, splits, len(chunks), False, executor, REDUCE,
                     _reduce_name(dy.dtype))
    db, ws = sums.pointers
    t = cuda_type(dy.dtype)
    for chunk, (n0, n1) in enumerate(chunks):
        pps = pixels_per_split((n1 - n0) * pq, splits, 1)
        args = (dy[n0:n1], i32(n1 - n0), i32(k), i32(pq), i32(pps), db, ws, sums.mode(chunk))
        if nhwc:
            launch(BIAS, f"conv2d_bias_grad_nhwc<{t}>", executor, (blocks, splits, 1),
                   (LANES, ROWS, 1), args)
        else:
            launch(BIAS, f"conv2d_bias_grad_nchw<{t}>", executor, (blocks, splits, 1),
                   (BIAS_THREADS, 1, 1), args)
    return sums.finish()
