"""Launchers of roi_align, forward and backward (kernels/roi/roi_align.cu,
kernels/roi/roi_align_tables.cu, kernels/roi/roi_align_separable.cu,
kernels/roi/roi_align_gather.cu).

Forward: one thread per output element with the box's samples tabulated per block
(roi_align_tables.cu) where the output has enough elements to fill the GPU that way
(``uses_tables``). Below that (few boxes), adaptive sampling takes the two weighted passes of
roi_align_separable.cu, rows then columns, one load per pixel under a box instead of four per
sample (``uses_separable``); a fixed sampling ratio takes roi_align.cu's kernel, whose lanes split
each bin's samples. Of the tabled kernels, the grouped one
(blocks ordered by groups of 32 channels, an NHWC map read 32 channels at a time) takes every
NHWC call with 32 channels or more, and the NCHW calls that sample the map densely enough to pay
for an NHWC copy of it (``reads_through_nhwc``); the others read NCHW in torchvision's order.

Backward: for the calls the separable forward takes, its transpose (roi_align_separable_grad.cu:
columns, then rows; every element written once, no atomics, deterministic) in both modes.
Otherwise, by mode:
- default: torchvision's scatter, every sample's four bilinear weights added with atomicAdd
  (float atomics; into a float32 scratch buffer for half types, rounded once at the end; for a
  large NCHW scatter, into an NHWC scratch transposed once at the end: scatters_through_nhwc);
- ``deterministic=True``: the gather kernel, each input element summing its contributions in a
  fixed order; no atomics, bitwise identical run to run.
"""
from __future__ import annotations

import functools
import math

from .._args import INT32_MAX
from .._fast_divmod import decoder_args
from .._plans import empty
from ..pool.launch_common import (BLOCK, BOOLS, MAX_BLOCKS, TYPES, acc_dtype,
                                  acc_scalar, check_int32, contiguous, ctype, i32, launch, nhwc,
                                  register_family, xp_for)
from .geometry import RoiGeometry
from .launch_accumulator import accumulate_to
from .launch_transpose import nhwc_copy

# F: channels per thread of the NCHW forward (forward_channels); NHWC takes one
ROI_ALIGN = register_family("roi/roi_align.cu", "roi_align_forward<{T}, false, {F}>",
                            "roi_align_forward<{T}, true, 1>",
                            "roi_align_backward_atomic<{T}, {L}, {L}>",
                            "roi_align_backward_atomic<{T}, true, false>", T=TYPES, L=BOOLS,
                            F=("2", "4"))
# G: the sampling ratio as a compile-time constant (2: torchvision's MultiScaleRoIAlign), 0 any
ROI_ALIGN_TABLES = register_family("roi/roi_align_tables.cu",
                                   "roi_align_forward_tabled<{T}, {L}, {G}>",
                                   "roi_align_forward_grouped<{T}, {L}, {G}>", T=TYPES, L=BOOLS,
                                   G=("0", "2"))
ROI_ALIGN_SEPARABLE = register_family("roi/roi_align_separable.cu",
                                      "roi_align_separable_rows<{T}, {L}>",
                                      "roi_align_separable_columns<{T}, {L}>", T=TYPES, L=BOOLS)
ROI_ALIGN_SEPARABLE_GRAD = register_family("roi/roi_align_separable_grad.cu",
                                           "roi_align_separable_grad_columns<{T}, {L}>",
                                           "roi_align_separable_grad_rows<{T}, {L}>", T=TYPES,
                                           L=BOOLS)
ROI_ALIGN_GATHER = register_family("roi/roi_align_gather.cu",
                                   "roi_align_backward_gather<{T}, {L}>", T=TYPES, L=BOOLS)

# Threads the forward and atomic backward aim for: several waves of a large GPU (an H100 holds
# 132 x 2048 threads). Below it, lanes of a warp share one bin's samples (``lanes_per_bin``).
TARGET_THREADS = 1 << 20
GATHER_TILE = (4, 16)      # kRoiTileH, kRoiTileW in kernels/common/roi_tiles.cuh
GATHER_BLOCK = 256         # kRoiTileThreads
MAX_GRID_Y = 65535


def _samples_per_bin_bound(geom: RoiGeometry) -> int:
    """Samples of one bin: exact for a fixed sampling_ratio; for adaptive sampling, those of a
    box as large as the feature map (larger boxes are rare; they only get fewer lanes)."""
    if geom.sampling_ratio > 0:
        return geom.sampling_ratio ** 2
    return -(-geom.H // geom.PH) * -(-geom.W // geom.PW)


# Channels one thread of the NCHW forward computes (kChannels in roi_align.cu): 4 share each
# sample's weights while the feature map fits in L2; beyond, each thread streaming 4 planes from
# DRAM costs more than the shared weights save, and 2 is faster. H100 A/B (fp32, NCHW; us, 4 / 2
# channels): FPN P2 2 x 256 x 200 x 304 (124 MB) 1230 / 808, 1 x ... (62 MB) 731 / 623; FPN P4
# (3.9 MB) 271 / 345, mask head 176 / 214, few huge boxes (15.5 MB) 172 / 179
# (kernels/pool/NOTES.md "ROI align: channels per thread"). The atomic backward takes one
# channel per thread.
NCHW_FORWARD_CHANNELS = (4, 2)     # (fits in L2, does not)
L2_BYTES_WITHOUT_GPU = 50 << 20    # the simulator's stand-in: an H100's L2


@functools.lru_cache(maxsize=16)
def _l2_bytes(device_id: int) -> int:
    import cupy
    return int(cupy.cuda.Device(device_id).attributes["L2CacheSize"])


def forward_channels(x, data_format: str, executor: str) -> int:
    """kChannels of the forward for input ``x`` (see NCHW_FORWARD_CHANNELS)."""
    if data_format == "NHWC":
        return 1
    l2 = _l2_bytes(x.device.id) if executor == "cupy" else L2_BYTES_WITHOUT_GPU
    return NCHW_FORWARD_CHANNELS[0 if x.nbytes <= l2 else 1]


# The tabled forward runs one thread per output element: from about one wave of a large GPU (an
# H100 holds 132 x 2048 threads) on; below it, roi_align.cu's lanes share the bins' samples.
TABLED_MIN_ELEMENTS = TARGET_THREADS // 4
# Entries of each axis' sample table at most (16 bytes each in float32, 24 in float64); a box
# whose grid needs more computes its samples per element (kernels/roi/roi_align_tables.cu).
MAX_TABLE_ENTRIES = 512
TABLED_GRIDS = (2,)         # sampling ratios the tabled kernel has as a constant (kGrid)


def uses_tables(geom: RoiGeometry) -> bool:
    """Whether the forward runs roi_align_tables.cu's kernel (module docstring)."""
    return geom.K * geom.C * geom.PH * geom.PW >= TABLED_MIN_ELEMENTS


def table_entries(geom: RoiGeometry) -> int:
    """Each axis table's capacity: the samples of the largest grid a box can need (a fixed
    ratio's; with adaptive sampling, that of a box as large as the feature map), capped."""
    if geom.sampling_ratio > 0:
        needed = max(geom.PH, geom.PW) * geom.sampling_ratio
    else:
        needed = max(geom.PH * -(-geom.H // geom.PH), geom.PW * -(-geom.W // geom.PW))
    return min(needed, MAX_TABLE_ENTRIES)


def _tabled_forward(geom: RoiGeometry, x, rois, y, data_format: str, executor: str) -> None:
    per_box = geom.C * geom.PH * geom.PW
    blocks_per_box = -(-per_box // BLOCK)
    if geom.K * blocks_per_box > INT32_MAX:
        raise ValueError(f"roi_align: {geom.K} boxes of {per_box} output elements need more "
                         "blocks than a launch holds: split the boxes")
    grid, entries, table_bytes = _tables(geom, x.dtype)
    _, *sizes = _common_args(geom, x.dtype)        # every size but K, which the grid carries
    launch(ROI_ALIGN_TABLES,
           f"roi_align_forward_tabled<{ctype(x.dtype)}, {nhwc(data_format)}, {grid}>", executor,
           (geom.K * blocks_per_box,), (BLOCK,),
           (x, rois, y, *decoder_args(geom.C, geom.PH, geom.PW), i32(blocks_per_box), *sizes,
            i32(entries)),
           shared_mem=table_bytes)


def _tables(geom: RoiGeometry, dtype) -> tuple[int, int, int]:
    """What the tabled kernels' launches share: their kGrid (a constant sampling ratio, else
    0), each axis table's capacity and the two tables' bytes of dynamic shared memory (an entry,
    AxisSample<A>, is two ints and two accumulator-typed factors)."""
    grid = geom.sampling_ratio if geom.sampling_ratio in TABLED_GRIDS else 0
    entries = table_entries(geom)
    return grid, entries, 2 * entries * (8 + 2 * acc_dtype(dtype).itemsize)


# The grouped forward (roi_align_forward_grouped): GROUP_CHANNELS is its kGroupChannels, one
# channel per lane of a warp. A block covers one box's group for up to STAGE_BYTES of output
# (the NCHW output's shared-memory stage); a box's bins split across more blocks while the grid
# holds fewer than GROUPED_MIN_BLOCKS (about four waves of an H100, 132 x 8 blocks of 256).
GROUP_CHANNELS = 32
GROUPED_MIN_BLOCKS = 4096
GROUPED_MIN_CHANNELS = GROUP_CHANNELS   # fewer would leave lanes of every warp idle
STAGE_BYTES = 16 * 1024
# An NCHW forward reads the map through an NHWC copy where the bins' samples (a fixed ratio's,
# one per bin with adaptive sampling) number at least this many per pixel of the map. In NCHW a
# sample's 2 x 2 corners cost ~45 bytes per channel from L2 on FPN P2 (sectors of 8 floats
# whose 2 columns are used), in NHWC ~15 (whole runs of channels), and the copy costs 8 per
# pixel and channel (float32: read and write): it pays from ~0.3 samples per pixel
# (kernels/pool/NOTES.md "ROI align forward: channel groups").
NHWC_READ_MIN_SAMPLES_PER_PIXEL = 1


def reads_through_nhwc(geom: RoiGeometry) -> bool:
    """Whether an NCHW tabled forward copies the map to NHWC for the grouped kernel."""
    samples = geom.K * geom.PH * geom.PW * max(geom.sampling_ratio, 1) ** 2
    return samples >= NHWC_READ_MIN_SAMPLES_PER_PIXEL * geom.N * geom.H * geom.W


def uses_groups(geom: RoiGeometry, data_format: str) -> bool:
    """Whether a tabled forward runs the grouped kernel (module docstring)."""
    return (geom.C >= GROUPED_MIN_CHANNELS
            and (data_format == "NHWC" or reads_through_nhwc(geom)))


def bins_per_block(geom: RoiGeometry, itemsize: int) -> int:
    """The grouped forward's bins per block (see GROUPED_MIN_BLOCKS), at least one per warp."""
    warps = BLOCK // GROUP_CHANNELS
    per_block = min(geom.PH * geom.PW, STAGE_BYTES // (GROUP_CHANNELS * itemsize) - 1)
    while per_block > warps and _grouped_blocks(geom, per_block) < GROUPED_MIN_BLOCKS:
        per_block = max(-(-per_block // 2), warps)
    return per_block


def _grouped_blocks(geom: RoiGeometry, per_block: int) -> int:
    """The grouped forward's grid: a block per box, group of channels and run of its bins."""
    return geom.K * -(-geom.C // GROUP_CHANNELS) * -(-(geom.PH * geom.PW) // per_block)


def _grouped_forward(xp, geom: RoiGeometry, x, rois, y, data_format: str, executor: str) -> None:
    per_block = bins_per_block(geom, x.dtype.itemsize)
    blocks = _grouped_blocks(geom, per_block)
    if blocks > INT32_MAX:
        raise ValueError(f"roi_align: {geom.K} boxes of {geom.C} channels need more blocks than "
                         "a launch holds: split the boxes")
    x_nhwc = x if data_format == "NHWC" else nhwc_copy(xp, x, executor)
    grid, entries, table_bytes = _tables(geom, x.dtype)
    stage = 0 if data_format == "NHWC" else GROUP_CHANNELS * (per_block | 1) * x.dtype.itemsize
    launch(ROI_ALIGN_TABLES,
           f"roi_align_forward_grouped<{ctype(x.dtype)}, {nhwc(data_format)}, {grid}>", executor,
           (blocks,), (BLOCK,),
           (x_nhwc, rois, y, *_common_args(geom, x.dtype), i32(entries), i32(per_block)),
           shared_mem=table_bytes + stage)


# The separable forward (roi_align_separable.cu) where a fixed ratio's lanes would split the bins
# (few boxes: not uses_tables) and the sampling is adaptive: a bin of b pixels then takes
# ceil(b) samples per axis, at most one pixel apart, so the pixels under a box are read once per
# bin row instead of four times per sample; the same calls' backward is its transpose
# (roi_align_separable_grad.cu: each gradient element written once, no zero fill, no atomics).
# Their scratch (row sums, column sums) holds K * PH * C * W accumulator-typed entries (every
# column of the map: the boxes' extents are on the device); at most SEPARABLE_MAX_ROW_SUMS of
# them, beyond which the lanes kernel and the atomic or gather backward run
# (kernels/pool/NOTES.md "ROI align forward: rows, then columns", "... backward: columns, then
# rows). And at most SEPARABLE_MAX_PAIRS (box, bin row) pairs: each block of the backward's
# second pass (one per image row and 4096 elements) tests every pair against its row, which
# costs more than the atomics save once thousands of small boxes (a few channels each) qualify.
SEPARABLE_MAX_ROW_SUMS = 1 << 24
SEPARABLE_MAX_PAIRS = 1024
SEPARABLE_THREADS = 256     # kSeparableThreads
SEPARABLE_GRAD_ELEMENTS_PER_THREAD = 16     # roi_align_separable_grad.cu's kElementsPerThread


def uses_separable(geom: RoiGeometry) -> bool:
    """Whether the forward runs the two passes of roi_align_separable.cu (see above)."""
    return (geom.sampling_ratio <= 0 and not uses_tables(geom)
            and geom.K * geom.PH * geom.C * geom.W <= SEPARABLE_MAX_ROW_SUMS
            and geom.K * geom.PH <= SEPARABLE_MAX_PAIRS)


def _separable_scratch(xp, geom: RoiGeometry, dtype, more_blocks: int):
    """(the scratch of the separable passes: K * PH * C * W accumulator-typed entries, the first
    pass's blocks per bin row); a ValueError naming the boxes where the scratch's indices or a
    grid (the first pass's, or ``more_blocks``, the second's) pass int32."""
    slab = geom.C * geom.W
    blocks_per_bin_row = -(-slab // SEPARABLE_THREADS)
    bin_rows = geom.K * geom.PH
    if max(bin_rows * blocks_per_bin_row, bin_rows * slab, more_blocks) > INT32_MAX:
        raise ValueError(f"roi_align: {geom.K} boxes of {geom.C} channels need more blocks than "
                         "a launch holds: split the boxes")
    return empty(xp, (bin_rows * slab,), acc_dtype(dtype)), blocks_per_bin_row


def _separable_forward(xp, geom: RoiGeometry, x, rois, y, data_format: str,
                       executor: str) -> None:
    channel_blocks = -(-geom.C // SEPARABLE_THREADS)
    bin_rows = geom.K * geom.PH
    row_sums, blocks_per_bin_row = _separable_scratch(xp, geom, x.dtype,
                                                      bin_rows * geom.PW * channel_blocks)
    t, layout = ctype(x.dtype), nhwc(data_format)
    _, *sizes = _common_args(geom, x.dtype)        # every size but K, which the grid carries
    launch(ROI_ALIGN_SEPARABLE, f"roi_align_separable_rows<{t}, {layout}>", executor,
           (bin_rows * blocks_per_bin_row,), (SEPARABLE_THREADS,),
           (x, rois, row_sums, i32(blocks_per_bin_row), *sizes))
    launch(ROI_ALIGN_SEPARABLE, f"roi_align_separable_columns<{t}, {layout}>", executor,
           (bin_rows * geom.PW * channel_blocks,), (SEPARABLE_THREADS,),
           (row_sums, rois, y, i32(channel_blocks), *sizes))


def _separable_grad(xp, geom: RoiGeometry, grad_output, rois, data_format: str, executor: str):
    """roi_align_separable_grad.cu's two passes: every element of the gradient written once."""
    dtype = grad_output.dtype
    per_block = SEPARABLE_THREADS * SEPARABLE_GRAD_ELEMENTS_PER_THREAD
    blocks_per_row = -(-(geom.C * geom.W) // per_block)
    image_rows = geom.N * geom.H
    col_sums, blocks_per_bin_row = _separable_scratch(xp, geom, dtype,
                                                      image_rows * blocks_per_row)
    grad_input = empty(xp, geom.input_shape(data_format), dtype)
    t, layout = ctype(dtype), nhwc(data_format)
    k, *sizes = _common_args(geom, dtype)
    launch(ROI_ALIGN_SEPARABLE_GRAD, f"roi_align_separable_grad_columns<{t}, {layout}>", executor,
           (geom.K * geom.PH * blocks_per_bin_row,), (SEPARABLE_THREADS,),
           (grad_output, rois, col_sums, i32(blocks_per_bin_row), *sizes))
    launch(ROI_ALIGN_SEPARABLE_GRAD, f"roi_align_separable_grad_rows<{t}, {layout}>", executor,
           (image_rows * blocks_per_row,), (SEPARABLE_THREADS,),
           (col_sums, rois, grad_input, i32(blocks_per_row), k, *sizes))
    return grad_input


# An NCHW atomic backward accumulates in an NHWC scratch, transposed once at the end, where
# its sample-corner atomics number at least this many per input element (each of those 4
# atomics per sample needs a 32-byte sector of its own in NCHW, an eighth of a line in NHWC; the
# scratch costs one extra read and write of the input's size: kernels/pool/NOTES.md "ROI align
# backward: NHWC accumulation"). With adaptive sampling a bin counts one sample (at least).
NHWC_SCATTER_MIN_ATOMICS_PER_ELEMENT = 1


def scatters_through_nhwc(geom: RoiGeometry) -> bool:
    """Whether an NCHW atomic backward adds into an NHWC scratch (see above)."""
    samples = max(geom.sampling_ratio, 1) ** 2
    atomics = 4 * geom.K * geom.C * geom.PH * geom.PW * samples
    return atomics >= NHWC_SCATTER_MIN_ATOMICS_PER_ELEMENT * geom.N * geom.C * geom.H * geom.W


def _bins(geom: RoiGeometry, channels_per_thread: int) -> int:
    """Output bins as the kernel's threads count them (a thread's channels are one bin)."""
    return geom.K * -(-geom.C // channels_per_thread) * geom.PH * geom.PW


def lanes_per_bin(geom: RoiGeometry, data_format: str, channels_per_thread: int = 1) -> int:
    """Lanes sharing one output bin (a power of two, 1 to 32): enough for the bins to fill
    TARGET_THREADS, no more than the samples of a bin. In NHWC at most 8, so that a warp still
    loads 4 runs of consecutive channels."""
    bins = _bins(geom, channels_per_thread)
    cap = min(8 if data_format == "NHWC" else 32, _samples_per_bin_bound(geom))
    lanes = 1
    while lanes * 2 <= cap and bins * lanes < TARGET_THREADS:
        lanes *= 2
    return lanes


def _common_args(geom: RoiGeometry, dtype):
    return (i32(geom.K), i32(geom.N), i32(geom.C), i32(geom.H), i32(geom.W), i32(geom.PH),
            i32(geom.PW), acc_scalar(dtype, geom.spatial_scale), i32(geom.sampling_ratio),
            i32(1 if geom.aligned else 0))


def _bin_grid(geom: RoiGeometry, lanes: int, channels_per_thread: int = 1):
    threads = _bins(geom, channels_per_thread) * lanes
    return (max(1, min(-(-threads // BLOCK), MAX_BLOCKS)),)


def roi_align(geom: RoiGeometry, x, rois, *, data_format: str, executor: str,
              separable: bool | None = None, tables: bool | None = None,
              groups: bool | None = None, channels: int | None = None):
    """For tests and bench.roi_align_kernels: ``separable`` runs the separable kernels (default
    ``uses_separable``), else ``tables`` a tabled kernel (default ``uses_tables``), ``groups`` the
    grouped one (default ``uses_groups``); ``channels``: the lanes kernel's channels per thread
    (default ``forward_channels``)."""
    xp = xp_for(executor)
    x = contiguous(xp, x)
    rois = contiguous(xp, rois, acc_dtype(x.dtype))
    shape = geom.output_shape(data_format)
    check_int32(x, math.prod(shape))     # before the allocation it sizes
    y = empty(xp, shape, x.dtype)
    if separable if separable is not None else uses_separable(geom):
        _separable_forward(xp, geom, x, rois, y, data_format, executor)
        return y
    if tables if tables is not None else uses_tables(geom):
        if groups if groups is not None else uses_groups(geom, data_format):
            _grouped_forward(xp, geom, x, rois, y, data_format, executor)
        else:
            _tabled_forward(geom, x, rois, y, data_format, executor)
        return y
    if channels is None:
        channels = forward_channels(x, data_format, executor)
    lanes = lanes_per_bin(geom, data_format, channels)
    launch(ROI_ALIGN, f"roi_align_forward<{ctype(x.dtype)}, {nhwc(data_format)}, {channels}>",
           executor, _bin_grid(geom, lanes, channels), (BLOCK,),
           (x, rois, y, *_common_args(geom, x.dtype), i32(lanes)))
    return y


def grad_roi_align(geom: RoiGeometry, grad_output, rois, *, data_format: str,
                   deterministic: bool, executor: str, separable: bool | None = None):
    """``separable`` (for tests and the bench tools): run the separable passes, which are
    deterministic, in either mode (default ``uses_separable``)."""
    xp = xp_for(executor)
    grad_output = contiguous(xp, grad_output)
    dtype = grad_output.dtype
    rois = contiguous(xp, rois, acc_dtype(dtype))
    shape = geom.input_shape(data_format)
    check_int32(grad_output, geom.N * geom.C * geom.H * geom.W)
    if separable if separable is not None else uses_separable(geom):
        return _separable_grad(xp, geom, grad_output, rois, data_format, executor)
    layout = nhwc(data_format)
    if deterministic:
        grad_input = empty(xp, shape, dtype)
        tiles = -(-geom.H // GATHER_TILE[0]) * -(-geom.W // GATHER_TILE[1])
        launch(ROI_ALIGN_GATHER, f"roi_align_backward_gather<{ctype(dtype)}, {layout}>", executor,
               (tiles, min(geom.N, MAX_GRID_Y)), (GATHER_BLOCK,),
               (grad_output, rois, grad_input, *_common_args(geom, dtype)))
        return grad_input
    through_nhwc = data_format == "NCHW" and scatters_through_nhwc(geom)
    # the threads' order and the accumulator's layout
    scatter_format = "NHWC" if through_nhwc else data_format
    lanes = lanes_per_bin(geom, scatter_format)
    name = f"roi_align_backward_atomic<{ctype(dtype)}, {nhwc(scatter_format)}, {layout}>"

    def scatter(accumulator):
        launch(ROI_ALIGN, name, executor, _bin_grid(geom, lanes), (BLOCK,),
               (grad_output, rois, accumulator, *_common_args(geom, dtype), i32(lanes)))

    return accumulate_to(xp, shape, dtype, scatter, executor, through_nhwc=through_nhwc)
