"""Host time per gpuconv call on a GPU: how much of a small layer's measured time is Python.

    python -m bench.host_overhead [--calls 200] [--profile 25]

For each call below it prints three numbers, in microseconds:
  host   the wall time of one call with nothing synchronized (mean of --calls back-to-back
         calls; the GPU queue never fills, so this is the host's own work: argument checks,
         geometry, planning, allocation, launch);
  event  CUDA events around one call, as `python -m bench` times it (median): the larger of the
         host time and the GPU time, since the GPU waits for the launch;
  graph  one call captured in a CUDA graph and replayed (median per replay): the GPU time of
         its kernels alone, host excluded ("-" where capture fails, e.g. on an allocation);
  queued what one call adds behind a ~1 ms kernel (median), as in a model's step where the host
         runs ahead: ~graph for a call that only queues work; a call that synchronizes (ROI
         calls read back their boxes' check) adds the host time after its synchronization.
Then the cProfile of all the host loops, heaviest functions first (--profile rows).
Needs CuPy and a CUDA GPU.
"""
from __future__ import annotations

import argparse
import cProfile
import statistics
import time

from .environment import require
from .timing import event_us, graph_replay_us, print_profile, queued_us


def _calls(cp, gpuconv):
    from gpuconv.conv import launch
    from gpuconv.conv.geometry import conv2d_geometry
    from gpuconv.pool.grad import WITH_OWN_INDICES
    grad = gpuconv.grad
    rng = cp.random.default_rng(0)

    def randn(*shape, dtype="float32"):
        return rng.standard_normal(shape, dtype=cp.float32).astype(dtype)

    x32, w32 = randn(32, 256, 14, 14), randn(256, 256, 3, 3)
    dy32 = randn(32, 256, 14, 14)
    x16 = randn(32, 14, 14, 256, dtype="float16")
    w16 = randn(256, 256, 3, 3, dtype="float16")
    dy16 = randn(32, 14, 14, 256, dtype="float16")
    x1 = randn(1, 256, 14, 14)
    pool_x = randn(32, 64, 56, 56)
    pool_y, pool_i = gpuconv.max_pool2d(pool_x, 3, 2, 1, return_indices=True)
    pool_dy = randn(*pool_y.shape)
    pool_x_nhwc = cp.ascontiguousarray(pool_x.transpose(0, 2, 3, 1))
    feat = randn(2, 256, 50, 68)
    boxes = cp.asarray([[i % 2, 4.0 + i % 7, 3.0 + i % 5, 40.0 + i % 11, 30.0 + i % 13]
                        for i in range(512)], dtype=cp.float32)
    nhwc = {"data_format": "NHWC"}
    # ResNet-50 layer1's first 1x1 at batch 1: all host time. Through the public front and
    # through the launcher it calls, with split-K's model asked ("auto") and not (1).
    x_small, w_small = randn(1, 64, 56, 56), randn(64, 64, 1, 1)
    geom_small = conv2d_geometry(x_small.shape, w_small.shape)

    def launcher(split_k):
        return lambda: launch.conv2d(geom_small, x_small, w_small, algorithm="pointwise",
                                     split_k=split_k)
    return {
        "conv2d f32 1x1 b1 (pointwise)": lambda: gpuconv.conv2d(x_small, w_small,
                                                                algorithm="pointwise"),
        "launch.conv2d same, split_k auto": launcher("auto"),
        "launch.conv2d same, split_k 1": launcher(1),
        "conv2d f32 NCHW 3x3 b32": lambda: gpuconv.conv2d(x32, w32, padding=1),
        "conv2d f32 NCHW 3x3 b1": lambda: gpuconv.conv2d(x1, w32, padding=1),
        "conv2d f16 NHWC 3x3 b32": lambda: gpuconv.conv2d(x16, w16, padding=1, **nhwc),
        "conv2d_input f32 3x3 b32": lambda: grad.conv2d_input(x32.shape, w32, dy32, padding=1),
        "conv2d_weight f32 3x3 b32": lambda: grad.conv2d_weight(x32, w32.shape, dy32, padding=1),
        "conv2d_input f16 NHWC b32": lambda: grad.conv2d_input(x16.shape, w16, dy16, padding=1,
                                                               **nhwc),
        "conv2d_weight f16 NHWC b32": lambda: grad.conv2d_weight(x16, w16.shape, dy16,
                                                                 padding=1, **nhwc),
        "max_pool2d 3x3 s2": lambda: gpuconv.max_pool2d(pool_x, 3, 2, 1),
        "grad.max_pool2d (indices)": lambda: grad.max_pool2d(pool_dy, pool_x, 3, 2, 1,
                                                             indices=pool_i),
        # as gpuconv.torch's backward calls it: the forward's own indices, not scanned (planned)
        "grad.max_pool2d (own indices)": lambda: WITH_OWN_INDICES["max_pool2d"](
            pool_dy, pool_x, 3, 2, 1, 1, False, indices=pool_i),
        "avg_pool2d 3x3 s2 NHWC": lambda: gpuconv.avg_pool2d(pool_x_nhwc, 3, 2, 1, **nhwc),
        "roi_align 512 boxes": lambda: gpuconv.roi_align(feat, boxes, 7, 0.25, 2, True),
        "roi_pool 512 boxes": lambda: gpuconv.roi_pool(feat, boxes, 7, 0.25),
    }


def _graph_us(cp, fn, runs: int) -> float | None:
    try:
        return graph_replay_us(cp, fn, runs)
    except Exception:      # noqa: BLE001 -- capture refuses allocations and syncs: report "-"
        return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.host_overhead",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--profile", type=int, default=25)
    args = parser.parse_args(argv)
    cp, = require("bench.host_overhead", "cupy")

    import gpuconv
    calls = _calls(cp, gpuconv)
    profiler = cProfile.Profile()
    rows = []
    for name, fn in calls.items():
        for _ in range(3):             # compile, plan caches, memory pool
            fn()
        cp.cuda.Device().synchronize()
        t0 = time.perf_counter()
        for _ in range(args.calls):
            fn()
        host = (time.perf_counter() - t0) / args.calls * 1e6
        cp.cuda.Device().synchronize()
        profiler.enable()                # a separate loop: the profiler slows the host ~2x
        for _ in range(max(args.calls // 4, 1)):
            fn()
        profiler.disable()
        cp.cuda.Device().synchronize()
        event = event_us(cp, fn, 30)
        graph = _graph_us(cp, fn, 30)
        queued = queued_us(cp, fn)
        rows.append((name, host, event, graph, queued))
    print(f"{'call':32s} {'host us':>9s} {'event us':>9s} {'graph us':>9s} {'queued us':>9s}")
    for name, host, event, graph, queued in rows:
        graph_text = "-" if graph is None else f"{graph:.1f}"
        print(f"{name:32s} {host:9.1f} {event:9.1f} {graph_text:>9s} {queued:9.1f}")
    print_profile(profiler, args.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
