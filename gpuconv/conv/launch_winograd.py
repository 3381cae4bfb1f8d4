"""Launcher of kernels/conv/winograd.cu: the algorithm "winograd_nonfused", Winograd F(MxM, 3x3)
(output tiles of M = 2 or 4) for 3x3 convolutions with stride 1 and dilation 1, in all three
directions (``forward`` here; the data gradient runs ``forward(..., flip=True)`` and the weight
gradient the transforms and ``filter_gradient`` from their launchers).

Non-fused, as cuDNN's WINOGRAD_NONFUSED (whose name it takes, leaving "winograd" to a fused
kernel): transform, then ALPHA^2 GEMMs (ALPHA = M + 2), then transform back. The GEMMs (one per
element xi of the ALPHA x ALPHA transform domain, per group) are the project's grouped 1x1
convolution over the transformed tensors, seen as one image of ALPHA^2*C channels in
ALPHA^2*groups groups with one pixel per M x M output tile: ``launch_pointwise`` for the
forward and data gradient (U[xi] (K x C/g) times V[xi] (C/g x tiles)), the 1x1 weight
gradient's implicit GEMM with its split-K over the tiles for the weight gradient (Z[xi]
(K x tiles) times V[xi]^T).
The transformed tensors are in the accumulator type (float for 16-bit inputs; winograd.cu says
why) and live in a workspace bounded like im2col_gemm's column buffer (``workspace_bytes``,
GPUCONV_WORKSPACE_BYTES): the batch is processed in chunks of whole images that fit, and every
transformed tensor of a launch stays under LAUNCH_ELEMENTS elements (32-bit offsets).

Why: the 16 products of F(2x2, 3x3)'s tile make 4 outputs of 9 taps each, 4/9 of the direct
convolution's multiply-adds, and F(4x4, 3x3)'s 36 make 16, 1/4 of them; the price is the
transforms' memory traffic, ALPHA^2 * (C + K) values per tile written and read once (4 per
output for M = 2, 2.25 for M = 4), which the GEMM's C*K products per tile outweigh from about
128 channels on, and from 64 over large batches in the forward pass (measured: MIN_CHANNELS;
kernels/conv/NOTES.md "Winograd").

Output tile (``output_tile``, a launcher option: "auto", 2 or 4): "auto" takes, for the forward
convolution and the data gradient, the tile with the fewest transformed elements per image
(F(4x4, 3x3) on every plane of 7x7 or more: 1.36x fewer at 14x14, 1.78x at 7x7, 28x28 and
56x56), and F(2x2, 3x3) for the weight gradient, whose sums over every tile of the batch would
carry F(4x4)'s larger rounding (AUTO_TILE).
"""
from __future__ import annotations

import numpy as np

from .._kernels import CUDA_TYPES, cuda_type, register
from . import launch_pointwise
from .geometry import ConvGeometry, data_gradient_geometry
from .launch_bwd_common import LAUNCH_ELEMENTS, acc_dtype, ceil_div, launch, output
from .launch_common import GRID_YZ_LIMIT, ConvCall, cuda_bool, gemm_grid_refusal, shape_args
from .launch_im2col_gemm import workspace_limit

# "auto" takes Winograd (on CUDA cores) from this many channels and filters per group on: the
# transforms move ALPHA^2 * (C + K) values per tile for ALPHA^2 * C * K products (the module's
# docstring). The forward pass also from FORWARD_MIN_CHANNELS on over at least
# FORWARD_NARROW_MIN_PIXELS output pixels (measured on an H100, kernels/conv/NOTES.md "Winograd
# on the H100": 56x56 x 64 channels at batch 32, 100352 pixels, F(4x4) 207 us vs the implicit
# GEMM's 250 and cuDNN's 240; at batch 1, 3136 pixels, 205 us vs 50).
MIN_CHANNELS = 128
FORWARD_MIN_CHANNELS = 64
FORWARD_NARROW_MIN_PIXELS = 16384
# ... and in every direction from this many output pixels (N * P * Q) on. Measured on an H100
# (bench/results/20261122T1604Z-H100-batch1-deeplab, ResNet-50 batch 1, fp32): at 49-784 pixels
# the four launches and their small GEMMs take 180-190 us where im2col + GEMM takes 66-74 us
# (data gradient) and the implicit GEMM 55-63 us (weight gradient); at batch 32 the 7x7 layer
# (1568 pixels) gains (data 218 vs 266 us, weight 220 vs 382 us). The forward pass since split-K
# (split_k.py) likewise: batch 1, 7x7 x 512 implicit GEMM 88-113 us vs Winograd 298-329,
# 14x14 x 256 75-91 vs 195-271, 28x28 x 128 65-92 vs 200-292 (bench/results/*-b1-splitk*).
MIN_PIXELS = 1024

# Output tile edges M of the F(MxM, 3x3) kernels, and what output_tile="auto" takes per
# direction (the module's docstring).
OUTPUT_TILES = (2, 4)
OUTPUT_TILE_CHOICES = ("auto",) + OUTPUT_TILES
# None: by plane size (choose_output_tile).
AUTO_TILE = {"forward": None, "data_grad": None, "weight_grad": 2}
THREADS = 256
# conv2d_winograd_output_transform's w_mode bits (kernels/conv/winograd.cu, gc::FILTERS_*).
FILTERS_FLIP, FILTERS_KRSC = 1, 2
TYPES = tuple(CUDA_TYPES.values())


def elements(m: int) -> int:
    """Elements of F(m x m, 3x3)'s transform tile: its GEMMs per group."""
    return (m + 2) ** 2


def choose_output_tile(direction: str, geom, output_tile="auto") -> int:
    """The output tile edge M for ``direction`` ("forward" | "data_grad" | "weight_grad") of
    ``geom`` (for the data gradient, the equivalent forward convolution)."""
    if output_tile == "auto":
        if AUTO_TILE[direction] is None:
            # The fewest transformed elements per image (GEMM products and transform traffic
            # both scale with them); a tie (5x5, 6x6 planes) keeps the exact F(2x2, 3x3).
            return min(OUTPUT_TILES, key=lambda m: (elements(m) * tiles_per_image(geom, m), m))
        return AUTO_TILE[direction]
    if type(output_tile) is not int or output_tile not in OUTPUT_TILES:
        raise ValueError(f"output_tile must be one of {OUTPUT_TILE_CHOICES}; got {output_tile!r}")
    return output_tile


def _layout_names(template: str) -> list[str]:
    return [f"{template}<{t}, {cuda_bool(nhwc)}, {m}>" for t in TYPES for nhwc in (False, True)
            for m in OUTPUT_TILES]


_NAMES = ([f"conv2d_winograd_filter_transform<{t}, {cuda_bool(flip)}, {m}>"
           for t in TYPES for flip in (False, True) for m in OUTPUT_TILES]
          + _layout_names("conv2d_winograd_input_transform")
          + _layout_names("conv2d_winograd_output_transform")
          + _layout_names("conv2d_winograd_grad_output_transform")
          + _layout_names("conv2d_winograd_filter_grad_transform"))
FAMILY = register("conv/winograd.cu", name_expressions=_NAMES,
                  hot=[n for n in _NAMES if "<float" in n or "<__half" in n])


def refusal(geom, m: int | None = None) -> str | None:
    """Why the Winograd kernels with output tile ``m`` (None: the forward's "auto" tile) cannot
    run ``geom`` (None when they can). The weight gradient follows the same rule on the forward
    convolution it differentiates; the data gradient: data_gradient_refusal."""
    why = _filter_refusal(geom)
    if why is not None:
        return why
    if m is None:
        m = choose_output_tile("forward", geom)
    e = elements(m)
    if e * geom.groups > GRID_YZ_LIMIT:
        return (f"its GEMMs have {e} * groups = {e * geom.groups} grid z slices, "
                f"more than {GRID_YZ_LIMIT}")
    if e * geom.K * geom.C_per_group > LAUNCH_ELEMENTS:
        return (f"the transformed filters ({e} x {geom.K} x {geom.C_per_group}) exceed "
                f"{LAUNCH_ELEMENTS} elements")
    if e * max(geom.C, geom.K) * tiles_per_image(geom, m) > LAUNCH_ELEMENTS:
        return (f"one image's transformed tensors ({e} x {max(geom.C, geom.K)} channels x "
                f"{tiles_per_image(geom, m)} tiles) exceed {LAUNCH_ELEMENTS} elements")
    return None


def _filter_refusal(geom) -> str | None:
    """What F(MxM, 3x3) needs of the filter and its placement: 3x3, stride 1, dilation 1."""
    if (geom.R, geom.S) != (3, 3):
        return f"winograd_nonfused (F(MxM, 3x3)) needs a 3x3 filter, got {geom.R}x{geom.S}"
    if (geom.stride_h, geom.stride_w) != (1, 1):
        return f"winograd_nonfused needs stride 1, got {(geom.stride_h, geom.stride_w)}"
    if (geom.dil_h, geom.dil_w) != (1, 1):
        return f"winograd_nonfused needs dilation 1, got {(geom.dil_h, geom.dil_w)}"
    return None


def pays_off(geom, direction: str, dtype) -> bool:
    """Whether "auto" should prefer Winograd for a case it can run in ``direction`` ("forward",
    "data_grad", "weight_grad"): MIN_PIXELS, and MIN_CHANNELS (the forward pass also
    FORWARD_MIN_CHANNELS over FORWARD_NARROW_MIN_PIXELS); and its least workspace within the
    workspace limit (forced, it takes that least whatever the limit, as im2col takes one image)."""
    channels = min(geom.C_per_group, geom.K_per_group)
    pixels = geom.N * geom.P * geom.Q
    if pixels < MIN_PIXELS:
        return False
    if least_workspace_bytes(geom, direction, dtype) > workspace_limit():
        return False
    if direction == "forward":
        return channels >= MIN_CHANNELS or (channels >= FORWARD_MIN_CHANNELS
                                            and pixels >= FORWARD_NARROW_MIN_PIXELS)
    return channels >= MIN_CHANNELS


def least_workspace_bytes(geom, direction: str, dtype) -> int:
    """The workspace Winograd takes in ``direction`` with one image per chunk: the transformed
    filters (forward, data gradient) or their gradient (weight gradient), ALPHA^2 * K * C/groups
    values, and one image's transformed input and output."""
    rotated = direction == "data_grad"
    g = data_gradient_geometry(geom) if rotated else geom
    m = choose_output_tile(direction, g)
    tiles = tiles_per_image(g, m)
    values = elements(m) * (g.K * g.C_per_group + (g.C + g.K) * tiles)
    return values * acc_dtype(dtype).itemsize


def tile_grid(geom, m: int) -> tuple[int, int]:
    """m x m output tiles per image along the rows and the columns (the last may overhang)."""
    return ceil_div(geom.P, m), ceil_div(geom.Q, m)


def tiles_per_image(geom, m: int) -> int:
    tiles_h, tiles_w = tile_grid(geom, m)
    return tiles_h * tiles_w


def images_per_chunk(geom, m: int, acc_itemsize: int, workspace_bytes: int | None = None) -> int:
    """Images whose transformed input and output fit in the workspace (>= 1) and in
    LAUNCH_ELEMENTS per tensor."""
    tiles, e = tiles_per_image(geom, m), elements(m)
    per_image = e * (geom.C + geom.K) * tiles * acc_itemsize
    by_workspace = workspace_limit(workspace_bytes) // per_image
    by_index = LAUNCH_ELEMENTS // (e * max(geom.C, geom.K) * tiles)
    return max(1, min(by_workspace, by_index, geom.N))


def gemm_geometry(geom, m: int, tiles: int, *, rows_in: int, rows_out: int) -> ConvGeometry:
    """The ALPHA^2 GEMMs as one 1x1 convolution: one image of ALPHA^2 * rows_in channels and
    ``tiles`` pixels to ALPHA^2 * rows_out channels, ALPHA^2 * groups groups."""
    e = elements(m)
    return ConvGeometry(N=1, C=e * rows_in, H=1, W=tiles, K=e * rows_out, R=1, S=1,
                        P=1, Q=tiles, pad_top=0, pad_bottom=0, pad_left=0, pad_right=0,
                        stride_h=1, stride_w=1, dil_h=1, dil_w=1, groups=e * geom.groups)


def _transformed(flat, m: int, rows: int, tiles: int, nhwc: bool):
    """A transformed tensor as the GEMM's 1x1 image, (1, ALPHA^2*rows, 1, tiles) or NHWC."""
    e = elements(m)
    shape = (1, 1, tiles, e * rows) if nhwc else (1, e * rows, 1, tiles)
    return flat[:e * rows * tiles].reshape(shape)


def workspace(xp, geom, m: int, rows: int, images: int, acc, executor: str):
    """A flat buffer for one transformed tensor of ``rows`` channels over ``images`` images'
    tiles (the chunk size of images_per_chunk); later, smaller chunks use its front."""
    return output(xp, (elements(m) * rows * images * tiles_per_image(geom, m),), acc, executor)


def _grid(threads_total: int) -> tuple[int, int, int]:
    return (ceil_div(threads_total, THREADS), 1, 1)


def transform_filters(xp, weight, krsc: bool, m: int, rows: int, cols: int, groups: int,
                      flip: bool, executor: str):
    """U = G g G^T of every 3x3 filter: (ALPHA^2 * rows, cols) in the accumulator type, row
    xi * rows + r (kernels/conv/winograd.cu, conv2d_winograd_filter_transform); ``weight``
    C-contiguous, its memory in KRSC order when ``krsc`` (``ConvCall.weight_in_place``)."""
    u = output(xp, (elements(m) * rows, cols), acc_dtype(weight.dtype), executor)
    name = f"conv2d_winograd_filter_transform<{cuda_type(weight.dtype)}, {cuda_bool(flip)}, {m}>"
    launch(FAMILY, name, executor, _grid(rows * cols), (THREADS, 1, 1),
           (weight, u, np.int32(rows), np.int32(cols), np.int32(groups), np.int32(krsc)))
    return u


def transform_tiles(template: str, xp_source, flat, m: int, rows: int, geom, n_images: int,
                    nhwc: bool, executor: str):
    """One of the tile transforms (``template``: conv2d_winograd_input_transform over the input,
    conv2d_winograd_grad_output_transform over the output gradient) of ``n_images`` images into
    the front of the workspace ``flat``; returns the transformed tensor as the GEMM's image."""
    tiles_h, tiles_w = tile_grid(geom, m)
    tiles = n_images * tiles_h * tiles_w
    transformed = _transformed(flat, m, rows, tiles, nhwc)
    launch(FAMILY, f"{template}<{cuda_type(xp_source.dtype)}, {cuda_bool(nhwc)}, {m}>", executor,
           _grid(tiles * rows), (THREADS, 1, 1),
           (xp_source, transformed, np.int32(tiles_h), np.int32(tiles_w),
            *shape_args(geom, n_images)))
    return transformed


def forward(call: ConvCall, *, flip: bool = False, workspace_bytes: int | None = None,
            tile_widths: str = "auto", output_tile="auto") -> None:
    """The convolution ``call.geom`` (refusal() is None) into ``call.out`` with its epilogue.
    ``flip``: ``call.geom`` is the forward convolution equivalent to a data gradient (input
    dy, output dx) and ``call.filters`` the weight of the convolution differentiated, whose
    filters the transform rotates and transposes (launch_bwd_data.winograd)."""
    g = call.geom
    m = choose_output_tile("data_grad" if flip else "forward", g, output_tile)
    why = refusal(g, m)
    if why is not None:
        raise ValueError(why)
    xp, executor = call.xp, call.executor
    acc = acc_dtype(call.dtype)
    e = elements(m)
    # Both transforms read the filters in place (channels_last ones too: no copy).
    filters, krsc = call.weight_in_place()
    u = transform_filters(xp, filters, krsc, m, g.K, g.C_per_group, g.groups, flip, executor)
    w_mode = np.int32((FILTERS_FLIP if flip else 0) | (FILTERS_KRSC if krsc else 0))
    weight = u.reshape(e * g.K, g.C_per_group, 1, 1)
    images = images_per_chunk(g, m, acc.itemsize, workspace_bytes)
    tiles_h, tiles_w = tile_grid(g, m)
    v = workspace(xp, g, m, g.C, images, acc, executor)
    out_products = workspace(xp, g, m, g.K, images, acc, executor)
    back = f"conv2d_winograd_output_transform<{call.cuda_type}, {cuda_bool(call.nhwc)}, {m}>"
    for chunk in call.chunks(images):
        n_images = chunk.geom.N
        tiles = n_images * tiles_h * tiles_w
        vv = transform_tiles("conv2d_winograd_input_transform", chunk.x, v, m, g.C, g, n_images,
                             call.nhwc, executor)
        mm = _transformed(out_products, m, g.K, tiles, call.nhwc)
        products = ConvCall(geom=gemm_geometry(g, m, tiles, rows_in=g.C, rows_out=g.K),
                            nhwc=call.nhwc, executor=executor, x=vv, filters=weight, bias=None,
                            residual=None, out=mm, out_sN=e * g.K * tiles, activation=None)
        launch_pointwise.run(products, tile_widths=tile_widths)
        launch(FAMILY, back, executor, _grid(tiles * g.K), (THREADS, 1, 1),
               (mm, chunk.x, filters, w_mode, np.int32(tiles_h), np.int32(tiles_w),
                *chunk.shape_args(), *chunk.epilogue_args()))


def data_gradient_refusal(geom, m: int | None = None) -> str | None:
    """Why the Winograd kernels (output tile ``m``, None: "auto") cannot compute the data
    gradient of ``geom`` (None: they can)."""
    # The filter rules first: the rotated geometry exists for stride 1 only. The sizes are
    # those of the rotated convolution, the one that runs (with a large padding it can be far
    # smaller than the forward). Its products' GEMM puts the original C/groups filters of a
    # group on grid.y (the fronts check only K/groups).
    why = _filter_refusal(geom)
    if why is not None:
        return why
    rotated = data_gradient_geometry(geom)
    why = refusal(rotated, m) or gemm_grid_refusal(rotated)
    return why and f"the rotated convolution it runs (C and K swapped): {why}"


def filter_gradient(xp, du, x, dy, geom, m: int, nhwc: bool, executor: str):
    """dw = G^T dU G for every filter, (K, C/groups, 3, 3) in x's dtype, from dU = dL/dU as
    (ALPHA^2 * K, C/groups) accumulator values; x and dy (the whole batch, contiguous in the
    layout ``nhwc`` says) are what the kernel sums directly where dU is not all finite."""
    dw = output(xp, geom.weight_shape, x.dtype, executor)
    rows, cols = geom.K, geom.C_per_group
    name = (f"conv2d_winograd_filter_grad_transform<{cuda_type(x.dtype)}, {cuda_bool(nhwc)}, "
            f"{m}>")
    launch(FAMILY, name, executor, _grid(rows * cols), (THREADS, 1, 1),
           (du, x, dy, dw, np.int32(rows), np.int32(cols), *shape_args(geom)))
    return dw
