"""Host time of one CuPy kernel launch by how its scalar arguments are passed.

    python -m bench.launch_cost [--launches 20000]

gpuconv's kernels take their shape as many 32-bit scalars (a conv kernel ~28). CuPy wraps each
argument on every launch, so the count and the Python type of the scalars are part of every
call's host time. This times back-to-back launches of empty kernels (nothing synchronized, so
the GPU never holds the host back) with the same arguments passed as: numpy int32 scalars,
Python ints, one numpy structured scalar (a struct by value), and a pointer to a device copy.
Needs CuPy and a CUDA GPU.
"""
from __future__ import annotations

import argparse
import time

from .environment import require

SCALARS = 28

SOURCE = r"""
struct Shape { int v[%(n)d]; };
extern "C" __global__ void by_scalars(float* out, const float* a, const float* b, %(params)s) {
    if (threadIdx.x == 0 && blockIdx.x == 1000000) out[0] = a[0] + b[0] + %(sum)s;
}
extern "C" __global__ void by_struct(float* out, const float* a, const float* b, Shape s) {
    if (threadIdx.x == 0 && blockIdx.x == 1000000) out[0] = a[0] + b[0] + s.v[3];
}
extern "C" __global__ void by_pointer(float* out, const float* a, const float* b,
                                      const Shape* s) {
    if (threadIdx.x == 0 && blockIdx.x == 1000000) out[0] = a[0] + b[0] + s->v[3];
}
extern "C" __global__ void pointers_only(float* out, const float* a, const float* b) {
    if (threadIdx.x == 0 && blockIdx.x == 1000000) out[0] = a[0] + b[0];
}
""" % {"n": SCALARS,
       "params": ", ".join(f"int p{i}" for i in range(SCALARS)),
       "sum": " + ".join(f"p{i}" for i in range(SCALARS))}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.launch_cost",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--launches", type=int, default=20000)
    options = parser.parse_args(argv)

    cupy, = require("bench.launch_cost", "cupy")
    import numpy as np

    module = cupy.RawModule(code=SOURCE)
    out, a, b = cupy.zeros(1, cupy.float32), cupy.ones(4, cupy.float32), cupy.ones(4, cupy.float32)
    values = list(range(3, 3 + SCALARS))
    shape_dtype = np.dtype([("v", np.int32, (SCALARS,))])
    struct = np.zeros((), shape_dtype)
    struct["v"] = values
    device_struct = cupy.asarray(np.asarray(values, np.int32))
    cases = {
        f"{SCALARS} numpy int32": ("by_scalars", [np.int32(v) for v in values]),
        f"{SCALARS} Python int": ("by_scalars", list(values)),
        "one struct by value": ("by_struct", [struct[()]]),
        "pointer to a device struct": ("by_pointer", [device_struct]),
        "no scalars": ("pointers_only", []),
    }
    print(f"{'arguments':30s} {'us per launch':>14s}")
    for label, (name, scalars) in cases.items():
        kernel = module.get_function(name)
        args = (out, a, b, *scalars)
        for _ in range(200):
            kernel((2,), (32,), args)
        cupy.cuda.Device().synchronize()
        start = time.perf_counter()
        for _ in range(options.launches):
            kernel((2,), (32,), args)
        elapsed = time.perf_counter() - start
        cupy.cuda.Device().synchronize()
        print(f"{label:30s} {elapsed / options.launches * 1e6:14.2f}")
    # What building the argument tuple costs on top (gpuconv builds it on every call).
    start = time.perf_counter()
    for _ in range(options.launches):
        tuple(np.int32(v) for v in values)
    print(f"{'(building 28 np.int32)':30s} "
          f"{(time.perf_counter() - start) / options.launches * 1e6:14.2f}")
    start = time.perf_counter()
    for _ in range(options.launches):
        s = np.zeros((), shape_dtype)
        s["v"] = values
        s[()]
    print(f"{'(building the struct)':30s} "
          f"{(time.perf_counter() - start) / options.launches * 1e6:14.2f}")


if __name__ == "__main__":
    main()
