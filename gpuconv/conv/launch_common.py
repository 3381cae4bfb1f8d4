"""What every forward-convolution launcher shares: the prepared call and its kernel arguments.

A ``ConvCall`` is one validated ``conv2d`` with its arrays made ready for the kernels (contiguous
input, bias and residual; filters the kernels read in either order, ``kcrs_weight`` and
``krsc_weight``; an output target the kernels can address), plus the
arguments every conv kernel takes in the same order (kernels/common/conv_shape.cuh and
epilogue.cuh): the shape (one struct of 16 ints), then out, its (n, k, pixel) strides, bias,
residual, its strides, and the epilogue flags.

32-bit indexing: kernels compute offsets in ``int``. ``ConvCall.chunks`` splits the batch so
that no launch addresses ``INDEX_LIMIT`` or more elements of any tensor (the input, the whole
buffer a channel-sliced ``out`` lives in, the residual); a single image, or a weight, too large
for that is refused with a ValueError rather than computed wrongly.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from .._args import as_choice
from .._arrays import (copy_for_kernels, dtype_name, is_aligned,  # noqa: F401 (re-exported)
                       is_element_aligned, is_kernel_ready)
from .._fast_divmod import decoder_args  # noqa: F401 (the conv launchers import it from here)
from .._kernels import cuda_type
from .._loader import builds_on_device, get_function
from .._plans import derived, empty
from ..layout.launch_transpose import permuted
from .gemm_tile import GemmTile, MmaTile, WgmmaTile
from .geometry import ConvGeometry, is_channel_slice_of_contiguous

# Offsets stay below this in every launch; the 2^20 headroom covers what a tile overhangs the
# tensor by (a block's first row plus its tile), so no intermediate index overflows either.
INDEX_LIMIT = 2 ** 31 - 2 ** 20

# Dynamic shared memory a kernel may use without a per-function opt-in on every GPU since sm_70.
SMEM_LIMIT = 48 * 1024

# Grid y and z dimensions are limited to 65535 blocks.
GRID_YZ_LIMIT = 65535
# The narrowest side of any forward GEMM tile (GEMM_TILES, the narrow and MMA tiles below).
NARROWEST_GEMM_TILE = 32


def gemm_grid_refusal(geom) -> str | None:
    """Why the forward GEMM launchers (pointwise, implicit_gemm, im2col_gemm and winograd's
    products) cannot grid ``geom``: the filters of a group go on grid.y in tiles of 32 to 128 and
    the groups on grid.z, each axis at most 65535 blocks (a launch error on a GPU). Judged with
    the narrowest tile, whichever the picker would take: such layers (millions of filters or
    more than 65535 groups) run on the direct kernel instead."""
    if geom.groups > GRID_YZ_LIMIT:
        return f"its grid has one z slice per group and groups={geom.groups} exceeds {GRID_YZ_LIMIT}"
    if ceil_div(geom.K_per_group, NARROWEST_GEMM_TILE) > GRID_YZ_LIMIT:
        return (f"its grid has K/groups / {NARROWEST_GEMM_TILE} y blocks and K/groups="
                f"{geom.K_per_group} makes more than {GRID_YZ_LIMIT}")
    return None


def check_gemm_grid(family: str, geom) -> None:
    """gemm_grid_refusal as the GEMM launchers' own guard (the fronts refuse such layers first)."""
    why = gemm_grid_refusal(geom)
    if why is not None:
        raise ValueError(f"{family}: {why}")

# Bits of the kernels' `epilogue` argument (kernels/common/epilogue.cuh).
EPILOGUE_BIAS = 1
EPILOGUE_RESIDUAL = 2
EPILOGUE_ACTIVATION_SHIFT = 2
ACTIVATION_CODES = {None: 0, "relu": 1, "tanh": 2, "sigmoid": 3}


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def round_up(a: int, b: int) -> int:
    return ceil_div(a, b) * b


def cuda_bool(flag: bool) -> str:
    return "true" if flag else "false"


# Per dtype: the large tile (8x8 accumulators per thread) and the small one for problems that
# would fill too few blocks. fp64 halves the per-thread tile: 64 double accumulators would not
# leave registers for the fragments.
GEMM_TILES = {
    "float16": (GemmTile(128, 128, 8, 8, 8), GemmTile(64, 64, 8, 4, 4)),
    "bfloat16": (GemmTile(128, 128, 8, 8, 8), GemmTile(64, 64, 8, 4, 4)),
    "float32": (GemmTile(128, 128, 8, 8, 8), GemmTile(64, 64, 8, 4, 4)),
    "float64": (GemmTile(64, 64, 8, 4, 4), GemmTile(32, 32, 8, 4, 4)),
}


def gemm_tiles(dtype) -> tuple[GemmTile, GemmTile]:
    """``dtype``: a dtype or its name."""
    return GEMM_TILES[dtype if isinstance(dtype, str) else dtype_name(dtype)]


# Tiles narrower along the filters for groups of at most 64 filters (written pixels x filters;
# the launchers whose GEMM puts the filters in M use them transposed): ResNeXt-50 32x4d has 32
# per group in layer4, ResNet-50 64 in its conv2_x layers, MobileNetV2's 1x1 projections 16-64,
# where the large tile's 128 filter columns are mostly idle. 128 threads each. An operand
# element loaded into the tile now feeds 32 or 64 FMAs instead of 128 (kernels/conv/NOTES.md:
# "Narrow tiles"). fp64's large tile is already 64 wide.
_NARROW = (GemmTile(128, 32, 8, 8, 4), GemmTile(128, 64, 8, 8, 8))
NARROW_TILES = {"float16": _NARROW, "bfloat16": _NARROW, "float32": _NARROW,
                "float64": (GemmTile(64, 32, 8, 4, 4),)}
# tile_widths= of the launchers that use them: "wide" leaves the narrow tiles out (what they
# did before the narrow tiles existed: benchmarks measure the difference).
TILE_WIDTHS = ("auto", "wide")


def narrow_tiles(dtype, *, filters_along_m: bool = False) -> tuple[GemmTile, ...]:
    """``dtype``: a dtype or its name ("bfloat16" has a NumPy dtype only with ml_dtypes)."""
    tiles = NARROW_TILES[dtype if isinstance(dtype, str) else dtype_name(dtype)]
    return tuple(t.transposed() for t in tiles) if filters_along_m else tiles


# Tensor-core tiles (kernels/common/mma_gemm.cuh: mma.m16n8k16, float accumulators) for the
# 16-bit dtypes, in the block shapes of the CUDA-core ones: large and small, then the narrow.
# 256 threads (8 warps; the 8-channel kernels also build them on 4: vector_tile below);
# k-tiles of 32 (two k16 steps per barrier).
# Register counts and the choice of warp tiles: kernels/conv/NOTES.md "Tensor cores".
TENSOR_CORE_DTYPES = ("float16", "bfloat16")
MMA_TILES = (MmaTile(128, 128, 32, 64, 32), MmaTile(64, 64, 32, 32, 16))
MMA_NARROW_TILES = (MmaTile(128, 32, 32, 32, 16), MmaTile(128, 64, 32, 32, 32))
# The cp.async kernels (*_mma_vec): 8 16-bit elements per 16-byte copy, so the channels (or
# filters) a vector covers must come in multiples of 8 per group; 4 shared-memory stages (3
# k-tiles in flight: kernels/conv/NOTES.md "Asynchronous copies").
VECTOR_CHANNELS = 8
VECTOR_STAGES = 4
# The warps of those kernels' block tiles (launcher option warp_tiles): "small", the 8 warps of
# MMA_TILES / launch_bwd_data.MMA_TILE, or "large", the same block on 4 warps of twice the warp
# tile (LARGE_WARP_TILES, CUTLASS's Ampere shapes: 64 x 64 warps in 128 x 128). A larger warp
# tile reads each A and B fragment from shared memory for more mma: per block and k-tile the
# ldmatrix reads fall by a third to a quarter and the issued instructions by a quarter to a
# half (offline SASS), where shared-memory bandwidth bounded the 8-warp tiles (kernels/conv/
# NOTES.md "Four warps per tensor-core tile"). "auto": large from a GEMM k of ``large_from_k``
# on (the 4 warps' epilogue hands out twice the outputs per thread: short-k layers keep 8
# warps), never where it is None. Each pass's threshold is measured (H100, ResNet-50 b32 fp16
# NHWC, kernels/conv/NOTES.md "Session 48 on the H100"): the forward's in session 47's tile
# sweep (8 warps 6-10 % faster at k = 256-512, the two even at 1024, 4 warps ahead by 3-10 %
# from 2048); the data gradient keeps 8 warps at every depth (session 48: ahead on 21 of 23
# layers, by up to 14 %, and 10 % at k = 4608; 4 warps ahead by 1-2 % on two); the weight
# gradient's k is the pixels per split, always >= 256 on ResNet-50, where 4 warps won 13 of 23
# layers by up to 20 % (8 warps 7 of 23, the 56x56 layers by 3-10 %, one by 17 %).
WARP_TILES = ("auto", "large", "small")
LARGE_WARP_TILES = {(128, 128): (64, 64), (128, 64): (64, 32), (64, 64): (32, 32),
                    (128, 32): (32, 32), (64, 128): (32, 64)}
FORWARD_LARGE_WARPS_MIN_K = 1024
DATA_GRAD_LARGE_WARPS_MIN_K = None
WEIGHT_GRAD_LARGE_WARPS_MIN_K = 256


def vector_tile(tile: MmaTile, gemm_k: int, warp_tiles: str = "auto", *,
                rows_along_k: bool = True, large_from_k: int | None) -> MmaTile:
    """The 8-channel kernels' version of ``tile`` (an 8-warp MmaTile): filled by cp.async into
    VECTOR_STAGES stages, stored along k (MmaTileK) or k-major (``rows_along_k=False``:
    MmaTileAsync), on the warps ``warp_tiles`` names for a GEMM of depth ``gemm_k`` ("auto":
    4 warps from ``large_from_k`` on, 8 at every depth where it is None)."""
    warp_tiles = as_choice("warp_tiles", warp_tiles, WARP_TILES)
    if warp_tiles == "auto":
        large = large_from_k is not None and gemm_k >= large_from_k
    else:
        large = warp_tiles == "large"
    return _vector_tile(tile, large, rows_along_k)


@functools.lru_cache(maxsize=64)    # asked at every launch: two dataclass copies are ~4 us
def _vector_tile(tile: MmaTile, large_warps: bool, rows_along_k: bool) -> MmaTile:
    if large_warps:
        warp_m, warp_n = LARGE_WARP_TILES[tile.block_m, tile.block_n]
        tile = dataclasses.replace(tile, warp_m=warp_m, warp_n=warp_n)
    return dataclasses.replace(tile, rows_along_k=rows_along_k, stages=VECTOR_STAGES,
                               async_copy=True)


# The CUDA-core tiles filled by cp.async, one element per copy (kernels/common/async_gemm.cuh):
# 4 shared-memory stages, 3 k-tiles of 8 in flight (CUTLASS's Ampere SIMT sgemm keeps 4-5), for
# float32 and float64 (a copy does not convert the 16-bit types to the float tiles). loads= of
# the implicit GEMM and pointwise launchers: "registers" (two stages, the next k-tile held in
# registers), "cp_async", or "auto": cp.async where the register-staged kernel's loads wait out
# their latency in every k-tile (ptxas sinks them to their stores: the NHWC pointwise kernels),
# registers elsewhere until the H100 has timed both (kernels/conv/NOTES.md "cp.async for the
# CUDA-core tiles").
ASYNC_STAGES = 4
ASYNC_DTYPES = ("float32", "float64")
LOADS = ("auto", "registers", "cp_async")


@functools.lru_cache(maxsize=64)
def async_tile(tile: GemmTile) -> GemmTile:
    """The cp.async version of a register-staged CUDA-core tile: ASYNC_STAGES deep."""
    return dataclasses.replace(tile, stages=ASYNC_STAGES, async_copy=True)


def choose_loads(dtype, loads: str = "auto", *, tensor_cores: bool = False,
                 auto_async: bool = False) -> str:
    """How a launcher fills its CUDA-core tiles ("registers" | "cp_async") for the requested
    ``loads``; "auto" is "cp_async" when the launcher says so (``auto_async``) and ``dtype``
    can be copied. A forced "cp_async" that cannot run ``dtype`` is a ValueError saying why."""
    loads = as_choice("loads", loads, LOADS)
    name = dtype if isinstance(dtype, str) else dtype_name(dtype)
    copyable = not tensor_cores and name in ASYNC_DTYPES
    if loads == "auto":
        return "cp_async" if auto_async and copyable else "registers"
    if loads == "cp_async" and not copyable:
        raise ValueError(f"loads='cp_async' copies float32 or float64 elements into CUDA-core "
                         f"tiles; got {name} on {'tensor' if tensor_cores else 'CUDA'} cores "
                         "(the 16-bit CUDA-core tiles convert on the way in; the tensor-core "
                         "kernels copy 8-channel vectors where they can)")
    return loads


# math= of the implicit GEMM's launchers (forward, data and weight gradients): "auto" takes the
# tensor cores for 16-bit dtypes. "wgmma": Hopper's warpgroup tensor-core instructions, in their
# channels-last 8-channel kernels (each launcher's wgmma_refusal says where they run).
MATHS = ("auto", "cuda_cores", "tensor_cores", "wgmma")


def uses_tensor_cores(dtype, math: str = "auto") -> bool:
    """Whether a GEMM launcher runs ``dtype`` on the tensor-core tiles for ``math``."""
    math = as_choice("math", math, MATHS)
    name = dtype_name(dtype) if not isinstance(dtype, str) else dtype
    if math in ("tensor_cores", "wgmma") and name not in TENSOR_CORE_DTYPES:
        raise ValueError(f"math={math!r} needs float16 or bfloat16 operands (the "
                         f"tensor-core tiles multiply 16-bit values); got {name}")
    return math != "cuda_cores" and name in TENSOR_CORE_DTYPES


# The Hopper kernels' stages (math="wgmma"). Their copies run three k-tiles ahead of the one
# multiplied, as the mma.sync kernels' VECTOR_STAGES = 4 do: one stage more because one
# k-tile's wgmma is still reading while the next is issued (kernels/common/wgmma_gemm.cuh
# refills a stage two k-tiles after it was read).
WGMMA_STAGES = 5


def wgmma_tile(tile: MmaTile) -> WgmmaTile:
    """The warpgroup tile of a tensor-core tile the pickers chose (the same block shape)."""
    return WgmmaTile(tile.block_m, tile.block_n, WGMMA_STAGES)


def wgmma_refusal(family, executor: str, nhwc: bool) -> str | None:
    """What every wgmma launch needs (None where it has it; the launchers' wgmma_refusal add
    their kernel's own conditions): the kernels of ``family`` (built for an arch-specific
    target) run in the simulator anywhere, with CuPy on a GPU of that compute capability only;
    their 8-channel copies read channels-last operands."""
    if executor == "cupy" and not builds_on_device(family):
        import cupy
        return (f"needs a compute capability {family.compute_capability} GPU (Hopper: wgmma is "
                f"an {family.arch} instruction); this device has "
                f"{cupy.cuda.Device().compute_capability}")
    if not nhwc:
        return "runs channels-last (data_format='NHWC') operands only"
    return None


# The SM count the simulator plans grids for (an H100 SXM), so that it launches the grids a GPU
# of the target class would get.
SIMULATED_SMS = 132


@functools.lru_cache(maxsize=None)
def _device_multiprocessors(device_id: int) -> int:
    import cupy
    # Read once per device: Device.attributes queries every attribute (~100 driver calls), host
    # time that would otherwise land inside every call.
    return int(cupy.cuda.Device(device_id).attributes["MultiProcessorCount"])


def multiprocessor_count(executor: str) -> int:
    """SMs of the current device (the simulator counts as an H100's 132: it only shapes grids)."""
    if executor == "cupy":
        import cupy
        return _device_multiprocessors(cupy.cuda.runtime.getDevice())
    return SIMULATED_SMS


# The 128 x 64 tile's place in the forward implicit GEMM's choice (measured, bench/tile_sweep.py
# on an H100, ResNet-50 batch 32: kernels/conv/NOTES.md "First measurements on the H100"): on
# CUDA cores it replaces the large tile when the GEMM has at least MID_TILE_PIXELS rows and the
# 128 x 64 blocks make at least MID_TILE_WAVES waves of one block per SM (the large SIMT tile
# holds one block per SM: 141 registers x 256 threads); on tensor cores it comes before the
# small tile when the large one's blocks do not fill the SMs but its own do.
MID_TILE_PIXELS = 4096
MID_TILE_WAVES = 2
# On the tensor cores a GEMM of at least LONG_K_LARGE_TILE k (per group) keeps the large tile
# even when its blocks do not fill the SMs (forward, ``mid_tile``): measured on the H100
# (bench/tile_sweep.py, ResNet-50 b32 fp16 NHWC, session 47; kernels/conv/NOTES.md "Session 47
# on the H100"), 52 blocks of 128 x 128 over k = 4608 run in 61 us where 200 of 64 x 64 take
# 88 us and 98 over k = 2304 in 56 us where 196 of 128 x 64 take 70: the small tiles' mma per
# shared-memory read, not the idle SMs, bound these layers (split-K still spreads the k).
LONG_K_LARGE_TILE = 1024


def pick_filter_tile(dtype, *, pixels: int, filters: int, groups: int, executor: str,
                     filters_along_m: bool = False, widths: str = "auto",
                     tensor_cores: bool = False, mid_tile: bool = False,
                     gemm_k: int = 0) -> GemmTile | MmaTile:
    """The tile of a GEMM of ``pixels`` x ``filters`` per group: the narrowest of the large and
    narrow tiles that holds the group's filters, if its blocks fill a wave of SMs; else the
    small tile (64 x 64: more, smaller blocks). ``filters_along_m``: the GEMM's M is the
    filters (the tiles come transposed). ``tensor_cores``: from the MmaTile set. ``mid_tile``:
    the tiles where they were measured faster (forward only so far): the 128 x 64 tile
    (MID_TILE_PIXELS), and on the tensor cores the large one for a ``gemm_k`` (per group) of
    LONG_K_LARGE_TILE or more."""
    widths = as_choice("tile_widths", widths, TILE_WIDTHS)
    name = dtype if isinstance(dtype, str) else dtype_name(dtype)
    long_k = mid_tile and tensor_cores and gemm_k >= LONG_K_LARGE_TILE
    return _pick_filter_tile(name, pixels, filters, groups, multiprocessor_count(executor),
                             filters_along_m, widths, tensor_cores, mid_tile, long_k)


@functools.lru_cache(maxsize=4096)      # every GEMM launch asks: host time of each call
def _pick_filter_tile(dtype: str, pixels: int, filters: int, groups: int, sms: int,
                      filters_along_m: bool, widths: str, tensor_cores: bool,
                      mid_tile: bool, long_k: bool) -> GemmTile | MmaTile:
    if tensor_cores:
        (large, small), narrow = MMA_TILES, MMA_NARROW_TILES
    else:
        (large, small), narrow = gemm_tiles(dtype), narrow_tiles(dtype)
    candidates = narrow if widths == "auto" else ()
    holding = [t for t in candidates if t.block_n >= filters]
    tile = min(holding, key=lambda t: t.block_n) if holding else large

    def blocks(t) -> int:
        return ceil_div(pixels, t.block_m) * ceil_div(filters, t.block_n) * groups

    mid = next((t for t in candidates if (t.block_m, t.block_n) == (128, 64)), None)
    if blocks(tile) < sms and not long_k:
        if mid_tile and tensor_cores and mid is not None and blocks(mid) >= sms:
            tile = mid
        else:
            return small
    elif (mid_tile and not tensor_cores and mid is not None and tile is large
          and pixels >= MID_TILE_PIXELS and blocks(mid) >= MID_TILE_WAVES * sms):
        tile = mid
    return tile.transposed() if filters_along_m else tile


@dataclass(frozen=True)
class ConvCall:
    geom: ConvGeometry
    nhwc: bool
    executor: str          # "cupy" | "simulator"
    x: Any                 # contiguous, in the call's layout
    filters: Any           # (K, C/groups, R, S): C-contiguous, or in NHWC channels_last (below)
    bias: Any              # contiguous (K,) or None
    residual: Any          # contiguous, output-shaped in the call's layout, or None
    out: Any               # the output target; out_sN elements between images
    out_sN: int
    activation: str | None

    @property
    def xp(self):
        if self.executor == "cupy":
            import cupy
            return cupy
        return np

    @property
    def dtype(self) -> np.dtype:
        return self.x.dtype

    @property
    def cuda_type(self) -> str:
        return cuda_type(self.dtype)

    def kcrs_weight(self):
        """The filters as C-contiguous (K, C/groups, R, S): themselves, or a transposed copy of
        channels_last ones. Read it once per call, not per batch chunk (a copy is made each
        time)."""
        return self.filters_as((0, 1, 2, 3))

    def krsc_weight(self):
        """The filters as C-contiguous (K, R, S, C/groups), the order NHWC's GEMM k (r, s, c)
        reads contiguously: a view of channels_last filters (a channels_last PyTorch model's),
        else a transposed copy."""
        return self.filters_as((0, 2, 3, 1))

    def filters_as(self, axes):
        """``filters.transpose(axes)`` C-contiguous: a view where the filters' memory is in that
        order, else a copy (gpuconv/layout/launch_transpose.py ``permuted``)."""
        return permuted(self.xp, self.filters, axes, self.executor)

    def weight_in_place(self):
        """(a C-contiguous array holding the filters, whether it is their KRSC view), for kernels
        that read either layout: the filters themselves when C-contiguous (KCRS), their KRSC
        view when channels_last (both without a copy), else the ``kcrs_weight`` copy."""
        if is_kernel_ready(self.filters):
            return self.filters, False
        krsc = self.filters.transpose(0, 2, 3, 1)
        if is_kernel_ready(krsc):
            return krsc, True
        return self.kcrs_weight(), False

    def kernel(self, family, name_expression: str, shared_mem: int = 0):
        """The launchable kernel, its dynamic shared memory limit raised to ``shared_mem``
        if needed (_loader.get_function)."""
        return get_function(family, name_expression, self.executor, shared_mem)

    # ---------------------------------------------------------------- kernel arguments

    def shape_args(self) -> list:
        return list(shape_args(self.geom))

    def epilogue_args(self) -> list:
        out_strides, residual_strides, flags = _epilogue_scalars(
            self.geom, self.nhwc, self.out_sN, self.activation, self.bias is not None,
            self.residual is not None)
        # An absent operand is passed as `out`: a valid pointer of the right type that the
        # kernel never reads (its flag is clear), so no executor sees a null argument.
        out = self.addressable_out()
        bias = self.bias if self.bias is not None else out
        residual = self.residual if self.residual is not None else out
        return [out, *out_strides, bias, residual, *residual_strides, flags]

    def addressable_out(self):
        """The output target as the kernels see it: itself when contiguous; for a channel slice
        of a larger buffer, a contiguous 1-D view from the slice's first element to its last
        (the kernels step between images with out_sN), so every executor gets one plain
        pointer and the exact extent the kernels may touch."""
        if self.out.flags.c_contiguous:
            return self.out
        g = self.geom
        span = (g.N - 1) * self.out_sN + g.K * g.P * g.Q
        return self.xp.lib.stride_tricks.as_strided(self.out, shape=(span,),
                                                    strides=(self.out.dtype.itemsize,))

    # ---------------------------------------------------------------- batch chunks

    def image_elements(self) -> int:
        """The most elements one image spans in any tensor a launch addresses."""
        g = self.geom
        return max(g.C * g.H * g.W, g.K * g.P * g.Q, self.out_sN)

    def index_limited_images(self) -> int:
        """Images per launch that keep every offset below INDEX_LIMIT."""
        per_image = self.image_elements()
        check_index_limits(self.geom, per_image)
        return INDEX_LIMIT // per_image

    def chunks(self, max_images: int | None = None) -> Iterator["ConvCall"]:
        """The call split along the batch: at most ``max_images`` images per chunk, and never
        more than 32-bit offsets allow. The chunks share the arrays (views along axis 0)."""
        limit = self.index_limited_images()
        if max_images is not None:
            limit = min(limit, max_images)
        limit = max(1, limit)
        if self.geom.N <= limit:
            yield self
            return
        for n0 in range(0, self.geom.N, limit):
            n1 = min(n0 + limit, self.geom.N)
            yield dataclasses.replace(
                self, geom=dataclasses.replace(self.geom, N=n1 - n0), x=self.x[n0:n1],
                residual=None if self.residual is None else self.residual[n0:n1],
                out=self.out[n0:n1])


def check_index_limits(geom, per_image: int | None = None) -> None:
    """The weight and one image (``per_image`` elements: by default the larger of x's and the
    output's) within the kernels' 32-bit offsets; larger batches are split, larger images not."""
    weight = geom.K * geom.C_per_group * geom.R * geom.S
    if weight >= INDEX_LIMIT:
        raise ValueError(f"weight has {weight} elements: 2^31 or more are not supported "
                         "(the kernels index with 32-bit offsets)")
    if per_image is None:
        per_image = max(geom.C * geom.H * geom.W, geom.K * geom.P * geom.Q)
    if per_image >= INDEX_LIMIT:
        raise ValueError(f"one image of x or of the output spans {per_image} elements: "
                         "2^31 or more per image are not supported (the kernels index with "
                         "32-bit offsets; larger batches are split automatically)")


@functools.lru_cache(maxsize=4096)      # built for every launch: host time of each call
def _epilogue_scalars(geom: ConvGeometry, nhwc: bool, out_sN: int, activation, has_bias: bool,
                      has_residual: bool):
    """The epilogue's scalar arguments (kernels/common/epilogue.cuh): the output's and the
    residual's (image, channel, pixel) strides and the flags, as int32."""
    pq = geom.P * geom.Q
    out_strides = (out_sN, 1, geom.K) if nhwc else (out_sN, pq, 1)
    residual_strides = (pq * geom.K, 1, geom.K) if nhwc else (geom.K * pq, pq, 1)
    flags = ACTIVATION_CODES[activation] << EPILOGUE_ACTIVATION_SHIFT
    if has_bias:
        flags |= EPILOGUE_BIAS
    if has_residual:
        flags |= EPILOGUE_RESIDUAL
    return (tuple(map(np.int32, out_strides)), tuple(map(np.int32, residual_strides)),
            np.int32(flags))


def output_target(out: Any, shape: tuple[int, ...], dtype, nhwc: bool, xp) -> tuple[Any, int, bool]:
    """(array the kernels write, its batch stride in elements, whether it is ``out`` itself).

    ``out`` is used directly when the kernels can address it: C-contiguous, or (NCHW) a channel
    slice of a C-contiguous buffer. Anything else (an NHWC channel slice: the epilogues' packed
    stores assume a pixel stride of K) gets a contiguous scratch output that the caller copies
    into ``out`` afterwards.
    """
    n, a, b, c = shape
    if out is not None:
        usable = is_kernel_ready(out) or (not nhwc and is_channel_slice_of_contiguous(out)
                                          and is_element_aligned(out))
        if usable:
            batch_stride = out.strides[0] // out.dtype.itemsize if n > 1 else a * b * c
            return out, int(batch_stride), True
    return empty(xp, shape, dtype), a * b * c, False


# kernels/common/conv_shape.cuh's gc::ConvShape: 16 int32 fields in its order (64 bytes, no
# padding), passed to the kernels by value as one NumPy structured scalar.
CONV_SHAPE_DTYPE = np.dtype([(name, np.int32) for name in (
    "N", "C", "H", "W", "K", "R", "S", "P", "Q", "pad_h", "pad_w", "stride_h", "stride_w",
    "dil_h", "dil_w", "groups")])


@functools.lru_cache(maxsize=4096)      # geometries are frozen (hashable) dataclasses
def shape_args(geom, n_images: int | None = None) -> tuple[np.void]:
    """The geometry argument every conv kernel takes (one gc::ConvShape, as a 1-tuple to splice
    into an argument list), with N replaced by the chunk's image count."""
    n = geom.N if n_images is None else n_images
    fields = (n, geom.C, geom.H, geom.W, geom.K, geom.R, geom.S, geom.P, geom.Q, geom.pad_top,
              geom.pad_left, geom.stride_h, geom.stride_w, geom.dil_h, geom.dil_w, geom.groups)
    return (np.array(fields, dtype=CONV_SHAPE_DTYPE)[()],)


def contiguous(xp, a):
    if a is None or is_kernel_ready(a):    # the common case, without a library call
        return a
    return derived(copy_for_kernels, xp, a)


def call_filters(xp, weight, nhwc: bool):
    """``weight`` as ``ConvCall.filters``: itself when C-contiguous, or in an NHWC call when laid
    out channels_last ((K, R, S, C/groups) in memory: what the NHWC implicit GEMM reads, so it
    needs no copy); else a C-contiguous copy."""
    if nhwc and is_kernel_ready(weight.transpose(0, 2, 3, 1)):
        return weight
    return contiguous(xp, weight)
