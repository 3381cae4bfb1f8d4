"""The forward convolution on the project's kernels: the entry point of ``gpuconv.conv2d`` for
the "cupy" and "simulator" executors.

``conv2d`` gets a validated call from the front (api.py), picks the algorithm (forced, measured
by the autotuner, or the heuristic of heuristics.py), prepares the arrays (contiguous copies
where the kernels need them; an output target the kernels can address) and hands the call to
the algorithm's launcher module (launch_<algorithm>.py). Launches go to the current CuPy stream
and device; nothing here synchronizes with the host (autotuning does, once per case).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from .. import _plans
from .._args import as_choice
from .._capture import is_capturing
from . import (autotune, heuristics, launch_depthwise, launch_direct, launch_im2col_gemm,
               launch_implicit_gemm, launch_pointwise, launch_winograd)
from .geometry import ConvGeometry, layout_shape
from .launch_common import (LOADS, MATHS, TILE_WIDTHS, WARP_TILES, ConvCall, call_filters,
                            check_index_limits, contiguous, output_target)
from .split_k import check_split_k

ALGORITHMS = heuristics.ALGORITHMS
EXECUTORS = ("cupy", "simulator")


def _xp(executor: str):
    if executor == "cupy":
        import cupy
        return cupy
    import numpy
    return numpy


def run_algorithm(algorithm: str, call: ConvCall, *, gemm: str = "own",
                  workspace_bytes: int | None = None, iterator: str = "auto",
                  tile_widths: str = "auto", depthwise_variant: str = "auto",
                  math: str = "auto", winograd_tile="auto", split_k="auto",
                  loads: str = "auto", warp_tiles: str = "auto") -> None:
    """Launch ``algorithm``'s kernels for ``call`` (already checked to be runnable)."""
    if algorithm == "direct":
        launch_direct.run(call)
    elif algorithm == "direct_v1":
        launch_direct.run(call, v1=True)
    elif algorithm == "im2col_gemm":
        launch_im2col_gemm.run(call, gemm=gemm, workspace_bytes=workspace_bytes,
                               tile_widths=tile_widths)
    elif algorithm == "implicit_gemm":
        launch_implicit_gemm.run(call, iterator=iterator, tile_widths=tile_widths, math=math,
                                 split_k=split_k, loads=loads, warp_tiles=warp_tiles)
    elif algorithm == "pointwise":
        launch_pointwise.run(call, tile_widths=tile_widths, split_k=split_k, loads=loads)
    elif algorithm == "depthwise":
        launch_depthwise.run(call, variant=depthwise_variant)
    elif algorithm == "winograd_nonfused":
        launch_winograd.forward(call, workspace_bytes=workspace_bytes, tile_widths=tile_widths,
                                output_tile=winograd_tile)
    else:
        raise ValueError(f"algorithm must be one of {', '.join(map(repr, ALGORITHMS))}; got {algorithm!r}")


def conv2d(geom: ConvGeometry, x, weight, bias=None, *, residual=None, activation=None,
           algorithm: str = "auto", data_format: str = "NCHW", out=None, executor: str = "cupy",
           gemm: str = "own", workspace_bytes: int | None = None, iterator: str = "auto",
           tile_widths: str = "auto", depthwise_variant: str = "auto",
           math: str = "auto", winograd_tile="auto", split_k="auto", loads: str = "auto",
           warp_tiles: str = "auto") -> Any:
    """activation(conv(x, weight) + bias + residual) on the kernels; returns the output (``out``
    itself when given).

    The arrays are validated by the front but may be non-contiguous. ``algorithm``: "auto" or
    one of ALGORITHMS; a forced algorithm that cannot run the case is a ValueError saying why.
    ``gemm`` ("own" | "cublas") applies to im2col_gemm, ``workspace_bytes`` to its column
    buffer and to winograd's transformed tensors; ``iterator`` ("auto" | "precomputed" |
    "analytic") to implicit_gemm's A gather and ``tile_widths`` ("auto" | "wide": no narrow
    tiles) to the GEMM tiles of implicit_gemm, pointwise, winograd and im2col_gemm (own GEMM); ``math`` ("auto" | "cuda_cores" | "tensor_cores") to
    implicit_gemm's multiply-accumulate (auto: tensor cores for float16 and bfloat16);
    ``depthwise_variant`` ("auto" | "direct" | "tiled" | "window") to depthwise's kernel;
    ``winograd_tile`` ("auto" | 2 | 4) to winograd's output tile (launch_winograd.AUTO_TILE);
    ``split_k`` ("auto" | splits >= 1, 1: never) to the k splits of implicit_gemm and
    pointwise (split_k.py); ``loads`` ("auto" | "registers" | "cp_async") to how the CUDA-core
    tiles of implicit_gemm and pointwise are filled (launch_common.LOADS); ``warp_tiles``
    ("auto" | "large" | "small") to the warps of implicit_gemm's 8-channel tensor-core tiles
    (launch_common.vector_tile).
    """
    executor = as_choice("executor", executor, EXECUTORS)
    gemm = as_choice("gemm", gemm, launch_im2col_gemm.GEMMS)
    iterator = as_choice("iterator", iterator, launch_implicit_gemm.ITERATORS)
    tile_widths = as_choice("tile_widths", tile_widths, TILE_WIDTHS)
    math = as_choice("math", math, MATHS)
    depthwise_variant = as_choice("depthwise_variant", depthwise_variant, launch_depthwise.VARIANTS)
    split_k = check_split_k(split_k)
    loads = as_choice("loads", loads, LOADS)
    warp_tiles = as_choice("warp_tiles", warp_tiles, WARP_TILES)
    nhwc = data_format == "NHWC"
    xp = _xp(executor)
    out_shape = layout_shape(geom.output_shape, data_format)
    heuristics.check_forced(algorithm, geom)
    if geom.N == 0:
        return xp.empty(out_shape, dtype=x.dtype) if out is None else out

    check_index_limits(geom)            # before the output is allocated
    target, out_sN, in_place = output_target(out, out_shape, x.dtype, nhwc, xp)
    call = ConvCall(geom=geom, nhwc=nhwc, executor=executor, x=contiguous(xp, x),
                    filters=call_filters(xp, weight, nhwc), bias=contiguous(xp, bias),
                    residual=contiguous(xp, residual), out=target, out_sN=out_sN,
                    activation=activation)
    if algorithm == "auto":
        algorithm = select_algorithm(call, data_format, gemm=gemm, workspace_bytes=workspace_bytes,
                                     iterator=iterator, tile_widths=tile_widths,
                                     depthwise_variant=depthwise_variant, math=math,
                                     winograd_tile=winograd_tile, split_k=split_k,
                                     loads=loads, warp_tiles=warp_tiles)
    _plans.note(algorithm)
    run_algorithm(algorithm, call, gemm=gemm, workspace_bytes=workspace_bytes, iterator=iterator,
                  tile_widths=tile_widths, depthwise_variant=depthwise_variant, math=math,
                  winograd_tile=winograd_tile, split_k=split_k, loads=loads,
                  warp_tiles=warp_tiles)
    if out is None:
        return target
    if not in_place:
        out[...] = target
    return out


def select_algorithm(call: ConvCall, data_format: str, **options) -> str:
    """The algorithm "auto" runs: the autotuner's (measuring now if the case is new) when
    autotuning is on, else the heuristic's. Under a CUDA graph capture nothing is measured (the
    timing waits for the device): a case the warm-up run measured keeps its choice."""
    if not autotune.enabled():
        return heuristics.choose(call.geom, call.dtype).algorithm
    candidates = heuristics.candidates(call.geom)
    if is_capturing(call.executor):
        entry = autotune.lookup(call.geom, call.dtype, data_format, call.executor, candidates)
        if entry is not None:
            return entry["algorithm"]
        return heuristics.choose(call.geom, call.dtype).algorithm

    g = call.geom
    # Candidates write a scratch output: `out` may be a slice of a buffer the caller is filling.
    scratch = call.xp.empty(layout_shape(g.output_shape, data_format), dtype=call.dtype)
    trial = dataclasses.replace(call, out=scratch, out_sN=g.K * g.P * g.Q)

    def measure(algorithm: str) -> None:
        run_algorithm(algorithm, trial, **options)

    entry = autotune.tune(call.geom, call.dtype, data_format, call.executor, candidates,
                          measure)
    return entry["algorithm"]


# The gradients' and the transposed convolution's launchers, reached by api.py/grad.py as
# launch.<name> like the forward one.
from .launch_backward import conv2d_bias, conv2d_input, conv2d_weight, conv_transpose2d  # noqa: E402,F401
