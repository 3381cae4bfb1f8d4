"""Launchers of the data-gradient kernels (kernels/conv/dgrad_*.cu): grad input of conv2d and,
with a bias, conv_transpose2d.

Algorithms (the kernels' headers say how each works):
- "implicit_gemm": per group and stride phase, an implicit GEMM of dy and the RSKC-transposed
  filter; strided and dilated cases without a MAC on an inserted zero. float16 and bfloat16 on
  the tensor cores (``conv2d_dgrad_implicit_gemm_mma``) unless ``math="cuda_cores"``; with
  channels-last dy, K/groups a multiple of 8 and 16-byte aligned arrays, the kernel that copies
  both operands 8 channels at a time with cp.async (``conv2d_dgrad_implicit_gemm_mma_vec``, the
  filter RSCK-transposed; ``vector_kernel``); launcher option ``math="wgmma"`` runs that case
  on Hopper's warpgroup tensor cores (``conv2d_dgrad_implicit_gemm_wgmma``, a family built for
  sm_90a only: a compute capability 9.0 GPU or the simulator; ``wgmma_refusal``), not chosen by
  "auto" until measured. float32 and float64 in NCHW copy the CUDA-core tiles with cp.async
  (``conv2d_dgrad_implicit_gemm_async``, ``pick_loads``; launcher option ``loads``).
- "im2col_gemm": columns = W^T * dy (a GEMM into an accumulator-typed column buffer, per batch
  chunk), then col2im as a gather (one thread per dx element).
- "pointwise": 1x1 filters, dx = W^T * dy as a batched GEMM on the tensors.
- "depthwise": C/groups == 1. Stride 1 with one filter per channel: the forward depthwise
  kernels (direct, tiled, sliding window) over dy with the filters rotated
  (geometry.data_gradient_geometry); otherwise one thread per dx element, the channel's
  filters in shared memory (kernels/conv/dgrad_depthwise.cu).
- "direct": one thread per dx element over every filter of its group and tap of its phase.
- "winograd_nonfused": 3x3 filters, stride 1, dilation 1: the forward Winograd F(4x4, 3x3)
  convolution of dy with the rotated filters (geometry.data_gradient_geometry).
Every dx element is written exactly once by one thread: all of them are deterministic.
"""
from __future__ import annotations

import functools

from .._args import as_choice
from .._kernels import CUDA_TYPES, cuda_type, register
from .._plans import apply, derived
from ..layout.launch_transpose import permuted
from .gemm_tile import GemmTile, MmaTile
from .launch_bwd_common import (DEFAULT_SMEM_BYTES, EPILOGUE_BIAS, GRID_YZ_LIMIT, acc_dtype,
                                array_module, batch_chunks, bool_name, ceil_div,
                                check_weight_size, column_buffer_refusal, column_images,
                                contiguous, i32, launch, output, shape_args, type_names)
from . import launch_depthwise, launch_winograd
from .split_k import SplitK, gemm_splits
from .geometry import data_gradient_geometry
from .launch_common import (ASYNC_DTYPES, DATA_GRAD_LARGE_WARPS_MIN_K, LOADS, TENSOR_CORE_DTYPES,
                            VECTOR_CHANNELS, WARP_TILES, ConvCall, async_tile, choose_loads,
                            decoder_args, is_aligned, uses_tensor_cores, wgmma_tile)
from .launch_common import vector_tile as common_vector_tile
from .launch_common import wgmma_refusal as common_wgmma_refusal

TILE = GemmTile(block_m=128, block_n=64, block_k=8, thread_m=8, thread_n=4)
# The implicit GEMM's tensor-core tile (16-bit dtypes): the same 128 x 64 block, 8 warps of 32 x 32.
MMA_TILE = MmaTile(block_m=128, block_n=64, block_k=32, warp_m=32, warp_n=32)
THREADS = 256  # the element-wise kernels (direct, depthwise, col2im)

_TYPES = type_names()
_LAYOUTS = (False, True)  # NHWC?


def _names(template: str, layouts=True, tile: bool = False) -> list[str]:
    names = []
    for t in _TYPES:
        for nhwc in (_LAYOUTS if layouts else (None,)):
            args = [t] + ([bool_name(nhwc)] if nhwc is not None else []) + \
                   ([TILE.template_args] if tile else [])
            names.append(f"{template}<{', '.join(args)}>")
    return names


def vector_tile(gemm_k: int, warp_tiles: str = "auto") -> MmaTile:
    """The tensor-core tile stored along k, copied 8 channels at a time through cp.async
    stages, on the warps launch_common.vector_tile picks for a GEMM of depth ``gemm_k``."""
    return common_vector_tile(MMA_TILE, gemm_k, warp_tiles,
                              large_from_k=DATA_GRAD_LARGE_WARPS_MIN_K)


_IMPLICIT_NAMES = _names("conv2d_dgrad_implicit_gemm", tile=True) + [
    f"conv2d_dgrad_implicit_gemm_mma<{CUDA_TYPES[dt]}, {bool_name(nhwc)}, {MMA_TILE.template_args}>"
    for dt in TENSOR_CORE_DTYPES for nhwc in _LAYOUTS] + [
    f"conv2d_dgrad_implicit_gemm_mma_vec<{CUDA_TYPES[dt]}, {vector_tile(0, warps).template_args}>"
    for dt in TENSOR_CORE_DTYPES for warps in ("large", "small")] + [
    f"conv2d_dgrad_implicit_gemm_async<{CUDA_TYPES[dt]}, {bool_name(nhwc)}, "
    f"{async_tile(TILE).template_args}>" for dt in ASYNC_DTYPES for nhwc in _LAYOUTS]
IMPLICIT_GEMM = register("conv/dgrad_implicit_gemm.cu", _IMPLICIT_NAMES, hot=_IMPLICIT_NAMES)

# Hopper's warpgroup tensor cores (math="wgmma"): the vector kernel's case on MMA_TILE's block.
WGMMA_KERNEL = "conv2d_dgrad_implicit_gemm_wgmma"
WGMMA_TILE = wgmma_tile(MMA_TILE)
_WGMMA_NAMES = [f"{WGMMA_KERNEL}<{CUDA_TYPES[dt]}, {WGMMA_TILE.template_args}>"
                for dt in TENSOR_CORE_DTYPES]
WGMMA_FAMILY = register("conv/dgrad_implicit_gemm_wgmma.cu", _WGMMA_NAMES, hot=_WGMMA_NAMES,
                        arch="sm_90a")

_COLUMNS_NAMES = _names("conv2d_dgrad_gemm_columns", tile=True)
IM2COL_GEMM = register("conv/dgrad_im2col_gemm.cu",
                       _COLUMNS_NAMES + _names("conv2d_dgrad_col2im"), hot=_COLUMNS_NAMES)

DIRECT = register("conv/dgrad_direct.cu", _names("conv2d_dgrad_direct"))

_DEPTHWISE_NAMES = (_names("conv2d_dgrad_depthwise_nchw", layouts=False)
                    + _names("conv2d_dgrad_depthwise_nhwc", layouts=False))
DEPTHWISE = register("conv/dgrad_depthwise.cu", _DEPTHWISE_NAMES, hot=_DEPTHWISE_NAMES)

_POINTWISE_NAMES = (_names("conv2d_dgrad_pointwise_nchw", layouts=False, tile=True)
                    + _names("conv2d_dgrad_pointwise_nhwc", layouts=False, tile=True))
POINTWISE = register("conv/dgrad_pointwise.cu",
                     _POINTWISE_NAMES + _names("conv2d_dgrad_pointwise_split_epilogue"),
                     hot=_POINTWISE_NAMES)
SPLIT_THREADS = 256  # conv2d_dgrad_pointwise_split_epilogue: one thread per dy pixel and channel


# --------------------------------------------------------------------------------------------
# applicability: None if the algorithm can run this case, else why not (a sentence)


def depthwise_smem_bytes(geom, dtype) -> int:
    return (geom.K // geom.C) * geom.R * geom.S * acc_dtype(dtype).itemsize


def why_not(algorithm: str, geom, dtype, data_format: str) -> str | None:
    if algorithm in ("implicit_gemm", "im2col_gemm", "pointwise") and geom.groups > GRID_YZ_LIMIT:
        return f"its grid has one z slice per group and groups={geom.groups} exceeds {GRID_YZ_LIMIT}"
    if algorithm == "implicit_gemm":
        phases = geom.stride_h * geom.stride_w
        if geom.groups * phases > GRID_YZ_LIMIT:
            return (f"its grid has groups * stride_h * stride_w = {geom.groups * phases} z slices, "
                    f"more than {GRID_YZ_LIMIT}")
        if ceil_div(geom.C_per_group, TILE.block_n) > GRID_YZ_LIMIT:
            return "C/groups is too large for its grid"
    elif algorithm == "pointwise":
        if (geom.R, geom.S) != (1, 1):
            return f"it needs a 1x1 filter, got {geom.R}x{geom.S}"
        channels = _pointwise_extent(data_format == "NHWC")[1]   # dx's channels per block
        if ceil_div(geom.C_per_group, channels) > GRID_YZ_LIMIT:
            return (f"its grid has C/groups / {channels} y blocks and C/groups="
                    f"{geom.C_per_group} makes more than {GRID_YZ_LIMIT}")
    elif algorithm == "depthwise":
        if geom.C_per_group != 1:
            return (f"it needs a depthwise convolution (C/groups == 1), got C/groups = "
                    f"{geom.C_per_group}")
        if data_format == "NCHW" and not launch_depthwise.runs_data_gradient(geom):
            if depthwise_smem_bytes(geom, dtype) > DEFAULT_SMEM_BYTES:
                return (f"one channel's filters ({geom.K // geom.C} x {geom.R} x {geom.S} values) "
                        f"do not fit in {DEFAULT_SMEM_BYTES} bytes of shared memory")
            if ceil_div(geom.H * geom.W, THREADS) > GRID_YZ_LIMIT:
                return "the input plane is too large for its grid"
    elif algorithm == "winograd_nonfused":
        return launch_winograd.data_gradient_refusal(geom)
    elif algorithm == "im2col_gemm":
        why = column_buffer_refusal(geom)
        if why is not None:
            return why
        if ceil_div(geom.P * geom.Q, TILE.block_n) > GRID_YZ_LIMIT:
            return "the output plane is too large for its grid"
    return None


# --------------------------------------------------------------------------------------------
# the launches


class _Call:
    """One data-gradient call: dy (grad_output, or conv_transpose2d's x) as a contiguous array,
    the weight as given (``filters``; ``weight`` its contiguous KCRS copy, made when a kernel
    reads that), the output, and what every launch needs."""

    def __init__(self, geom, weight, dy, bias, data_format: str, executor: str,
                 math: str = "auto", loads: str = "auto", warp_tiles: str = "auto"):
        self.geom, self.executor, self.math, self.loads = geom, executor, math, loads
        self.warp_tiles = warp_tiles
        self.xp = xp = array_module(executor)
        self.nhwc = data_format == "NHWC"
        self.dy = contiguous(xp, dy)
        self.filters = weight
        self.dtype = self.dy.dtype
        self.t = cuda_type(self.dtype)
        check_weight_size(geom)          # before dx is allocated
        n, c, h, w = geom.input_shape
        self.dx = output(xp, (n, h, w, c) if self.nhwc else (n, c, h, w), self.dtype, executor)
        self.bias = contiguous(xp, bias) if bias is not None else None
        # The kernels read the bias only when the epilogue flag says so; else any T pointer.
        self.bias_arg = self.bias if bias is not None else self.dx
        self.epilogue = i32(EPILOGUE_BIAS if bias is not None else 0)

    @functools.cached_property
    def weight(self):
        return self.filters_as((0, 1, 2, 3))

    def filters_as(self, axes):
        """``filters.transpose(axes)`` C-contiguous: a view, or a transposed copy (gpuconv/layout/
        launch_transpose.py ``permuted``)."""
        return permuted(self.xp, self.filters, axes, self.executor)

    @property
    def per_image(self) -> int:
        g = self.geom
        return max(g.C * g.H * g.W, g.K * g.P * g.Q)

    def chunks(self, max_images=None):
        return batch_chunks(self.geom.N, self.per_image, max_images=max_images,
                            what="one image of grad_output or of the input gradient")

    def name(self, template: str, layout: bool = True, tile: bool = False) -> str:
        args = [self.t] + ([bool_name(self.nhwc)] if layout else []) + \
               ([TILE.template_args] if tile else [])
        return f"{template}<{', '.join(args)}>"


def vector_kernel(call: _Call, tensor_cores: bool) -> bool:
    """Whether conv2d_dgrad_implicit_gemm_mma_vec runs the call: tensor cores, channels-last
    dy with K/groups a multiple of 8 (a vector never straddles a tap or a group), dy 16-byte
    aligned (the RSCK filter is made aligned by implicit_gemm)."""
    return (tensor_cores and call.nhwc and call.geom.K_per_group % VECTOR_CHANNELS == 0
            and is_aligned(call.dy, 16))


def wgmma_refusal(call: _Call) -> str | None:
    """Why math="wgmma" cannot run ``call`` (None when it can): it needs what the vector
    kernel needs (``vector_kernel``) and a compute capability 9.0 GPU (or the simulator)."""
    why = common_wgmma_refusal(WGMMA_FAMILY, call.executor, call.nhwc)
    if why is not None:
        return why
    if call.geom.K_per_group % VECTOR_CHANNELS:
        return (f"needs K/groups a multiple of {VECTOR_CHANNELS} (8-channel copies of "
                f"grad_output); got {call.geom.K_per_group}")
    if not is_aligned(call.dy, 16):
        return "needs a 16-byte aligned grad_output (8-channel copies)"
    return None


def pick_loads(dtype, nhwc: bool, tensor_cores: bool, loads: str = "auto") -> str:
    """How the implicit GEMM's CUDA-core tiles are filled (launch_common.choose_loads): "auto"
    copies with cp.async in NCHW, where ptxas sinks the register-staged kernel's global loads
    to just before their shared stores (every k-tile waits out their latency:
    kernels/conv/NOTES_backward.md "cp.async for the NCHW data gradient"), and loads through
    registers in NHWC, whose loads issue at the top of the k-tile."""
    return choose_loads(dtype, loads, tensor_cores=tensor_cores, auto_async=not nhwc)


def implicit_gemm(call: _Call) -> None:
    g = call.geom
    phases = g.stride_h * g.stride_w
    strides = (g.C * g.H * g.W, 1, g.C) if call.nhwc else (g.C * g.H * g.W, g.H * g.W, 1)
    tensor_cores = uses_tensor_cores(call.dtype, call.math)
    copies = pick_loads(call.dtype, call.nhwc, tensor_cores, call.loads) == "cp_async"
    family = IMPLICIT_GEMM
    if call.math == "wgmma":
        why = wgmma_refusal(call)
        if why is not None:
            raise ValueError(f"math='wgmma' {why}")
    if call.math == "wgmma" or vector_kernel(call, tensor_cores):
        # RSCK: the GEMM's B rows (one input channel each) are contiguous along its k (filters).
        w = call.filters_as((2, 3, 1, 0))
        if not is_aligned(w, 16):      # a view of filters laid out RSCK at an odd address
            w = derived(call.xp.copy, w)
        if call.math == "wgmma":
            tile, family = WGMMA_TILE, WGMMA_FAMILY
            name = f"{WGMMA_KERNEL}<{call.t}, {tile.template_args}>"
        else:
            # The GEMM of the largest phase: K/groups filters x its taps.
            gemm_k = g.K_per_group * ceil_div(g.R, g.stride_h) * ceil_div(g.S, g.stride_w)
            tile = vector_tile(gemm_k, call.warp_tiles)
            name = f"conv2d_dgrad_implicit_gemm_mma_vec<{call.t}, {tile.template_args}>"
    else:
        # RSKC: the GEMM's B rows (one (tap, filter) each) are contiguous along the input channels.
        w = call.filters_as((2, 3, 0, 1))
        tile = MMA_TILE if tensor_cores else async_tile(TILE) if copies else TILE
        template = "conv2d_dgrad_implicit_gemm" + ("_mma" if tensor_cores else
                                                   "_async" if copies else "")
        name = f"{template}<{call.t}, {bool_name(call.nhwc)}, {tile.template_args}>"
    smem = tile.smem_bytes(call.dtype)  # the main loop's tiles, then the staged epilogue
    for n0, n1 in call.chunks():
        # The largest phase has ceil(H / sh) x ceil(W / sw) pixels per image.
        max_m = (n1 - n0) * ceil_div(g.H, g.stride_h) * ceil_div(g.W, g.stride_w)
        grid = (ceil_div(max_m, tile.block_m), ceil_div(g.C_per_group, tile.block_n),
                g.groups * phases)
        launch(family, name, call.executor, grid, (tile.threads, 1, 1),
               (call.dy[n0:n1], w, *shape_args(g, n1 - n0), call.dx[n0:n1],
                *(i32(s) for s in strides), call.bias_arg, call.epilogue),
               shared_mem=smem)


def im2col_gemm(call: _Call) -> None:
    g = call.geom
    xp = call.xp
    acc = acc_dtype(call.dtype)
    rows = g.C * g.R * g.S
    pq = g.P * g.Q
    images = min(column_images(g, acc.itemsize), max(1, (GRID_YZ_LIMIT * TILE.block_n) // pq))
    chunks = call.chunks(max_images=images)
    longest = max(n1 - n0 for n0, n1 in chunks)
    columns = output(xp, (rows * longest * pq,), acc, call.executor)
    smem = TILE.mainloop_smem_bytes(acc.itemsize)
    gemm = call.name("conv2d_dgrad_gemm_columns", tile=True)
    col2im = call.name("conv2d_dgrad_col2im")
    for n0, n1 in chunks:
        n_images = n1 - n0
        ldc = n_images * pq
        grid = (ceil_div(g.C_per_group * g.R * g.S, TILE.block_m), ceil_div(ldc, TILE.block_n),
                g.groups)
        launch(IM2COL_GEMM, gemm, call.executor, grid, (TILE.threads, 1, 1),
               (call.weight, call.dy[n0:n1], columns, i32(ldc), i32(n_images),
                *shape_args(g, n_images)), shared_mem=smem)
        elements = n_images * g.C * g.H * g.W
        launch(IM2COL_GEMM, col2im, call.executor, (ceil_div(elements, THREADS), 1, 1),
               (THREADS, 1, 1),
               (columns, i32(ldc), i32(n_images), *shape_args(g, n_images),
                *decoder_args(g.C, g.H, g.W), call.dx[n0:n1], call.bias_arg, call.epilogue))


def _reaches_every_pixel(g) -> bool:
    """Whether a 1x1 filter's GEMM writes every dx pixel: dx row h is dy row h + pad_top, so
    with stride 1 every row is reached unless some h + pad_top falls past dy's last row, which
    happens in conv_transpose2d when output_padding exceeds padding (e.g. stride 1 with
    dilation 2 and output_padding 1)."""
    return (g.stride_h == g.stride_w == 1
            and g.H + g.pad_top <= g.P and g.W + g.pad_left <= g.Q)


def _prefill_unreached(call: _Call) -> None:
    """A 1x1 filter with a stride > 1 reaches only the pixels of the stride grid (and an
    output_padding beyond the padding adds rows it never reaches): the others get 0, or the
    bias (conv_transpose2d); the GEMM then overwrites the reached ones."""
    if call.bias is None:
        apply(_fill, call.dx, 0)
    else:
        shape = (1, 1, 1, -1) if call.nhwc else (1, -1, 1, 1)
        apply(_fill, call.dx, call.bias.reshape(shape))


def _fill(target, value) -> None:
    target[...] = value


def _pointwise_extent(nhwc: bool) -> tuple[int, int]:
    """(dy pixels, input channels) of one block of the pointwise data gradient's tile: NHWC has
    the pixels along M (grid x) and the channels along N; NCHW the other way round."""
    return (TILE.block_m, TILE.block_n) if nhwc else (TILE.block_n, TILE.block_m)


def pointwise_splits(geom, n_images: int, nhwc: bool, dtype, executor: str,
                     split_k="auto") -> int:
    """The k (filter) splits of the pointwise data gradient's GEMM over ``n_images`` images of
    ``geom`` (split_k.py: where its blocks would leave SMs idle, batch 1)."""
    pixels, channels = _pointwise_extent(nhwc)
    return gemm_splits(split_k, rows=n_images * geom.P * geom.Q, cols=geom.C_per_group,
                       groups=geom.groups, block_m=pixels, block_n=channels,
                       block_k=TILE.block_k, gemm_k=geom.K_per_group, dtype=dtype,
                       tensor_cores=False, executor=executor)


def pointwise(call: _Call, split_k="auto") -> None:
    g = call.geom
    if not _reaches_every_pixel(g):
        _prefill_unreached(call)
    smem = TILE.mainloop_smem_bytes(acc_dtype(call.dtype).itemsize)
    layout = "nhwc" if call.nhwc else "nchw"
    name = f"conv2d_dgrad_pointwise_{layout}<{call.t}, {TILE.template_args}>"
    pixels, channels = _pointwise_extent(call.nhwc)
    for n0, n1 in call.chunks():
        images = n1 - n0
        splits = pointwise_splits(g, images, call.nhwc, call.dtype, call.executor, split_k)
        elements = images * g.C * g.P * g.Q   # the partial sums: dy's pixels x dx's channels
        split = SplitK(call.xp, call.executor, call.dtype, splits, elements, unused=call.dy)
        grid = (ceil_div(images * g.P * g.Q, pixels), ceil_div(g.C_per_group, channels),
                g.groups * splits)
        launch(POINTWISE, name, call.executor, grid, (TILE.threads, 1, 1),
               (call.dy[n0:n1], call.weight, *shape_args(g, images), call.dx[n0:n1],
                call.bias_arg, call.epilogue, *split.args()), shared_mem=smem)
        if splits > 1:
            launch(POINTWISE, call.name("conv2d_dgrad_pointwise_split_epilogue"), call.executor,
                   (ceil_div(elements, SPLIT_THREADS), 1, 1), (SPLIT_THREADS, 1, 1),
                   (split.partial, i32(splits), *shape_args(g, images), call.dx[n0:n1],
                    call.bias_arg, call.epilogue))


def depthwise(call: _Call, variant: str = "auto") -> None:
    """``variant`` picks the forward kernel where those run the gradient (tests; ``launch_depthwise.
    choose_variant``)."""
    g = call.geom
    if launch_depthwise.runs_data_gradient(g):
        launch_depthwise.run(_as_forward(call), variant=variant, flip=True)
    elif call.nhwc:
        # (R, S, K): a warp's filter reads are contiguous like its dy reads.
        w_rsk = call.filters_as((2, 3, 1, 0)).reshape(g.R, g.S, g.K)
        name = f"conv2d_dgrad_depthwise_nhwc<{call.t}>"
        for n0, n1 in call.chunks():
            elements = (n1 - n0) * g.H * g.W * g.C
            launch(DEPTHWISE, name, call.executor, (ceil_div(elements, THREADS), 1, 1),
                   (THREADS, 1, 1), (call.dy[n0:n1], w_rsk, *shape_args(g, n1 - n0),
                                     *decoder_args(g.C, g.H, g.W), call.dx[n0:n1],
                                     call.bias_arg, call.epilogue))
    else:
        name = f"conv2d_dgrad_depthwise_nchw<{call.t}>"
        smem = depthwise_smem_bytes(g, call.dtype)
        for n0, n1 in call.chunks():
            grid = ((n1 - n0) * g.C, ceil_div(g.H * g.W, THREADS), 1)
            launch(DEPTHWISE, name, call.executor, grid, (THREADS, 1, 1),
                   (call.dy[n0:n1], call.weight, *shape_args(g, n1 - n0),
                    *decoder_args(g.C, g.H, g.W), call.dx[n0:n1], call.bias_arg, call.epilogue),
                   shared_mem=smem)


def direct(call: _Call) -> None:
    g = call.geom
    name = call.name("conv2d_dgrad_direct")
    for n0, n1 in call.chunks():
        elements = (n1 - n0) * g.C * g.H * g.W
        launch(DIRECT, name, call.executor, (ceil_div(elements, THREADS), 1, 1), (THREADS, 1, 1),
               (call.dy[n0:n1], call.weight, *shape_args(g, n1 - n0),
                *decoder_args(g.C, g.H, g.W), call.dx[n0:n1], call.bias_arg, call.epilogue))


def winograd(call: _Call) -> None:
    launch_winograd.forward(_as_forward(call), flip=True)


def _as_forward(call: _Call) -> ConvCall:
    """The stride-1 data gradient as the forward convolution of dy with the rotated filters
    (geometry.data_gradient_geometry): the kernels that run it take ``flip``; a
    conv_transpose2d bias rides the forward epilogue."""
    g = call.geom
    return ConvCall(geom=data_gradient_geometry(g), nhwc=call.nhwc, executor=call.executor,
                    x=call.dy, filters=call.filters, bias=call.bias, residual=None, out=call.dx,
                    out_sN=g.C * g.H * g.W, activation=None)


RUNNERS = {"implicit_gemm": implicit_gemm, "im2col_gemm": im2col_gemm, "pointwise": pointwise,
           "depthwise": depthwise, "direct": direct, "winograd_nonfused": winograd}


def run(algorithm: str, geom, weight, dy, bias, data_format: str, executor: str,
        math: str = "auto", loads: str = "auto", warp_tiles: str = "auto"):
    """dx for an algorithm the caller has checked (``why_not`` is None). ``math``
    ("auto" | "cuda_cores" | "tensor_cores" | "wgmma"): implicit_gemm's multiply-accumulate
    (``wgmma_refusal`` says where "wgmma" runs); ``loads``
    ("auto" | "registers" | "cp_async"): how its CUDA-core tiles are filled (``pick_loads``);
    ``warp_tiles`` ("auto" | "large" | "small"): the warps of its 8-channel tensor-core tile
    (``vector_tile``)."""
    call = _Call(geom, weight, dy, bias, data_format, executor, math,
                 as_choice("loads", loads, LOADS), as_choice("warp_tiles", warp_tiles, WARP_TILES))
    RUNNERS[algorithm](call)
    return call.dx

