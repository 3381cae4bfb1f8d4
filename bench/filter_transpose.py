"""``python -m bench.filter_transpose [--dtype float16]``: the filter layout copies the
convolution launchers make (kernels/layout/NOTES.md), gpuconv's batched_transpose against
CuPy's copy of the same transposed view (what the launchers made before session 49), on
ResNet-50's filter shapes: KCRS as KRSC (an NHWC forward handed KCRS filters), KCRS as RSKC and
channels_last as RSCK (the data gradient's two orders, NCHW and NHWC). Median of 30 launches
timed with CUDA events, L2 flushed before each, and the bandwidth (bytes read + written).
Every copy is checked against CuPy's first. Needs CuPy on a CUDA GPU.
"""
from __future__ import annotations

import argparse

import numpy as np

from .environment import require
from .roi_align_kernels import median_us
from .timing import CudaEventClock

# (K, C, R, S) of ResNet-50's convolutions, one per distinct shape that matters
SHAPES = (("conv1 7x7", (64, 3, 7, 7)), ("layer1 3x3", (64, 64, 3, 3)),
          ("layer2 3x3", (128, 128, 3, 3)), ("layer3 3x3", (256, 256, 3, 3)),
          ("layer4 3x3", (512, 512, 3, 3)), ("layer4 1x1 in", (512, 2048, 1, 1)),
          ("layer4 1x1 out", (2048, 512, 1, 1)))
# name, memory order of the filters handed in, the order the kernel reads
COPIES = (("KCRS->KRSC", (0, 1, 2, 3), (0, 2, 3, 1)),
          ("KCRS->RSKC", (0, 1, 2, 3), (2, 3, 0, 1)),
          ("KRSC->RSCK", (0, 2, 3, 1), (2, 3, 1, 0)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.filter_transpose")
    parser.add_argument("--dtype", default="float16", choices=("float16", "float32"))
    args = parser.parse_args(argv)
    (cupy,) = require("bench.filter_transpose", "cupy")
    from gpuconv.layout.launch_transpose import permuted

    clock = CudaEventClock()
    dtype = np.dtype(args.dtype)
    print(f"{args.dtype}; us per copy (L2 flushed), GB/s of bytes read + written")
    print(f"{'filters':16s} {'copy':11s} {'MB':>6s} {'gpuconv':>9s} {'cupy':>9s} "
          f"{'GB/s':>7s} {'cupy GB/s':>9s}")
    for name, shape in SHAPES:
        w = cupy.random.standard_normal(shape, dtype=cupy.float32).astype(dtype)
        for copy, memory, axes in COPIES:
            held = cupy.ascontiguousarray(w.transpose(memory)).transpose(np.argsort(memory))
            want = cupy.ascontiguousarray(held.transpose(axes))
            got = permuted(cupy, held, axes, "cupy")
            if not bool((got == want).all()):
                raise SystemExit(f"{name} {copy}: batched_transpose differs from CuPy's copy")
            ours = median_us(clock, lambda: permuted(cupy, held, axes, "cupy"))
            theirs = median_us(clock, lambda: cupy.ascontiguousarray(held.transpose(axes)))
            moved = 2 * w.nbytes
            print(f"{name:16s} {copy:11s} {w.nbytes / 1e6:6.2f} {ours:9.1f} {theirs:9.1f} "
                  f"{moved / ours / 1e3:7.0f} {moved / theirs / 1e3:9.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
