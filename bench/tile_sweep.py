"""Forward implicit-GEMM block tiles, timed one by one on a suite's layers: the data for the tile
picker (launch_common.pick_filter_tile) in kernels/conv/NOTES.md "Tile choice on the H100".

    python -m bench.tile_sweep [--suite resnet50_b32] [--dtype float16] [--layout NHWC]
    python -m bench.tile_sweep --direction weight_grad --dtype float32 --layout NCHW

With --direction weight_grad: the CUDA-core weight gradient's implicit GEMM instead
(grad.conv2d_weight(algorithm="implicit_gemm")), its tile (launch_bwd_weight.TILE) set to each
of launch_bwd_weight.TILE and WIDE_TILE in turn.

Each layer runs gpuconv.conv2d(algorithm="implicit_gemm") once per candidate tile (the picker
overridden), captured in a CUDA graph and replayed, so the times are the GPU's alone (host time
excluded; the NHWC weight transpose included, as in every call). Every tile's output is checked
against the picker's own. Prints, per layer: M (= N*P*Q), K, the picker's tile and time, each
tile's time and TFLOP/s, and the best. Needs CuPy and a CUDA GPU.
"""
from __future__ import annotations

import argparse

from .suites import load_shapes
from .timing import graph_replay_us


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="resnet50_b32")
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--layout", default="NHWC")
    parser.add_argument("--direction", default="forward", choices=("forward", "weight_grad"))
    args = parser.parse_args(argv)
    if args.direction == "weight_grad":
        return weight_grad_sweep(args)
    import cupy as cp

    import gpuconv
    from gpuconv.conv import launch_common as lc
    from gpuconv.conv import launch_implicit_gemm as lig
    from gpuconv.conv.geometry import conv2d_geometry
    tensor_cores = args.dtype in lc.TENSOR_CORE_DTYPES
    tiles = (lc.MMA_TILES + lc.MMA_NARROW_TILES) if tensor_cores else (
        lc.gemm_tiles(args.dtype) + lc.narrow_tiles(args.dtype))
    picker = lig.pick_tile
    rng = cp.random.default_rng(0)
    nhwc = args.layout == "NHWC"
    print(f"{'layer':28s} {'M':>7s} {'K':>5s} {'picked':>12s} {'us':>7s} | "
          + " ".join(f"{t.block_m}x{t.block_n}".rjust(8) for t in tiles) + " | best")
    for layer in load_shapes()["suites"][args.suite]:
        if layer.get("groups", 1) != 1:
            continue
        n, c, h, w, k = (layer[key] for key in "NCHWK")
        r, s, stride, pad = layer["R"], layer["S"], layer["stride"], layer["pad"]
        shape = (n, h, w, c) if nhwc else (n, c, h, w)
        x = rng.standard_normal(shape, dtype=cp.float32).astype(args.dtype)
        wt = rng.standard_normal((k, c, r, s), dtype=cp.float32).astype(args.dtype)

        def call():
            return gpuconv.conv2d(x, wt, stride=stride, padding=pad, algorithm="implicit_gemm",
                                  data_format=args.layout)
        expected = call()
        geom = conv2d_geometry((n, c, h, w), (k, c, r, s), stride, pad)
        picked = picker(geom, x.dtype, "cupy", "auto", tensor_cores)
        flops = 2.0 * geom.gemm_m * k * c * r * s
        default_us = graph_replay_us(cp, call)
        times = []
        for tile in tiles:
            lig.pick_tile = lambda *a, tile=tile, **kw: tile
            try:
                got = call()
                err = float(cp.abs(got.astype(cp.float32) - expected.astype(cp.float32)).max())
                scale = float(cp.abs(expected.astype(cp.float32)).max())
                us = graph_replay_us(cp, call) if err <= 1e-2 * scale else float("nan")
            finally:
                lig.pick_tile = picker
            times.append(us)
        best = min(range(len(tiles)), key=lambda i: times[i] if times[i] == times[i] else 1e30)
        print(f"{layer['name'][:28]:28s} {geom.gemm_m:7d} {k:5d} "
              f"{picked.block_m:>5d}x{picked.block_n:<6d} {default_us:7.1f} | "
              + " ".join(f"{t:8.1f}" for t in times)
              + f" | {tiles[best].block_m}x{tiles[best].block_n} "
              f"{flops / times[best] / 1e6:.0f} TFLOP/s")
    return 0


def _replay_or_events_us(cp, call, runs: int = 20) -> float:
    """The CUDA-graph replay time, or where capture refuses the call (an allocation outside
    the pool), the median of CUDA events around it (host time included then)."""
    try:
        return graph_replay_us(cp, call, runs)
    except Exception:      # noqa: BLE001 -- any capture failure: fall back to events
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        times = []
        for _ in range(runs):
            start.record()
            call()
            stop.record()
            stop.synchronize()
            times.append(cp.cuda.get_elapsed_time(start, stop) * 1e3)
        return sorted(times)[runs // 2]


def weight_grad_sweep(args) -> int:
    import cupy as cp

    import gpuconv
    from gpuconv.conv import launch_bwd_weight as lbw
    tiles = (lbw.TILE, lbw.WIDE_TILE)
    default = lbw.TILE
    rng = cp.random.default_rng(0)
    nhwc = args.layout == "NHWC"
    print(f"{'layer':28s} {'NPQ':>7s} {'taps':>5s} | "
          + " ".join(f"{t.block_m}x{t.block_n}".rjust(8) for t in tiles) + " | best")
    for layer in load_shapes()["suites"][args.suite]:
        if layer.get("groups", 1) != 1:
            continue
        n, c, h, w, k = (layer[key] for key in "NCHWK")
        r, s, stride, pad = layer["R"], layer["S"], layer["stride"], layer["pad"]
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
        times = []
        expected = None
        for tile in tiles:
            lbw.TILE = tile
            try:
                got = call()
                if expected is None:
                    expected = got
                err = float(cp.abs(got.astype(cp.float32) - expected.astype(cp.float32)).max())
                scale = float(cp.abs(expected.astype(cp.float32)).max())
                us = _replay_or_events_us(cp, call) if err <= 1e-3 * scale else float("nan")
            finally:
                lbw.TILE = default
            times.append(us)
        best = min(range(len(tiles)), key=lambda i: times[i] if times[i] == times[i] else 1e30)
        print(f"{layer['name'][:28]:28s} {n * p * q:7d} {c * r * s:5d} | "
              + " ".join(f"{t:8.1f}" for t in times)
              + f" | {tiles[best].block_m}x{tiles[best].block_n} "
              f"{flops / times[best] / 1e6:.0f} TFLOP/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
