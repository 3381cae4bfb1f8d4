"""Launcher of kernels/conv/depthwise.cu: groups == C, any channel multiplier K / C.

Four kernels (``variant``):

- "direct" (``conv2d_depthwise_direct``): one thread per output reading taps through L1;
  3x3, 5x5, 7x7 unrolled; NHWC gets the filters transposed to (R, S, K). Runs anything.
- "tiled" (``conv2d_depthwise_tiled``): stages an input tile with its halo and the filters in
  shared memory; each thread 4 outputs along q per weight load. Any stride and dilation.
- "window" (``conv2d_depthwise_window``): stride 1 and dilation 1 only; the same staging, but
  each thread slides a register window along a run of WINDOW_RUN outputs (one input and one
  weight shared load per tap for WINDOW_RUN FMAs) and skips the filter rows on padding.
- "vector" (``conv2d_depthwise_vector``, launch_depthwise_vector.py): 3x3, stride 1 or 2, one
  filter per channel; filters in registers, no staging, a run of 4 outputs along q per thread
  and output row. NHWC: 4 channels per thread in vector loads (C % 4 == 0, arrays aligned for
  its vectors); NCHW: one channel per thread.

``run(call, variant="auto")`` picks with ``choose_variant``: the vector kernel wherever it
runs (a prediction to measure: kernels/conv/NOTES.md "Depthwise NHWC: 4-channel vectors" and
"Depthwise NCHW: runs of four outputs");
else the tiled kernel past DIRECT_MAX_TAPS taps, else the direct kernel; but the window kernel
instead for stride 1 and dilation 1 past a 3x3 filter wherever it issues fewer loads per output
(``loads_per_output``), and for 3x3 in NHWC and on NCHW planes of 28x28 outputs or more
(measured: WINDOW_3X3_NCHW_MIN_PIXELS). Each shared-memory kernel shrinks its tile to fit
SMEM_LIMIT and is not chosen when its smallest tile does not fit. DIRECT_MAX_TAPS is a
prediction to measure (kernels/conv/NOTES.md, "depthwise.cu");
``launch.conv2d(..., depthwise_variant=...)`` forces one for tests and benchmarks.
"""
from __future__ import annotations

import functools

import numpy as np

from .._args import as_choice
from .._kernels import CUDA_TYPES, register
from . import launch_depthwise_vector as vector
from .gemm_tile import accumulator_itemsize
from .launch_common import (GRID_YZ_LIMIT, SMEM_LIMIT, ConvCall, ceil_div, contiguous,
                            cuda_bool, decoder_args, round_up)

UNROLLED_SIZES = (3, 5, 7)
DIRECT_THREADS = 256
TILED_THREADS = 256   # kernels/conv/depthwise.cu: DEPTHWISE_THREADS (also the window kernel's)
OUT_Q = 4             # DEPTHWISE_OUT_Q: tile_q is a multiple of it
WINDOW_RUN = 7        # DEPTHWISE_WINDOW_RUN: outputs per thread of the window kernel
# The direct kernel up to this filter area; the tiled one beyond when the window kernel does
# not apply (a guess to check on a GPU: kernels/conv/NOTES.md).
DIRECT_MAX_TAPS = 49
# Auto takes the window kernel past this filter area wherever it issues fewer loads per output;
# for 3x3 filters, by the H100 measurement below instead.
WINDOW_MIN_TAPS = 10
# 3x3 stride 1 (MobileNetV2 b32 fp32 on an H100, bench/results/20261122T1547Z-H100-depthwise,
# kernels/conv/NOTES.md "Depthwise on the H100"): the window kernel beats the direct one in NHWC
# on every plane (7x7: 21 vs 31 us, 56x56: 117 vs 193) and in NCHW from 28x28 outputs on
# (61 vs 67 us; 112x112: 124 vs 168), the direct one below (14x14: 36 vs 58 us, 7x7: 24 vs 37).
WINDOW_3X3_NCHW_MIN_PIXELS = 28 * 28
# Most runs per row of a window tile: NCHW lays a whole 56-wide row across the runs of a block;
# NHWC keeps channels on the lanes and takes a few runs and rows.
WINDOW_MAX_RUNS = {False: 8, True: 2}
WINDOW_LANE_CHANNELS = 32   # NHWC: output channels along the lanes of a warp

VARIANTS = ("auto", "direct", "tiled", "window", "vector")
KERNELS = {"direct": "conv2d_depthwise_direct", "tiled": "conv2d_depthwise_tiled",
           "window": "conv2d_depthwise_window", "vector": "conv2d_depthwise_vector"}

_LAYOUTS = ("false", "true")
_FILTERS = [(f, f) for f in UNROLLED_SIZES] + [(0, 0)]
FAMILY = register(
    "conv/depthwise.cu",
    name_expressions=(
        [f"conv2d_depthwise_direct<{t}, {nhwc}, {fr}, {fs}>" for t in CUDA_TYPES.values()
         for nhwc in _LAYOUTS for fr, fs in _FILTERS]
        + [f"conv2d_depthwise_{kind}<{t}, {nhwc}>" for kind in ("tiled", "window")
           for t in CUDA_TYPES.values() for nhwc in _LAYOUTS]),
    hot=([f"conv2d_depthwise_direct<{t}, {nhwc}, 3, 3>" for t in ("float", "__half") for nhwc in _LAYOUTS]
         + [f"conv2d_depthwise_{kind}<{t}, {nhwc}>" for kind in ("tiled", "window")
            for t in ("float", "__half") for nhwc in _LAYOUTS]),
)


def refusal(geom) -> str | None:
    """Why the depthwise kernels cannot run ``geom`` (None when they can)."""
    if geom.groups != geom.C:
        return (f"depthwise needs groups == C (one group per input channel), got groups="
                f"{geom.groups} with C={geom.C}")
    return None


# ------------------------------------------------------------------------------------ tiled


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


def tiled_refusal(geom, dtype, nhwc: bool) -> str | None:
    """Why the tiled kernel cannot run ``geom`` (None when it can)."""
    tile_p, tile_q, ct = tiled_config(geom, dtype, nhwc)
    if tiled_smem_bytes(geom, dtype, tile_p, tile_q, ct) > SMEM_LIMIT:
        return f"its smallest tile does not fit in {SMEM_LIMIT} bytes of shared memory"
    return channel_blocks_refusal(geom, ct)


def channel_blocks_refusal(geom, channel_tile: int) -> str | None:
    """The tiled and window kernels put blocks of ``channel_tile`` channels on grid.y (65535 at
    most): more channels than that take the direct kernel, whose grid is one-dimensional."""
    blocks = ceil_div(geom.C, channel_tile)
    if blocks > GRID_YZ_LIMIT:
        return (f"its grid has C / {channel_tile} = {blocks} blocks of channels, more than "
                f"{GRID_YZ_LIMIT}")
    return None


# ------------------------------------------------------------------------------------ window


def window_channel_pitch(plane: int, tile_q: int) -> int:
    """depthwise.cu: window_channel_pitch (NCHW): the plane padded to tile_q modulo 32."""
    return plane + (tile_q - plane) % 32


def window_filter_pitch(taps: int) -> int:
    """depthwise.cu: window_filter_pitch: a filter's shared pitch, R * S made odd."""
    return taps | 1


def window_smem_bytes(geom, dtype, nhwc: bool, tile_p: int, runs: int, channel_tile: int) -> int:
    tile_q = runs * WINDOW_RUN
    rows = min(tile_p + geom.R - 1, geom.H)   # only the image's rows are staged
    plane = rows * (tile_q + geom.S)          # + S: the halo and the window's look-ahead column
    channel_elements = plane if nhwc else window_channel_pitch(plane, tile_q)
    multiplier = geom.K // geom.C
    elements = (round_up(channel_tile * channel_elements, 4)
                + channel_tile * multiplier * window_filter_pitch(geom.R * geom.S))
    return elements * accumulator_itemsize(dtype)


def window_config(geom, dtype, nhwc: bool) -> tuple[int, int, int]:
    """(tile_p, runs, channel_tile): about TILED_THREADS work items (one run of WINDOW_RUN
    outputs of one channel each) per block, shrunk to fit in shared memory.

    NCHW: up to WINDOW_MAX_RUNS runs across a row, then rows, then channels until the block has
    a thread per item. NHWC: WINDOW_LANE_CHANNELS channels (a warp along the contiguous
    dimension), up to 2 runs, then rows. Shrinking halves the channel tile first (it alone
    carries the R*S filters, the bulk of the tile for large filters) and gives the freed
    threads to rows; then rows; then runs.
    """
    multiplier = geom.K // geom.C
    runs = min(ceil_div(geom.Q, WINDOW_RUN), WINDOW_MAX_RUNS[nhwc])

    def rows_for(ct: int) -> int:
        return min(geom.P, max(1, TILED_THREADS // (ct * multiplier * runs)))

    if nhwc:
        ct = min(geom.C, max(1, WINDOW_LANE_CHANNELS // multiplier))
        tile_p = rows_for(ct)
    else:
        tile_p = rows_for(1)
        ct = min(geom.C, max(1, TILED_THREADS // (multiplier * runs * tile_p)))
    while window_smem_bytes(geom, dtype, nhwc, tile_p, runs, ct) > SMEM_LIMIT:
        if ct > 1:
            ct //= 2
            tile_p = max(tile_p, rows_for(ct))
        elif tile_p > 1:
            tile_p //= 2
        elif runs > 1:
            runs //= 2
        else:
            break  # one channel, one row, one run: the filter alone is what does not fit
    return tile_p, runs, ct


def window_refusal(geom, dtype, nhwc: bool) -> str | None:
    """Why the window kernel cannot run ``geom`` (None when it can)."""
    if (geom.stride_h, geom.stride_w) != (1, 1):
        return f"it needs stride 1, got {geom.stride_h}x{geom.stride_w}"
    if (geom.dil_h, geom.dil_w) != (1, 1):
        return f"it needs dilation 1, got {geom.dil_h}x{geom.dil_w}"
    tile_p, runs, ct = window_config(geom, dtype, nhwc)
    smem = window_smem_bytes(geom, dtype, nhwc, tile_p, runs, ct)
    if smem > SMEM_LIMIT:
        return (f"its smallest tile needs {smem} bytes of shared memory (limit {SMEM_LIMIT}) "
                f"for a {geom.R}x{geom.S} filter in {np.dtype(dtype).name}")
    return channel_blocks_refusal(geom, ct)


def loads_per_output(kind: str, geom) -> float:
    """The load model of NOTES.md (the kernels are load-bound, not FMA-bound): loads issued per
    output. Window: per filter row, the window fill plus one input and one weight per tap, for
    a run of RUN outputs (fewer when Q < RUN). Tiled: four inputs and one weight per tap for
    four outputs. Direct: an input and a weight per tap."""
    taps = geom.R * geom.S
    if kind == "window":
        return geom.R * (2 * geom.S + WINDOW_RUN) / min(geom.Q, WINDOW_RUN)
    if kind == "tiled":
        return 1.25 * taps
    return 2.0 * taps


# ------------------------------------------------------------------------------------ choice


def choose_variant(geom, dtype, nhwc: bool, variant: str = "auto", aligned: bool = True) -> str:
    """The kernel ("direct" | "tiled" | "window" | "vector") that runs ``geom`` for the requested
    variant; a forced variant that cannot run it is a ValueError saying why. ``aligned``: whether
    the call's arrays suit the vector kernel (launch_depthwise_vector.misaligned); auto takes
    that kernel only then, and ``run`` refuses a forced "vector" otherwise."""
    variant = as_choice("depthwise_variant", variant, VARIANTS)
    if variant == "vector":
        why = vector.refusal(geom, nhwc)
        if why is not None:
            raise ValueError(f"depthwise variant 'vector' cannot run this convolution: {why}")
        return variant
    if variant == "window":
        why = window_refusal(geom, dtype, nhwc)
        if why is not None:
            raise ValueError(f"depthwise variant 'window' cannot run this convolution: {why}")
        return variant
    if variant == "tiled":
        why = tiled_refusal(geom, dtype, nhwc)
        if why is not None:
            raise ValueError(f"depthwise variant 'tiled' cannot run this convolution: {why}")
        return variant
    if variant == "direct":
        return variant
    if aligned and vector.refusal(geom, nhwc) is None:
        return "vector"
    fallback = ("tiled" if geom.R * geom.S > DIRECT_MAX_TAPS
                and tiled_refusal(geom, dtype, nhwc) is None else "direct")
    if window_refusal(geom, dtype, nhwc) is not None:
        return fallback
    if (geom.R, geom.S) == (3, 3):
        return "window" if nhwc or geom.P * geom.Q >= WINDOW_3X3_NCHW_MIN_PIXELS else fallback
    if (geom.R * geom.S >= WINDOW_MIN_TAPS
            and loads_per_output("window", geom) < loads_per_output(fallback, geom)):
        return "window"
    return fallback


def uses_tiled(geom, dtype, nhwc: bool) -> bool:
    """Whether auto runs ``geom`` on the tiled kernel."""
    return choose_variant(geom, dtype, nhwc) == "tiled"


def describe(geom, dtype, nhwc: bool, variant: str = "auto") -> str:
    """The kernel and tile ``run`` launches (gpuconv.explain)."""
    kind = choose_variant(geom, dtype, nhwc, variant)
    if kind == "vector":
        lanes = vector.LANES[nhwc]
        text = (f"conv2d_depthwise_vector ({lanes} channel{'s' if lanes > 1 else ''} per thread, "
                f"{vector.VECTOR_RUN} outputs along q per row, filters in registers")
        if not nhwc:     # NCHW's accesses are scalar: no alignment rule (vector.misaligned)
            return text + ")"
        other = describe(geom, dtype, nhwc, choose_variant(geom, dtype, nhwc, aligned=False))
        return f"{text}; when the arrays are aligned to its vectors, else {other})"
    if kind == "window":
        tp, runs, ct = window_config(geom, dtype, nhwc)
        return (f"conv2d_depthwise_window (tile {tp}x{runs * WINDOW_RUN}, {ct} channels per block, "
                f"{WINDOW_RUN} outputs per thread)")
    if kind == "tiled":
        tp, tq, ct = tiled_config(geom, dtype, nhwc)
        return f"conv2d_depthwise_tiled (tile {tp}x{tq}, {ct} channels per block)"
    unrolled = geom.R == geom.S and geom.R in UNROLLED_SIZES
    return f"conv2d_depthwise_direct ({'unrolled ' if unrolled else 'runtime '}{geom.R}x{geom.S})"


# ------------------------------------------------------------------------------------ data gradient


def runs_data_gradient(geom) -> bool:
    """Whether these kernels compute the data gradient of the depthwise convolution ``geom``:
    with stride 1 and one filter per channel, dx is dy convolved with the rotated filters
    (geometry.data_gradient_geometry), itself a depthwise convolution. Strided or multiplier > 1
    gradients stay on kernels/conv/dgrad_depthwise.cu."""
    return geom.groups == geom.C == geom.K and (geom.stride_h, geom.stride_w) == (1, 1)


# ------------------------------------------------------------------------------------ launch


@functools.lru_cache(maxsize=1024)
def plan(geom, dtype: np.dtype, nhwc: bool, variant: str, aligned: bool = True):
    """(kernel kind, its tile arguments as int32, shared memory bytes, pixel blocks) for ``geom``:
    the same for every call of a layer, so made once (the choice and the tile search were ~20 us
    of each call's host time under cProfile on the H100: run 106 -> 82 us, profiled)."""
    kind = choose_variant(geom, dtype, nhwc, variant, aligned)
    if kind in ("direct", "vector"):
        return kind, (), 0, 0
    if kind == "window":
        tile_p, runs, ct = window_config(geom, dtype, nhwc)
        smem = window_smem_bytes(geom, dtype, nhwc, tile_p, runs, ct)
        tile_args = (tile_p, runs, ct)
        pixel_blocks = ceil_div(geom.P, tile_p) * ceil_div(geom.Q, runs * WINDOW_RUN)
    else:
        tile_p, tile_q, ct = tiled_config(geom, dtype, nhwc)
        smem = tiled_smem_bytes(geom, dtype, tile_p, tile_q, ct)
        tile_args = (tile_p, tile_q, ct)
        pixel_blocks = ceil_div(geom.P, tile_p) * ceil_div(geom.Q, tile_q)
    return kind, tuple(np.int32(v) for v in tile_args), smem, pixel_blocks


def vector_misaligned(call: ConvCall) -> str | None:
    """Why the call's arrays do not suit the vector kernel; None also where its geometry rules
    the kernel out anyway (nothing to check then)."""
    if _vector_refusal(call.geom, call.nhwc) is not None:
        return None
    return vector.misaligned(call)


_vector_refusal = functools.lru_cache(maxsize=1024)(vector.refusal)


def run(call: ConvCall, variant: str = "auto", flip: bool = False) -> None:
    """Launches ``call``; ``flip`` reads every filter rotated by 180 degrees (the data gradient
    of a stride-1, multiplier-1 depthwise convolution as a forward pass: launch_bwd_data)."""
    g = call.geom
    # Only auto and a forced "vector" can take the vector kernel: the others skip the check.
    misaligned = vector_misaligned(call) if variant in ("auto", "vector") else None
    kind, tile_args, smem, pixel_blocks = plan(g, np.dtype(call.dtype), call.nhwc, variant,
                                               misaligned is None)
    if kind == "vector":
        if misaligned is not None:
            raise ValueError(f"depthwise variant 'vector' cannot run this call: {misaligned}")
        vector.run(call, flip=flip)
        return
    nhwc = cuda_bool(call.nhwc)
    if kind == "direct":
        fr, fs = (g.R, g.S) if g.R == g.S and g.R in UNROLLED_SIZES else (0, 0)
        fn = call.kernel(FAMILY, f"conv2d_depthwise_direct<{call.cuda_type}, {nhwc}, {fr}, {fs}>")
        # NHWC: the filters as (R, S, K), so that a warp's filters of one tap are contiguous.
        weight = (call.filters_as((2, 3, 1, 0)).reshape(g.R * g.S, g.K) if call.nhwc
                  else call.kcrs_weight())
        for chunk in call.chunks():
            c = chunk.geom
            grid = (ceil_div(c.N * c.K * c.P * c.Q, DIRECT_THREADS), 1, 1)
            fn(grid, (DIRECT_THREADS, 1, 1), [chunk.x, weight, np.int32(flip),
                                              *chunk.shape_args(), *decoder_args(c.K, c.P, c.Q),
                                              *chunk.epilogue_args()])
        return
    channel_blocks = ceil_div(g.C, tile_args[2])   # <= GRID_YZ_LIMIT: channel_blocks_refusal
    fn = call.kernel(FAMILY, f"{KERNELS[kind]}<{call.cuda_type}, {nhwc}>")
    weight = call.kcrs_weight()
    for chunk in call.chunks(GRID_YZ_LIMIT):
        grid = (pixel_blocks, channel_blocks, chunk.geom.N)
        fn(grid, (TILED_THREADS, 1, 1), [chunk.x, weight, np.int32(flip), *tile_args,
                                         *chunk.shape_args(), *chunk.epilogue_args()],
           shared_mem=smem)
