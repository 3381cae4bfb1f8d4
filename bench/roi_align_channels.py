"""``python -m bench.roi_align_channels``: the NCHW roi_align forward with 4 and 2 channels per
thread against torchvision, on detection-head shapes (kernels/pool/NOTES.md "ROI align: channels
per thread"). Shows which count the launcher picks (``launch_align.forward_channels``: 4 while
the feature map fits in L2) and whether that is the faster one. fp32, aligned boxes spanning
5-50 % of the image side (60-100 % for the few-huge-boxes case), median of 30 launches timed
with CUDA events, L2 flushed before each. Needs CuPy, torch and torchvision on a CUDA GPU.
"""
from __future__ import annotations

import sys

import numpy as np

# name, N, C, H, W, boxes, output size, spatial scale, sampling ratio, box side range
CASES = (("FPN P2 train", 2, 256, 200, 304, 1024, 7, 0.25, 2, (0.05, 0.5)),
         ("FPN P2 test", 1, 256, 200, 304, 1000, 7, 0.25, 2, (0.05, 0.5)),
         ("FPN P4", 1, 256, 50, 76, 1000, 7, 0.0625, 2, (0.05, 0.5)),
         ("mask head 14x14", 1, 256, 50, 76, 100, 14, 0.0625, 2, (0.05, 0.5)),
         ("few huge, adaptive", 1, 256, 100, 152, 8, 7, 0.125, 0, (0.6, 1.0)))


def random_boxes(rng, K, N, H, W, scale, side_range) -> np.ndarray:
    """(K, 5) rows [image, x1, y1, x2, y2] inside the image (feature map / scale)."""
    img_h, img_w = H / scale, W / scale
    side = rng.uniform(*side_range, (K, 2)) * [img_w, img_h]
    x1 = rng.uniform(0, 1, K) * (img_w - side[:, 0])
    y1 = rng.uniform(0, 1, K) * (img_h - side[:, 1])
    return np.stack([rng.integers(0, N, K), x1, y1, x1 + side[:, 0], y1 + side[:, 1]],
                    axis=1).astype(np.float32)


def median_us(cupy, fn, runs: int = 30) -> float:
    flush = cupy.empty(100 << 20, dtype=cupy.uint8)     # 2x an H100's L2
    for _ in range(5):
        fn()
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    times = []
    for _ in range(runs):
        flush.fill(1)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, end) * 1e3)
    return float(np.median(times))


def main() -> int:
    try:
        import cupy
        import torch
        import torchvision
    except ImportError as error:
        raise SystemExit(f"python -m bench.roi_align_channels needs CuPy, torch and torchvision "
                         f"on a CUDA GPU: {error}") from None

    from gpuconv.roi import launch_align
    from gpuconv.roi.geometry import check_roi_arguments

    rng = np.random.default_rng(0)
    print(f"L2: {launch_align._l2_bytes(cupy.cuda.Device().id) >> 20} MiB; us per launch")
    print(f"{'case':20s} {'x MB':>6s} {'picks':>5s} {'4/thread':>9s} {'2/thread':>9s} "
          f"{'torchvision':>11s}")
    for name, N, C, H, W, K, out, scale, ratio, side in CASES:
        x = cupy.random.standard_normal((N, C, H, W), dtype=cupy.float32)
        boxes = cupy.asarray(random_boxes(rng, K, N, H, W, scale, side))
        call = check_roi_arguments(x, boxes, out, scale, ratio, True)
        want = torchvision.ops.roi_align(torch.from_dlpack(x), torch.from_dlpack(boxes), out,
                                         scale, ratio, True)
        times = {}
        for channels in (4, 2):
            def run(channels=channels):
                return launch_align.roi_align(call.geometry, x, call.rois, data_format="NCHW",
                                              executor="cupy", channels=channels)
            error = float(cupy.abs(run() - cupy.from_dlpack(want)).max())
            if error > 1e-4:
                raise SystemExit(f"{name}: {channels} channels per thread disagree with "
                                 f"torchvision by {error:.1e}")
            times[channels] = median_us(cupy, run)
        tx, tb = torch.from_dlpack(x), torch.from_dlpack(boxes)
        tv = median_us(cupy, lambda: torchvision.ops.roi_align(tx, tb, out, scale, ratio, True))
        picks = launch_align.forward_channels(x, "NCHW", "cupy")
        print(f"{name:20s} {x.nbytes / 1e6:6.1f} {picks:5d} {times[4]:9.1f} {times[2]:9.1f} "
              f"{tv:11.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
