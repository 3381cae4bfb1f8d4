"""Forward implicit-GEMM block tiles, timed one by one on a suite's layers: the data for the tile
picker (launch_common.pick_filter_tile) in kernels/conv/NOTES.md "Tile choice on the H100".

    python -m bench.tile_sweep [--suite resnet50_b32] [--dtype float16] [--layout NHWC]
                               [--loads auto|registers|cp_async]
    python -m bench.tile_sweep --direction weight_grad --dtype float32 --layout NCHW

With --direction weight_grad: the CUDA-core weight gradient's implicit GEMM instead
(grad.conv2d_weight(algorithm="implicit_gemm")), its tile (launch_bwd_weight.TILE) set to each
of launch_bwd_weight.TILE and WIDE_TILE in turn.

Each layer runs the implicit GEMM (the launcher, with --loads: how the CUDA-core tiles are
filled, launch_common.LOADS) once per candidate tile (the picker overridden), captured in a CUDA graph and replayed, so the times are the GPU's alone (host time
excluded; the NHWC weight transpose included, as in every call). Every tile's output is checked
against the picker's own. Prints, per layer: M (= N*P*Q), K, the picker's tile and time, each
tile's time and TFLOP/s, and the best. float16/bfloat16 in NHWC (the 8-channel tensor-core
kernel): each tile twice, its block on 4 warps and on 8 (launcher option warp_tiles,
launch_common.vector_tile). Needs CuPy and a CUDA GPU.
"""
from __future__ import annotations

import argparse
import functools

from .environment import require
from .suites import load_shapes
from .timing import event_us, graph_replay_us


def _layers(suite: str):
    """The suite's ungrouped layers: (name, n, c, h, w, k, r, s, stride, pad)."""
    for layer in load_shapes()["suites"][suite]:
        if layer.get("groups", 1) == 1:
            yield (layer["name"], *(layer[key] for key in "NCHWKRS"), layer["stride"],
                   layer["pad"])


def _label(tile, warp_tiles: str = "auto") -> str:
    """A tile's column: its block, and with a forced ``warp_tiles`` its warps (4 large, 8
    small)."""
    block = f"{tile.block_m}x{tile.block_n}"
    return block if warp_tiles == "auto" else f"{block}/{4 if warp_tiles == 'large' else 8}w"


def _header(columns: str, labels) -> str:
    return (f"{'layer':28s} {columns} | " + " ".join(f"{label:>10s}" for label in labels)
            + " | best")


def _row(name: str, columns: str, labels, times, flops: float) -> str:
    """A layer's line: each tile's time (NaN where its output failed the check) and the best."""
    best = min(range(len(labels)), key=lambda i: times[i] if times[i] == times[i] else 1e30)
    return (f"{name[:28]:28s} {columns} | " + " ".join(f"{t:10.1f}" for t in times)
            + f" | {labels[best]} {flops / times[best] / 1e6:.0f} TFLOP/s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tile_sweep",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="resnet50_b32")
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--layout", default="NHWC")
    parser.add_argument("--direction", default="forward", choices=("forward", "weight_grad"))
    parser.add_argument("--loads", default="auto", help="forward: registers | cp_async | auto")
    args = parser.parse_args(argv)
    if args.direction == "weight_grad":
        return weight_grad_sweep(args)
    cp, = require("bench.tile_sweep", "cupy")

    import gpuconv
    from gpuconv.conv import launch
    from gpuconv.conv import launch_common as lc
    from gpuconv.conv import launch_implicit_gemm as lig
    from gpuconv.conv.geometry import conv2d_geometry
    tensor_cores = args.dtype in lc.TENSOR_CORE_DTYPES
    tiles = (lc.MMA_TILES + lc.MMA_NARROW_TILES) if tensor_cores else (
        lc.gemm_tiles(args.dtype) + lc.narrow_tiles(args.dtype))
    picker = lig.pick_tile
    rng = cp.random.default_rng(0)
    nhwc = args.layout == "NHWC"
    # The 8-channel tensor-core kernel (NHWC) runs each block on 4 warps or 8: both timed.
    warps = ("large", "small") if tensor_cores and nhwc else ("auto",)
    candidates = [(tile, w) for tile in tiles for w in warps]
    labels = [_label(tile, w) for tile, w in candidates]
    print(_header(f"{'M':>7s} {'K':>5s} {'picked':>12s} {'us':>7s}", labels))
    for name, n, c, h, w, k, r, s, stride, pad in _layers(args.suite):
        shape = (n, h, w, c) if nhwc else (n, c, h, w)
        x = rng.standard_normal(shape, dtype=cp.float32).astype(args.dtype)
        wt = rng.standard_normal((k, c, r, s), dtype=cp.float32).astype(args.dtype)

        geom = conv2d_geometry((n, c, h, w), (k, c, r, s), stride, pad)

        def call(warp_tiles="auto"):
            return launch.conv2d(geom, x, wt, algorithm="implicit_gemm", data_format=args.layout,
                                 executor="cupy", loads=args.loads, warp_tiles=warp_tiles)
        expected = gpuconv.conv2d(x, wt, stride=stride, padding=pad, algorithm="implicit_gemm",
                                  data_format=args.layout)
        picked = picker(geom, x.dtype, "cupy", "auto", tensor_cores)
        flops = 2.0 * geom.gemm_m * k * c * r * s
        default_us = graph_replay_us(cp, call)
        times = []
        for tile, warp_tiles in candidates:
            lig.pick_tile = lambda *a, tile=tile, **kw: tile
            try:
                times.append(_checked_us(cp, functools.partial(call, warp_tiles), expected,
                                         1e-2, graph_replay_us))
            finally:
                lig.pick_tile = picker
        print(_row(name, f"{geom.gemm_m:7d} {k:5d} {picked.block_m:>5d}x{picked.block_n:<6d} "
                   f"{default_us:7.1f}", labels, times, flops))
    return 0


def _checked_us(cp, call, expected, tolerance: float, timer) -> float:
    """``timer``'s time of ``call`` if its output is within ``tolerance`` (relative to the
    largest magnitude) of ``expected``, else NaN."""
    got = call()
    err = float(cp.abs(got.astype(cp.float32) - expected.astype(cp.float32)).max())
    scale = float(cp.abs(expected.astype(cp.float32)).max())
    return timer(cp, call) if err <= tolerance * scale else float("nan")


def _replay_or_events_us(cp, call, runs: int = 20) -> float:
    """The CUDA-graph replay time, or where capture refuses the call (an allocation outside
    the pool), the median of CUDA events around it (host time included then)."""
    try:
        return graph_replay_us(cp, call, runs)
    except Exception:      # noqa: BLE001 -- any capture failure: fall back to events
        return event_us(cp, call, runs)


def weight_grad_sweep(args) -> int:
    cp, = require("bench.tile_sweep", "cupy")

    import gpuconv
    from gpuconv.conv import launch_bwd_weight as lbw
    tiles = (lbw.TILE, lbw.WIDE_TILE)
    default = lbw.TILE
    rng = cp.random.default_rng(0)
    nhwc = args.layout == "NHWC"
    print(_header(f"{'NPQ':>7s} {'taps':>5s}", [_label(t) for t in tiles]))
    for name, n, c, h, w, k, r, s, stride, pad in _layers(args.suite):
        x = rng.standard_normal((n, h, w, c) if nhwc else (n, c, h, w),
                                dtype=cp.float32).astype(args.dtype)
        p = (h + 2 * pad - r) // stride + 1
        q = (w + 2 * pad - s) // stride + 1
        dy = rng.standard_normal((n, p, q, k) if nhwc else (n, k, p, q),
                                 dtype=cp.float32).astype(args.dtype)

        def call():
            return gpuconv.grad.conv2d_weight(x, (k, c, r, s), dy, stride=stride, padding=pad,
                                              algorithm="implicit_gemm", data_format=args.layout)
        flops = 2.0 * n * p * q * k * c * r * s
        expected = call()   # the default tile's
        times = []
        for tile in tiles:
            lbw.TILE = tile
            try:
                times.append(_checked_us(cp, call, expected, 1e-3, _replay_or_events_us))
            finally:
                lbw.TILE = default
        print(_row(name, f"{n * p * q:7d} {c * r * s:5d}", [_label(t) for t in tiles], times,
                   flops))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
