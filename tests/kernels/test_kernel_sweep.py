"""Every instantiation of the kernels that the launchers pick by dtype, layout and a variant
(unrolled filter size, GEMM tile, A-operand iterator, depthwise kernel, GEMM path, index output,
split-K reduce, the forward split-K epilogue),
run under the simulator in every thread order and compared with the NumPy reference.

The cases come from the kernel registry (``gpuconv._kernels.FAMILIES``), not from a list kept
here: each name expression of a template that has a builder in BUILDERS is parsed into its
template arguments, and the builder makes the smallest public call (or launcher call, for the
options the public API does not take) that selects exactly that instantiation, sizing it from the
launchers' own constants (unrolled sizes, GEMM tiles, the SM count behind the large-tile choice,
the split-K threshold). An instantiation added to one of these templates is swept without
editing this file; a new template is named by test_zz_every_kernel_ran.py until it gets a
builder. Each case also checks that its call launched the kernel it was built for, so a change
in a launcher's selection rules fails here instead of silently leaving a kernel unrun.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

import gpuconv
from gpuconv import grad
from gpuconv._kernels import CUDA_TYPES, FAMILIES, import_launchers
from gpuconv.conv import launch as conv_launch
from gpuconv.conv import (launch_common, launch_depthwise, launch_direct, launch_implicit_gemm,
                          launch_pointwise)
from gpuconv.conv.geometry import conv2d_geometry, layout_shape
from gpuconv.conv.launch_bwd_common import MIN_PIXELS_PER_SPLIT
from gpuconv.pool import launch_adaptive, launch_window
from gpuconv.simulator import ORDERS

try:  # NumPy knows bfloat16 only through ml_dtypes
    import ml_dtypes
except ImportError:
    ml_dtypes = None

SEED = 2024
DTYPE_OF_CUDA_TYPE = {cuda: name for name, cuda in CUDA_TYPES.items()}
# Relative to max(1, max |reference|): half types round the output, float32 and float64 only
# the summation order of at most a few dozen products.
TOLERANCE = {"float16": 1e-2, "bfloat16": 3e-2, "float32": 1e-4, "float64": 1e-10}


@dataclass(frozen=True)
class Case:
    kernels: Callable[[], tuple]     # the call under test; runs inside simulate()
    reference: Callable[[], tuple]   # the same computation on the NumPy reference
    exact: bool = False              # max pooling and indices must match bit for bit


def to_layout(a: np.ndarray, data_format: str) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if data_format == "NHWC" else a


def layout(nhwc: str) -> str:
    return "NHWC" if nhwc == "true" else "NCHW"


# ------------------------------------------------------------------------------------ conv2d


def conv_case(dtype, data_format, x_shape, w_shape, *, algorithm, launcher_options=None,
              **conv_kwargs) -> Case:
    """conv2d with bias and residual (the fused epilogue) on random inputs exact in ``dtype``.
    ``launcher_options`` (a dict, possibly empty) calls the launcher directly, for what the public
    front does not take: algorithm="direct_v1", iterator=, gemm=, depthwise_variant=."""
    rng = np.random.default_rng(SEED)
    geom = conv2d_geometry(x_shape, w_shape, **conv_kwargs)
    x = to_layout(rng.standard_normal(x_shape), data_format).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(geom.K).astype(dtype)
    r = rng.standard_normal(layout_shape(geom.output_shape, data_format)).astype(dtype)

    def kernels():
        out = np.full(r.shape, np.nan, dtype=dtype)   # an element no thread writes stays NaN
        if launcher_options is None:
            return (gpuconv.conv2d(x, w, b, **conv_kwargs, residual=r, algorithm=algorithm,
                                   data_format=data_format, out=out),)
        return (conv_launch.conv2d(geom, x, w, b, residual=r, algorithm=algorithm,
                                   data_format=data_format, out=out, executor="simulator",
                                   **launcher_options),)

    def reference():
        return (gpuconv.conv2d(x, w, b, **conv_kwargs, residual=r, data_format=data_format),)

    return Case(kernels, reference)


def small_problem(filter_size: int = 3, filters: int = 5, channels: int = 3) -> dict:
    """Two images, a few channels: one block of any GEMM tile, so the small tile is picked."""
    return dict(x_shape=(2, channels, 5, 6), w_shape=(filters, channels, filter_size, filter_size),
                padding=filter_size // 2)


def gemm_problem(dtype, tile_args, filter_size: int = 2, narrow_tiles=(),
                 filters_along_m: bool = False, tensor_cores: bool = False,
                 channels_per_group: int | None = None) -> dict:
    """The smallest problem whose GEMM launcher picks the tile ``tile_args`` (template arguments
    BLOCK_M, BLOCK_N, BLOCK_K, THREAD_M, THREAD_N). The small tile: a problem of a block or two.
    Any other tile needs a full wave of blocks, one per SM as the launcher counts them (one group
    per block is the cheapest way to get it), and the right filters per group: a few fewer than
    a narrow tile's width (the last columns idle), more than any narrow tile holds
    for the large one. ``narrow_tiles`` are pixels x filters; ``filters_along_m``: the launcher's
    GEMM (and so ``tile_args``) is filters x pixels; ``tensor_cores``: ``tile_args`` are an
    MmaTile's (BLOCK_M, BLOCK_N, BLOCK_K, WARP_M, WARP_N), among the tensor-core tiles;
    ``channels_per_group``: instead of the problems' few (3 for the small tile, 2 else)."""
    tile = (launch_common.MmaTile if tensor_cores else launch_common.GemmTile)(*map(int, tile_args))
    if filters_along_m:
        tile = tile.transposed()
    large, small = launch_common.MMA_TILES if tensor_cores else launch_common.gemm_tiles(dtype)
    past_narrow = 1 + max((t.block_n for t in narrow_tiles), default=4)
    if tile == small:
        return small_problem(filter_size, filters=past_narrow, channels=channels_per_group or 3)
    if tile in narrow_tiles:
        filters = tile.block_n - 3
    elif tile == large:
        filters = past_narrow
    else:
        raise ValueError(f"{tile} is none of the {np.dtype(dtype).name} GEMM tiles "
                         f"{large}, {small}, {narrow_tiles}")
    groups = launch_common.multiprocessor_count("simulator")
    channels = channels_per_group or 2
    return dict(x_shape=(1, channels * groups, 2, 2),
                w_shape=(filters * groups, channels, filter_size, filter_size),
                padding=filter_size // 2, groups=groups)


def direct_v1(dtype, nhwc):
    return conv_case(dtype, layout(nhwc), **small_problem(), algorithm="direct_v1",
                     launcher_options={})


def direct_tiled(dtype, nhwc, block_k, tile_p, tile_q):
    """The smallest problem for which launch_direct.pick_tile picks this tile: a group of at
    most block_k filters (more than 8 for 16), a 9x9 plane for the square tile, 5x40 else."""
    filters = {"4": 3, "8": 5, "16": 17}[block_k]
    plane = (9, 9) if tile_p == tile_q else (5, 40)
    case = conv_case(dtype, layout(nhwc), (2, 3, *plane), (filters, 3, 3, 3), algorithm="direct",
                     padding=1)
    picked = launch_direct.pick_tile(conv2d_geometry((2, 3, *plane), (filters, 3, 3, 3), padding=1))
    assert picked.template_args == f"{block_k}, {tile_p}, {tile_q}", picked
    return case


def depthwise_direct(dtype, nhwc, fr, fs):
    """Unrolled R x S, or (0, 0): any filter of at most DIRECT_MAX_TAPS taps that is not one of
    the unrolled squares (2 x 3 here)."""
    r, s = (int(fr), int(fs)) if (fr, fs) != ("0", "0") else (2, 3)
    assert r * s <= launch_depthwise.DIRECT_MAX_TAPS
    return conv_case(dtype, layout(nhwc), (2, 2, 6, 7), (4, 1, r, s), algorithm="depthwise",
                     padding=(r // 2, s // 2), groups=2,
                     launcher_options=dict(depthwise_variant="direct"))


def depthwise_tiled(dtype, nhwc):
    side = math.isqrt(launch_depthwise.DIRECT_MAX_TAPS) + 1   # the smallest square past the limit
    return conv_case(dtype, layout(nhwc), (1, 2, 6, 7), (4, 1, side, side), algorithm="depthwise",
                     padding=side // 2, groups=2, launcher_options=dict(depthwise_variant="tiled"))


def depthwise_window(dtype, nhwc):
    """A 7x7 filter at stride 1 (auto's choice) on a width that is not a multiple of the run."""
    return conv_case(dtype, layout(nhwc), (2, 2, 6, 9), (4, 1, 7, 7), algorithm="depthwise",
                     padding=3, groups=2)


def im2col(dtype, nhwc):
    return conv_case(dtype, layout(nhwc), **small_problem(), algorithm="im2col_gemm")


def gemm_columns(dtype, lanes_along_m, *tile):
    # The launcher puts the lanes along M (the filters) exactly for NHWC.
    return conv_case(dtype, layout(lanes_along_m),
                     **gemm_problem(dtype, tile, narrow_tiles=launch_common.narrow_tiles(dtype),
                                    filters_along_m=True),
                     algorithm="im2col_gemm")


def columns_epilogue(dtype):
    return conv_case(dtype, "NHWC", **small_problem(), algorithm="im2col_gemm",
                     launcher_options=dict(gemm="cublas"))


def implicit_gemm(kernel):
    iterator, tensor_cores = {k: key for key, k in launch_implicit_gemm.KERNELS.items()}[kernel]

    def build(dtype, nhwc, *tile):
        narrow = (launch_common.MMA_NARROW_TILES if tensor_cores
                  else launch_common.narrow_tiles(dtype))
        return conv_case(dtype, layout(nhwc),
                         **gemm_problem(dtype, tile, narrow_tiles=narrow, tensor_cores=tensor_cores),
                         algorithm="implicit_gemm",
                         launcher_options=dict(iterator=iterator, math="tensor_cores"
                                               if tensor_cores else "cuda_cores"))
    return build


def implicit_gemm_vector(dtype, *tile_and_stages):
    """NHWC with 8 channels per group: the precomputed tensor-core kernel's 8-channel copies
    (template arguments: the tile's, on the 8 warps of its MmaTile or on 4
    (launch_implicit_gemm.vector_tile: the launcher option warp_tiles), then its stages, which
    the launcher always sets)."""
    *tile, stages = map(int, tile_and_stages)
    assert stages == launch_common.VECTOR_STAGES
    block = next(t for t in launch_common.MMA_TILES + launch_common.MMA_NARROW_TILES
                 if (t.block_m, t.block_n, t.block_k) == tuple(tile[:3]))
    warp_tiles = next(w for w in ("small", "large")
                      if launch_implicit_gemm.vector_tile(block, 0, w).template_args
                      == ", ".join(map(str, tile_and_stages)))
    block_args = (block.block_m, block.block_n, block.block_k, block.warp_m, block.warp_n)
    return conv_case(dtype, "NHWC",
                     **gemm_problem(dtype, block_args, narrow_tiles=launch_common.MMA_NARROW_TILES,
                                    tensor_cores=True,
                                    channels_per_group=launch_common.VECTOR_CHANNELS),
                     algorithm="implicit_gemm",
                     launcher_options=dict(iterator="precomputed", warp_tiles=warp_tiles))


def implicit_gemm_async(dtype, nhwc, *tile_and_stages):
    """The CUDA-core precomputed kernel filled by cp.async (template arguments: the tile's, then
    its stages, which the launcher always sets)."""
    *tile, stages = tile_and_stages
    assert int(stages) == launch_common.ASYNC_STAGES
    return conv_case(dtype, layout(nhwc),
                     **gemm_problem(dtype, tile, narrow_tiles=launch_common.narrow_tiles(dtype)),
                     algorithm="implicit_gemm",
                     launcher_options=dict(iterator="precomputed", loads="cp_async"))


def pointwise(data_format, loads):
    """loads: the launcher option that picks the kernel ("cp_async": the *_async kernels, whose
    last template argument is the stages)."""
    def build(dtype, *tile):
        if loads == "cp_async":
            *tile, stages = tile
            assert int(stages) == launch_common.ASYNC_STAGES
        return conv_case(dtype, data_format, **gemm_problem(
            dtype, tile, filter_size=1, narrow_tiles=launch_common.narrow_tiles(dtype),
            filters_along_m=launch_pointwise.FILTERS_ALONG_M[data_format.lower()]),
            algorithm="pointwise", launcher_options=dict(loads=loads))
    return build


def split_k_epilogue(dtype, nhwc):
    """The second pass of a split-K GEMM: the small problem with 16 channels (two k-tiles of 8)
    run as the implicit GEMM in two splits."""
    return conv_case(dtype, layout(nhwc), **small_problem(channels=16), algorithm="implicit_gemm",
                     launcher_options=dict(split_k=2, math="cuda_cores"))


# ------------------------------------------------------------------------------------ conv2d_bias


def split_reduce(dtype):
    """The bias gradient over two splits' worth of pixels: the partial sums are added by
    conv2d_split_reduce."""
    rng = np.random.default_rng(SEED)
    dy = rng.standard_normal((1, 2, 2, MIN_PIXELS_PER_SPLIT)).astype(dtype)
    return Case(lambda: (grad.conv2d_bias(dy),), lambda: (grad.conv2d_bias(dy),))


# ------------------------------------------------------------------------------------ pooling


def distinct_values(shape, dtype, data_format):
    """A permutation of small integers: exact in every dtype and free of ties, so each window's
    maximum and its index are unique."""
    n = math.prod(shape)
    assert n <= 256, "bfloat16 holds the integers up to 256 exactly"
    values = np.random.default_rng(SEED).permutation(n) - n // 2
    return to_layout(values.reshape(shape).astype(np.float64), data_format).astype(dtype)


def pool_shape(vectors: str) -> tuple[int, int, int, int]:
    """x's (N, C, H, W): 3 channels, or with the NHWC channel vectors (kVectors) a multiple of
    every dtype's 16-byte vector (8 halves), in at most 256 elements (distinct_values)."""
    return (1, 8, 5, 6) if vectors == "true" else (1, 3, 7, 9)


def pool_case(function, dtype, nhwc, with_indices, vectors, **kwargs) -> Case:
    data_format = layout(nhwc)
    x = distinct_values(pool_shape(vectors), dtype, data_format)
    return_indices = with_indices == "true"

    def call():
        result = function(x, return_indices=return_indices, data_format=data_format, **kwargs)
        return result if return_indices else (result,)
    return Case(call, call, exact=True)


def window_size(window: str) -> tuple[int, int]:
    """A kernel size that selects the forward kernels' kWindow: the square itself, or for 0 (the
    run-time loops) a rectangle."""
    return (int(window),) * 2 if window != "0" else (2, 3)


def max_pool(dtype, nhwc, with_indices, window, vectors):
    return pool_case(gpuconv.max_pool2d, dtype, nhwc, with_indices, vectors,
                     kernel_size=window_size(window), stride=2, padding=1)


def avg_case(function, dtype, nhwc, vectors, **kwargs) -> Case:
    data_format = layout(nhwc)
    x = distinct_values(pool_shape(vectors), dtype, data_format)

    def call():
        return (function(x, data_format=data_format, **kwargs),)
    return Case(call, call)


def avg_pool(dtype, nhwc, window, vectors):
    """Average pooling with ceil_mode: the last windows reach past the input (taps read as 0 in
    the batched kernels, clipped in the run-time loops)."""
    return avg_case(gpuconv.avg_pool2d, dtype, nhwc, vectors, kernel_size=window_size(window),
                    stride=2, padding=1, ceil_mode=True, count_include_pad=False)


def adaptive_max_pool(dtype, nhwc, with_indices, vectors):
    return pool_case(gpuconv.adaptive_max_pool2d, dtype, nhwc, with_indices, vectors,
                     output_size=(3, 4))


def adaptive_avg_pool(dtype, nhwc, vectors):
    return avg_case(gpuconv.adaptive_avg_pool2d, dtype, nhwc, vectors, output_size=(3, 4))


class _Poisoned:
    """An array module whose ``empty`` fills float arrays with NaN and index arrays with -7777:
    the pooling launchers allocate their outputs with ``empty``, which could otherwise hand back
    the reference's freed result."""

    def __init__(self, xp):
        self._xp = xp

    def __getattr__(self, name):
        return getattr(self._xp, name)

    def empty(self, shape, dtype=float):
        a = self._xp.empty(shape, dtype=dtype)
        a[...] = np.nan if np.dtype(dtype).kind == "f" else -7777
        return a


# ------------------------------------------------------------------------------------ the sweep

BUILDERS = {
    "conv2d_direct_v1": direct_v1,
    "conv2d_direct_tiled": direct_tiled,
    "conv2d_depthwise_direct": depthwise_direct,
    "conv2d_depthwise_tiled": depthwise_tiled,
    "conv2d_depthwise_window": depthwise_window,
    "conv2d_im2col": im2col,
    "conv2d_gemm_columns": gemm_columns,
    "conv2d_columns_epilogue": columns_epilogue,
    **{kernel: implicit_gemm(kernel) for kernel in launch_implicit_gemm.KERNELS.values()},
    launch_implicit_gemm.VECTOR_KERNEL: implicit_gemm_vector,
    launch_implicit_gemm.ASYNC_KERNEL: implicit_gemm_async,
    "conv2d_pointwise_nchw": pointwise("NCHW", "registers"),
    "conv2d_pointwise_nhwc": pointwise("NHWC", "registers"),
    "conv2d_pointwise_nchw_async": pointwise("NCHW", "cp_async"),
    "conv2d_pointwise_nhwc_async": pointwise("NHWC", "cp_async"),
    "conv2d_split_reduce": split_reduce,
    "conv2d_split_k_epilogue": split_k_epilogue,
    "max_pool2d_forward": max_pool,
    "avg_pool2d_forward": avg_pool,
    "adaptive_max_pool2d_forward": adaptive_max_pool,
    "adaptive_avg_pool2d_forward": adaptive_avg_pool,
}

_NAME_EXPRESSION = re.compile(r"^(\w+)<(.*)>$")


def parse(name_expression: str) -> tuple[str, list[str]]:
    """("conv2d_direct_v1", ["float", "true"]) for "conv2d_direct_v1<float, true>"."""
    match = _NAME_EXPRESSION.match(name_expression)
    if match is None:
        return name_expression, []
    return match.group(1), [arg.strip() for arg in match.group(2).split(",")]


def swept_kernels() -> list[str]:
    import_launchers()
    return [name for family in FAMILIES.values() for name in family.name_expressions
            if parse(name)[0] in BUILDERS]


def build(name_expression: str) -> Case:
    template, (cuda_type, *args) = parse(name_expression)
    dtype_name = DTYPE_OF_CUDA_TYPE[cuda_type]
    if dtype_name == "bfloat16" and ml_dtypes is None:
        pytest.skip("bfloat16 needs ml_dtypes")
    return BUILDERS[template](np.dtype(dtype_name), *args)


def assert_matches(actual, expected, exact: bool) -> None:
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    if exact or expected.dtype.kind in "iu":
        np.testing.assert_array_equal(actual, expected)
        return
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    assert not np.isnan(a).any(), "an output element was never written (still NaN)"
    tolerance = TOLERANCE[expected.dtype.name] * max(1.0, float(np.abs(e).max()))
    np.testing.assert_allclose(a, e, rtol=0, atol=tolerance)


@pytest.fixture(autouse=True)
def poisoned_pool_outputs(monkeypatch):
    for module in (launch_window, launch_adaptive):
        real = module.xp_for
        monkeypatch.setattr(module, "xp_for", lambda executor, real=real: _Poisoned(real(executor)))


SWEPT = swept_kernels()


def test_every_builder_matches_registered_kernels():
    """A builder whose template is no longer registered would sweep nothing, silently."""
    templates = {parse(name)[0] for name in SWEPT}
    unregistered = sorted(set(BUILDERS) - templates)
    assert not unregistered, f"no registered kernel of the templates {unregistered}"


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("kernel", SWEPT, ids=[name.replace(" ", "") for name in SWEPT])
def test_kernel_matches_reference(kernel, order, launched_names):
    case = build(kernel)
    expected = case.reference()
    with gpuconv.simulate(order=order, seed=SEED):
        actual = case.kernels()
    assert kernel in launched_names, f"the case built for {kernel} launched {launched_names}"
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert_matches(a, e, case.exact)
