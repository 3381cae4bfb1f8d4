"""``python -m bench.roi_align_kernels [--dtype float32]``: each roi_align forward kernel against
torchvision on the bench's detection heads (kernels/pool/NOTES.md "ROI align forward: channel
groups"), so that the launcher's rules can be checked against measurements:

- lanes 4 / lanes 2: roi_align.cu with 4 or 2 channels per thread (NCHW; the launcher's choice
  for small outputs, ``forward_channels``);
- tabled: roi_align_tables.cu's per-box tables in torchvision's order (NCHW);
- grouped: the channel-group kernel on an NHWC copy of the NCHW map (copy included);
- NHWC tabled / NHWC grouped: the same two on a map already laid out NHWC;
- separable / NHWC separable: roi_align_separable.cu's row and column passes (the launcher's
  choice for few boxes with adaptive sampling), where their row sums fit
  ``SEPARABLE_MAX_ROW_SUMS`` (else "-").

The boxes are the bench's (``bench.operations.random_boxes``: sides 5-50 % of the image, 60-100 %
for the few-huge-boxes case). Median of 30 launches timed with CUDA events, L2 flushed before
each; "picks" is what the launcher runs for the NCHW map. Needs CuPy, torch and torchvision on
a CUDA GPU.

``--model`` needs none of them: for each case, the bytes that cross from L2 to L1 if each
block's repeats are L1 hits (every sample's 2 x 2 corners: whole 32-byte sectors of a plane's
rows in NCHW, each corner pixel's channels in NHWC), against the map and its NHWC copy.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from .environment import require
from .operations import random_boxes
from .suites import RoiShape
from .timing import CudaEventClock, median

# the roi_align layers of bench/shapes.json
CASES = (("FPN P2 train", RoiShape("roi_align", 2, 256, 200, 304, 1024, 7, 0.25, 2, True)),
         ("FPN P2 test", RoiShape("roi_align", 1, 256, 200, 304, 1000, 7, 0.25, 2, True)),
         ("FPN P4", RoiShape("roi_align", 1, 256, 50, 76, 1000, 7, 0.0625, 2, True)),
         ("mask head 14x14", RoiShape("roi_align", 1, 256, 200, 304, 100, 14, 0.25, 2, True)),
         ("few huge, adaptive", RoiShape("roi_align", 16, 256, 160, 160, 6, 7, 0.0625, -1,
                                         False)))
# name, map layout, launch_align.roi_align's keywords
VARIANTS = (("lanes 4", "NCHW", dict(tables=False, channels=4)),
            ("lanes 2", "NCHW", dict(tables=False, channels=2)),
            ("tabled", "NCHW", dict(tables=True, groups=False)),
            ("grouped", "NCHW", dict(tables=True, groups=True)),
            ("NHWC tabled", "NHWC", dict(tables=True, groups=False)),
            ("NHWC grouped", "NHWC", dict(tables=True, groups=True)),
            ("separable", "NCHW", dict(separable=True)),
            ("NHWC separable", "NHWC", dict(separable=True)))


def _corners(coordinates, extent: int) -> set:
    """The rows (or columns) the samples at ``coordinates`` interpolate between, as
    roi_align_sampling.cuh's bilinear_axis clamps them; samples outside [-1, extent] none."""
    c = coordinates[(coordinates >= -1) & (coordinates <= extent)]
    low = np.minimum(np.floor(np.maximum(c, 0)), extent - 1).astype(int)
    return set(low) | set(np.minimum(low + 1, extent - 1))


def traffic(shape: RoiShape, itemsize: int, seed: int) -> dict:
    """Bytes a forward moves for ``shape`` with the bench's boxes (module docstring, --model)."""
    P = shape.output_size
    nchw = nhwc = 0
    for _, *box in random_boxes(shape, seed, huge=shape.rois <= 16):
        x1, y1, x2, y2 = np.array(box) * shape.spatial_scale - (0.5 if shape.aligned else 0.0)
        axes = []
        for start, end in ((y1, y2), (x1, x2)):
            bin_size = (end - start) / P
            grid = shape.sampling_ratio if shape.sampling_ratio > 0 else max(
                int(np.ceil(bin_size)), 1)
            samples = start + (np.arange(P)[:, None] + (np.arange(grid) + 0.5) / grid) * bin_size
            axes.append(samples.ravel())
        rows, cols = _corners(axes[0], shape.H), _corners(axes[1], shape.W)
        nchw += len(rows) * len({c * itemsize // 32 for c in cols}) * 32
        nhwc += len(rows) * len(cols) * itemsize
    map_bytes = shape.N * shape.C * shape.H * shape.W * itemsize
    return {"map": map_bytes, "nchw": nchw * shape.C, "nhwc": nhwc * shape.C,
            "copy": 2 * map_bytes}


def print_model(itemsize: int) -> None:
    print(f"MB per forward, {itemsize}-byte elements: L2 -> L1 if a block's repeats hit L1")
    print(f"{'case':20s} {'map':>7s} {'NCHW':>7s} {'NHWC':>7s} {'copy':>7s}")
    for number, (name, shape) in enumerate(CASES):
        t = traffic(shape, itemsize, number)
        print(f"{name:20s} " + " ".join(f"{t[k] / 1e6:7.0f}" for k in ("map", "nchw", "nhwc",
                                                                        "copy")))


def median_us(clock, fn, runs: int = 30) -> float:
    """Median microseconds of ``runs`` launches of ``fn`` after 5 untimed ones."""
    for _ in range(5):
        fn()
    return median(clock.measure(fn, runs)) * 1e6


def picks(launch_align, geom) -> str:
    """The kernel the launcher runs for the NCHW map (lanes: 4 or 2 channels by its size)."""
    if launch_align.uses_separable(geom):
        return "separable"
    if not launch_align.uses_tables(geom):
        return "lanes"
    return "grouped" if launch_align.uses_groups(geom, "NCHW") else "tabled"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.roi_align_kernels")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16"))
    parser.add_argument("--model", action="store_true",
                        help="print the modelled bytes per case instead (no GPU needed)")
    args = parser.parse_args(argv)
    if args.model:
        print_model(np.dtype(args.dtype).itemsize)
        return 0
    cupy, torch, torchvision = require("bench.roi_align_kernels", "cupy", "torch", "torchvision")

    from gpuconv.roi import launch_align
    from gpuconv.roi.geometry import check_roi_arguments

    clock = CudaEventClock()        # L2 flushed before each launch
    dtype = getattr(cupy, args.dtype)
    tolerance = 1e-4 if args.dtype == "float32" else 2e-2
    print(f"{args.dtype}; us per launch (L2 flushed); torchvision on the NCHW map")
    print(f"{'case':20s} {'x MB':>6s} {'picks':>9s} "
          + " ".join(f"{name:>12s}" for name, _, _ in VARIANTS) + f" {'torchvision':>12s}")
    for number, (name, shape) in enumerate(CASES):
        x = cupy.random.standard_normal((shape.N, shape.C, shape.H, shape.W), dtype=cupy.float32)
        x = x.astype(dtype)
        x_nhwc = cupy.ascontiguousarray(x.transpose(0, 2, 3, 1))
        boxes = cupy.asarray(random_boxes(shape, number, huge=shape.rois <= 16)).astype(dtype)
        out, scale, ratio, aligned = (shape.output_size, shape.spatial_scale,
                                      shape.sampling_ratio, shape.aligned)
        tx, tb = torch.from_dlpack(x), torch.from_dlpack(boxes)
        # the oracle is torchvision in float64 on the same (rounded) inputs: its float16 kernel
        # forms the sample coordinates in half precision (0.125 apart at 200 pixels), so it is
        # no reference for a kernel that forms them in float32, as gpuconv's and torch's do
        want = cupy.from_dlpack(torchvision.ops.roi_align(tx.double(), tb.double(), out, scale,
                                                          ratio, aligned))
        times = []
        for variant, layout, keywords in VARIANTS:
            mapped = x if layout == "NCHW" else x_nhwc
            call = check_roi_arguments(mapped, boxes, out, scale, ratio, aligned,
                                       data_format=layout)
            g = call.geometry
            if (keywords.get("separable")
                    and g.K * g.PH * g.C * g.W > launch_align.SEPARABLE_MAX_ROW_SUMS):
                times.append(float("nan"))
                continue

            def run(mapped=mapped, call=call, layout=layout, keywords=keywords):
                return launch_align.roi_align(call.geometry, mapped, call.rois,
                                              data_format=layout, executor="cupy", **keywords)
            got = run()
            if layout == "NHWC":
                got = got.transpose(0, 3, 1, 2)
            error = float(cupy.abs(got.astype(cupy.float64) - want).max())
            if not error <= tolerance:
                raise SystemExit(f"{name}: {variant} disagrees with float64 torchvision by "
                                 f"{error:.1e}")
            times.append(median_us(clock, run))
        tv = median_us(clock, lambda: torchvision.ops.roi_align(tx, tb, out, scale, ratio,
                                                               aligned))
        geom = check_roi_arguments(x, boxes, out, scale, ratio, aligned).geometry
        print(f"{name:20s} {x.nbytes / 1e6:6.1f} {picks(launch_align, geom):>9s} "
              + " ".join(f"{t:12.1f}" if t == t else f"{'-':>12s}" for t in times)
              + f" {tv:12.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
