"""GPU probe (session 23): pooling / ROI kernel times without L2 flush (events, distribution) and
graph replays; `--ncu CASE` runs one case 3 times for ncu (profile the 3rd launch)."""
import json
import statistics
import sys

import cupy as cp
import numpy as np

import gpuconv
from bench.operations import random_boxes
from bench.geometry import RoiShape
from bench.timing import graph_replay_us

rng = cp.random.default_rng(0)


def randn(*s, dtype="float32"):
    return rng.standard_normal(s, dtype=cp.float32).astype(dtype)


def nhwc(a):
    return cp.ascontiguousarray(a.transpose(0, 2, 3, 1))


def pool(N, C, H, W, dtype, layout):
    x = randn(N, C, H, W, dtype=dtype)
    return nhwc(x) if layout == "NHWC" else x


def dfk(layout):
    return {} if layout == "NCHW" else {"data_format": "NHWC"}


CASES = {}


def case(name):
    def deco(fn):
        CASES[name] = fn
        return fn
    return deco


for dt, lay in (("float32", "NCHW"), ("float16", "NHWC"), ("float16", "NCHW"), ("float32", "NHWC")):
    tag = f"{dt[5:]}{lay}"

    def mk_avg3(dt=dt, lay=lay):
        x = pool(32, 64, 56, 56, dt, lay)
        return lambda: gpuconv.avg_pool2d(x, 3, 1, 1, **dfk(lay))
    CASES[f"avg3s1_fwd_{tag}"] = mk_avg3

    def mk_max3(dt=dt, lay=lay):
        x = pool(32, 64, 112, 112, dt, lay)
        return lambda: gpuconv.max_pool2d(x, 3, 2, 1, **dfk(lay))
    CASES[f"max3s2_fwd_{tag}"] = mk_max3

    def mk_max2(dt=dt, lay=lay):
        x = pool(64, 64, 224, 224, dt, lay)
        return lambda: gpuconv.max_pool2d(x, 2, 2, 0, **dfk(lay))
    CASES[f"max2s2_fwd_{tag}"] = mk_max2

    def mk_gap(dt=dt, lay=lay):
        x = pool(32, 1280, 7, 7, dt, lay)
        return lambda: gpuconv.global_avg_pool2d(x, **dfk(lay))
    CASES[f"gap_mbv2_fwd_{tag}"] = mk_gap

    def mk_adb(dt=dt, lay=lay):
        x = pool(128, 256, 13, 13, dt, lay)
        dy = pool(128, 256, 6, 6, dt, lay)
        return lambda: gpuconv.grad.adaptive_avg_pool2d(dy, x, 6, **dfk(lay))
    CASES[f"adapt13to6_bwd_{tag}"] = mk_adb

    def mk_avg2b(dt=dt, lay=lay):
        x = pool(32, 256, 56, 56, dt, lay)
        dy = pool(32, 256, 28, 28, dt, lay)
        return lambda: gpuconv.grad.avg_pool2d(dy, x, 2, 2, 0, **dfk(lay))
    CASES[f"avg2s2_bwd_{tag}"] = mk_avg2b

    def mk_maxb(dt=dt, lay=lay):
        x = pool(32, 64, 112, 112, dt, lay)
        y, idx = gpuconv.max_pool2d(x, 3, 2, 1, return_indices=True, **dfk(lay))
        dy = randn(*y.shape, dtype=dt)
        return lambda: gpuconv.grad.max_pool2d(dy, x, 3, 2, 1, indices=idx, **dfk(lay))
    CASES[f"max3s2_bwd_{tag}"] = mk_maxb

    def mk_maxb_det(dt=dt, lay=lay):
        x = pool(32, 64, 112, 112, dt, lay)
        y, idx = gpuconv.max_pool2d(x, 3, 2, 1, return_indices=True, **dfk(lay))
        dy = randn(*y.shape, dtype=dt)
        return lambda: gpuconv.grad.max_pool2d(dy, x, 3, 2, 1, indices=idx, deterministic=True,
                                               **dfk(lay))
    CASES[f"max3s2_bwddet_{tag}"] = mk_maxb_det

    for det in (False, True):
        def mk_max31(dt=dt, lay=lay, det=det):
            x = pool(128, 480, 28, 28, dt, lay)
            y, idx = gpuconv.max_pool2d(x, 3, 1, 1, return_indices=True, **dfk(lay))
            dy = randn(*y.shape, dtype=dt)
            return lambda: gpuconv.grad.max_pool2d(dy, x, 3, 1, 1, indices=idx,
                                                   deterministic=det, **dfk(lay))
        CASES[f"max3s1_bwd{'det' if det else ''}_{tag}"] = mk_max31

    def mk_avg31b(dt=dt, lay=lay):
        x = pool(32, 64, 56, 56, dt, lay)
        dy = pool(32, 64, 56, 56, dt, lay)
        return lambda: gpuconv.grad.avg_pool2d(dy, x, 3, 1, 1, **dfk(lay))
    CASES[f"avg3s1_bwd_{tag}"] = mk_avg31b

    def mk_adb7(dt=dt, lay=lay):
        x = pool(128, 512, 14, 14, dt, lay)
        dy = pool(128, 512, 7, 7, dt, lay)
        return lambda: gpuconv.grad.adaptive_avg_pool2d(dy, x, 7, **dfk(lay))
    CASES[f"adapt14to7_bwd_{tag}"] = mk_adb7

    def mk_avg7(dt=dt, lay=lay):
        x = pool(128, 1024, 7, 7, dt, lay)
        return lambda: gpuconv.avg_pool2d(x, 7, **dfk(lay))
    CASES[f"avgpool7_fwd_{tag}"] = mk_avg7

    def mk_avg7b(dt=dt, lay=lay):
        x = pool(128, 1024, 7, 7, dt, lay)
        dy = pool(128, 1024, 1, 1, dt, lay)
        return lambda: gpuconv.grad.avg_pool2d(dy, x, 7, **dfk(lay))
    CASES[f"avgpool7_bwd_{tag}"] = mk_avg7b


def roi_case(name, N, C, H, W, K, scale, direction):
    def mk():
        s = RoiShape("roi_align", N, C, H, W, K, (7, 7), scale, 2, True)
        boxes = cp.asarray(random_boxes(s, 3, huge=False).astype(np.float32))
        x = randn(N, C, H, W)
        if direction == "fwd":
            return lambda: gpuconv.roi_align(x, boxes, 7, scale, 2, True)
        dy = randn(K, C, 7, 7)
        return lambda: gpuconv.grad.roi_align(dy, x, boxes, 7, scale, 2, True)
    CASES[name] = mk


roi_case("roi_p2train_fwd", 2, 256, 200, 304, 1024, 0.25, "fwd")
roi_case("roi_p2test_fwd", 1, 256, 200, 304, 1000, 0.25, "fwd")
roi_case("roi_p4_fwd", 1, 256, 50, 76, 1000, 0.0625, "fwd")


def events(fn, runs=60):
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    ts = []
    for _ in range(runs):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        ts.append(cp.cuda.get_elapsed_time(start, stop) * 1e3)
    return ts


def main():
    import os
    if os.environ.get("NO_TABLES"):
        import gpuconv.roi.launch_align as la
        la.TABLED_MIN_ELEMENTS = 1 << 62
    if sys.argv[1] == "--ncu":
        fn = CASES[sys.argv[2]]()
        for _ in range(3):
            fn()
        cp.cuda.Device().synchronize()
        return
    tag = sys.argv[1]
    names = sys.argv[2].split(",") if len(sys.argv) > 2 and sys.argv[2] else list(CASES)
    out = {}
    for name in names:
        if name not in CASES:
            continue
        try:
            fn = CASES[name]()
            for _ in range(3):
                fn()
            cp.cuda.Device().synchronize()
            ts = events(fn)
        except Exception as e:     # noqa: BLE001
            print(f"{tag:8s} {name:28s} FAILED {type(e).__name__}: {e}", flush=True)
            continue
        try:
            g = graph_replay_us(cp, fn, runs=30)
        except Exception as e:     # noqa: BLE001
            g = float("nan")
        out[name] = dict(min=min(ts), med=statistics.median(ts), max=max(ts), graph=g)
        print(f"{tag:8s} {name:28s} ev min {min(ts):8.1f} med {statistics.median(ts):8.1f} "
              f"max {max(ts):8.1f}  graph {g:8.1f}", flush=True)
    with open(f"{sys.argv[3] if len(sys.argv) > 3 else '.'}/probe_{tag}.json", "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
