"""Launcher of kernels/conv/winograd.cu: the algorithm "winograd_nonfused", Winograd F(2x2, 3x3)
for 3x3 convolutions with stride 1 and dilation 1, in all three directions (``forward`` here;
the data gradient runs ``forward(..., flip=True)`` and the weight gradient the transforms and
``filter_gradient`` from their launchers).

Non-fused, as cuDNN's WINOGRAD_NONFUSED (whose name it takes, leaving "winograd" to a fused
kernel): transform, then 16 GEMMs, then transform back. The 16 GEMMs (one per element xi of
the 4x4 transform domain, per group) are the project's grouped 1x1 convolution over the
transformed tensors, seen as one image of 16*C channels in 16*groups groups with one pixel per
2x2 output tile: ``launch_pointwise`` for the forward and data
gradient (U[xi] (K x C/g) times V[xi] (C/g x tiles)), the 1x1 weight gradient's implicit GEMM
with its split-K over the tiles for the weight gradient (Z[xi] (K x tiles) times V[xi]^T).
The transformed tensors are in the accumulator type (float for 16-bit inputs; winograd.cu says
why) and live in a workspace bounded like im2col_gemm's column buffer (``workspace_bytes``,
GPUCONV_WORKSPACE_BYTES): the batch is processed in chunks of whole images that fit, and every
transformed tensor of a launch stays under LAUNCH_ELEMENTS elements (32-bit offsets).

Why: the 16 products of a 4x4 transform tile make 4 outputs of 9 taps each, 4/9 of the direct
convolution's multiply-adds; the price is the transforms' memory traffic, 16 * (C + K) values
per tile written and read once, which the GEMM's C*K products per tile outweigh from about 128
channels on (kernels/conv/NOTES.md "Winograd").
"""
from __future__ import annotations

import numpy as np

from .._kernels import CUDA_TYPES, cuda_type, register
from . import launch_pointwise
from .geometry import ConvGeometry, data_gradient_geometry
from .launch_bwd_common import LAUNCH_ELEMENTS, acc_dtype, ceil_div, launch, output
from .launch_common import GRID_YZ_LIMIT, ConvCall, cuda_bool, shape_args
from .launch_im2col_gemm import workspace_limit

# "auto" takes Winograd (on CUDA cores) from this many channels and filters per group on: the
# transforms move 16 * (C + K) values per tile for 16 * C * K products (the module's docstring).
MIN_CHANNELS = 128

# Elements of the 4x4 transform domain: 16 GEMMs per group.
ELEMENTS = 16
# Outputs per tile edge (F(2x2, 3x3)).
OUTPUT_TILE = 2
THREADS = 256
TYPES = tuple(CUDA_TYPES.values())


def _layout_names(template: str) -> list[str]:
    return [f"{template}<{t}, {cuda_bool(nhwc)}>" for t in TYPES for nhwc in (False, True)]


_NAMES = ([f"conv2d_winograd_filter_transform<{t}, {cuda_bool(flip)}>"
           for t in TYPES for flip in (False, True)]
          + _layout_names("conv2d_winograd_input_transform")
          + _layout_names("conv2d_winograd_output_transform")
          + _layout_names("conv2d_winograd_grad_output_transform")
          + [f"conv2d_winograd_filter_grad_transform<{t}>" for t in TYPES])
FAMILY = register("conv/winograd.cu", name_expressions=_NAMES,
                  hot=[n for n in _NAMES if "<float" in n or "<__half" in n])


def refusal(geom) -> str | None:
    """Why the Winograd kernels cannot run ``geom`` (None when they can). For the gradients the
    same rule applies to the forward convolution they differentiate."""
    if (geom.R, geom.S) != (3, 3):
        return f"winograd_nonfused (F(2x2, 3x3)) needs a 3x3 filter, got {geom.R}x{geom.S}"
    if (geom.stride_h, geom.stride_w) != (1, 1):
        return f"winograd_nonfused needs stride 1, got {(geom.stride_h, geom.stride_w)}"
    if (geom.dil_h, geom.dil_w) != (1, 1):
        return f"winograd_nonfused needs dilation 1, got {(geom.dil_h, geom.dil_w)}"
    if ELEMENTS * geom.groups > GRID_YZ_LIMIT:
        return (f"its GEMMs have {ELEMENTS} * groups = {ELEMENTS * geom.groups} grid z slices, "
                f"more than {GRID_YZ_LIMIT}")
    if ELEMENTS * geom.K * geom.C_per_group > LAUNCH_ELEMENTS:
        return (f"the transformed filters (16 x {geom.K} x {geom.C_per_group}) exceed "
                f"{LAUNCH_ELEMENTS} elements")
    if ELEMENTS * max(geom.C, geom.K) * tiles_per_image(geom) > LAUNCH_ELEMENTS:
        return (f"one image's transformed tensors (16 x {max(geom.C, geom.K)} channels x "
                f"{tiles_per_image(geom)} tiles) exceed {LAUNCH_ELEMENTS} elements")
    return None


def pays_off(geom) -> bool:
    """Whether "auto" should prefer Winograd for a case it can run (MIN_CHANNELS)."""
    return min(geom.C_per_group, geom.K_per_group) >= MIN_CHANNELS


def tile_grid(geom) -> tuple[int, int]:
    """2x2 output tiles per image along the rows and the columns (the last may overhang)."""
    return ceil_div(geom.P, OUTPUT_TILE), ceil_div(geom.Q, OUTPUT_TILE)


def tiles_per_image(geom) -> int:
    tiles_h, tiles_w = tile_grid(geom)
    return tiles_h * tiles_w


def images_per_chunk(geom, acc_itemsize: int, workspace_bytes: int | None = None) -> int:
    """Images whose transformed input and output fit in the workspace (>= 1) and in
    LAUNCH_ELEMENTS per tensor."""
    tiles = tiles_per_image(geom)
    per_image = ELEMENTS * (geom.C + geom.K) * tiles * acc_itemsize
    by_workspace = workspace_limit(workspace_bytes) // per_image
    by_index = LAUNCH_ELEMENTS // (ELEMENTS * max(geom.C, geom.K) * tiles)
    return max(1, min(by_workspace, by_index, geom.N))


def gemm_geometry(geom, tiles: int, *, rows_in: int, rows_out: int) -> ConvGeometry:
    """The 16 GEMMs as one 1x1 convolution: one image of 16 * rows_in channels and ``tiles``
    pixels to 16 * rows_out channels, 16 * groups groups."""
    return ConvGeometry(N=1, C=ELEMENTS * rows_in, H=1, W=tiles, K=ELEMENTS * rows_out, R=1, S=1,
                        P=1, Q=tiles, pad_top=0, pad_bottom=0, pad_left=0, pad_right=0,
                        stride_h=1, stride_w=1, dil_h=1, dil_w=1,
                        groups=ELEMENTS * geom.groups)


def _transformed(flat, rows: int, tiles: int, nhwc: bool):
    """A transformed tensor as the GEMM's 1x1 image, (1, 16*rows, 1, tiles) or NHWC."""
    shape = (1, 1, tiles, ELEMENTS * rows) if nhwc else (1, ELEMENTS * rows, 1, tiles)
    return flat[:ELEMENTS * rows * tiles].reshape(shape)


def workspace(xp, geom, rows: int, images: int, acc, executor: str):
    """A flat buffer for one transformed tensor of ``rows`` channels over ``images`` images'
    tiles (the chunk size of images_per_chunk); later, smaller chunks use its front."""
    return output(xp, (ELEMENTS * rows * images * tiles_per_image(geom),), acc, executor)


def _grid(threads_total: int) -> tuple[int, int, int]:
    return (ceil_div(threads_total, THREADS), 1, 1)


def transform_filters(xp, weight, rows: int, cols: int, groups: int, flip: bool,
                      executor: str):
    """U = G g G^T of every 3x3 filter: (16 * rows, cols) in the accumulator type, row
    xi * rows + r (kernels/conv/winograd.cu, conv2d_winograd_filter_transform)."""
    u = output(xp, (ELEMENTS * rows, cols), acc_dtype(weight.dtype), executor)
    name = f"conv2d_winograd_filter_transform<{cuda_type(weight.dtype)}, {cuda_bool(flip)}>"
    launch(FAMILY, name, executor, _grid(rows * cols), (THREADS, 1, 1),
           (weight, u, np.int32(rows), np.int32(cols), np.int32(groups)))
    return u


def transform_tiles(template: str, xp_source, flat, rows: int, geom, n_images: int, nhwc: bool,
                    executor: str):
    """One of the tile transforms (``template``: conv2d_winograd_input_transform over the input,
    conv2d_winograd_grad_output_transform over the output gradient) of ``n_images`` images into
    the front of the workspace ``flat``; returns the transformed tensor as the GEMM's image."""
    tiles_h, tiles_w = tile_grid(geom)
    tiles = n_images * tiles_h * tiles_w
    transformed = _transformed(flat, rows, tiles, nhwc)
    launch(FAMILY, f"{template}<{cuda_type(xp_source.dtype)}, {cuda_bool(nhwc)}>", executor,
           _grid(tiles * rows), (THREADS, 1, 1),
           (xp_source, transformed, np.int32(tiles_h), np.int32(tiles_w),
            *shape_args(geom, n_images)))
    return transformed


def forward(call: ConvCall, *, flip: bool = False, workspace_bytes: int | None = None,
            tile_widths: str = "auto") -> None:
    """The convolution ``call.geom`` (refusal() is None) into ``call.out`` with its epilogue.
    ``flip``: ``call.geom`` is the forward convolution equivalent to a data gradient (input
    dy, output dx) and ``call.weight`` the weight of the convolution differentiated, whose
    filters the transform rotates and transposes (launch_bwd_data.winograd)."""
    g = call.geom
    xp, executor = call.xp, call.executor
    acc = acc_dtype(call.dtype)
    u = transform_filters(xp, call.weight, g.K, g.C_per_group, g.groups, flip, executor)
    weight = u.reshape(ELEMENTS * g.K, g.C_per_group, 1, 1)
    images = images_per_chunk(g, acc.itemsize, workspace_bytes)
    tiles_h, tiles_w = tile_grid(g)
    v = workspace(xp, g, g.C, images, acc, executor)
    m = workspace(xp, g, g.K, images, acc, executor)
    back = f"conv2d_winograd_output_transform<{call.cuda_type}, {cuda_bool(call.nhwc)}>"
    for chunk in call.chunks(images):
        n_images = chunk.geom.N
        tiles = n_images * tiles_h * tiles_w
        vv = transform_tiles("conv2d_winograd_input_transform", chunk.x, v, g.C, g, n_images,
                             call.nhwc, executor)
        mm = _transformed(m, g.K, tiles, call.nhwc)
        products = ConvCall(geom=gemm_geometry(g, tiles, rows_in=g.C, rows_out=g.K),
                            nhwc=call.nhwc, executor=executor, x=vv, weight=weight, bias=None,
                            residual=None, out=mm, out_sN=ELEMENTS * g.K * tiles, activation=None)
        launch_pointwise.run(products, tile_widths=tile_widths)
        launch(FAMILY, back, executor, _grid(tiles * g.K), (THREADS, 1, 1),
               (mm, np.int32(tiles_h), np.int32(tiles_w), *chunk.shape_args(),
                *chunk.epilogue_args()))


def data_gradient_refusal(geom) -> str | None:
    """Why the Winograd kernels cannot compute the data gradient of ``geom`` (None: they can)."""
    # refusal(geom) first: the rotated geometry exists for stride 1 only.
    return refusal(geom) or refusal(data_gradient_geometry(geom))


def filter_gradient(xp, du, geom, dtype, executor: str):
    """dw = G^T dU G for every filter, (K, C/groups, 3, 3) in ``dtype``, from dU = dL/dU as
    (16 * K, C/groups) accumulator values."""
    dw = output(xp, geom.weight_shape, dtype, executor)
    rows, cols = geom.K, geom.C_per_group
    launch(FAMILY, f"conv2d_winograd_filter_grad_transform<{cuda_type(dtype)}>", executor,
           _grid(rows * cols), (THREADS, 1, 1), (du, dw, np.int32(rows), np.int32(cols)))
    return dw
