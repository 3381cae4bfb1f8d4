"""The two ceilings of the roofline, measured in the same run as the cases (perf.md).

- bandwidth: a large device-to-device copy (bytes read + bytes written) / time;
- peak: a large GEMM in the dtype at hand (cupy.matmul; torch.matmul for bfloat16, which CuPy
  lacks), TF32 off for float32, so fp32 cases are held to the strict fp32 rate.
On the CPU the same two numbers come from NumPy (np.copyto, np.matmul): they describe the CPU,
not any GPU.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from .operations import numpy_dtype
from .timing import CpuClock, CudaEventClock, median

GPU_COPY_BYTES = 1 << 30
GPU_GEMM_N = 8192
CPU_COPY_BYTES = 32 << 20
# NumPy has BLAS only for float32/float64; its float16/bfloat16 matmul is a slow loop.
CPU_GEMM_N = {"float32": 512, "float64": 512, "float16": 128, "bfloat16": 64}


@dataclass(frozen=True)
class Ceilings:
    dtype: str
    bandwidth: float          # bytes/s
    peak_flops: float         # FLOP/s
    copy_bytes: int
    gemm_n: int
    how: str

    def as_json(self) -> dict:
        d = asdict(self)
        d["bandwidth_GBps"] = self.bandwidth / 1e9
        d["peak_TFLOPs"] = self.peak_flops / 1e12
        return d


def measure_cpu(dtype: str, runs: int = 5) -> Ceilings:
    clock = CpuClock()
    src = np.ones(CPU_COPY_BYTES // 4, dtype=np.float32)
    dst = np.empty_like(src)
    copy_s = median(clock.measure(lambda: np.copyto(dst, src), runs))
    n = CPU_GEMM_N[dtype]
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32).astype(numpy_dtype(dtype))
    b = rng.standard_normal((n, n), dtype=np.float32).astype(numpy_dtype(dtype))
    gemm_s = median(clock.measure(lambda: np.matmul(a, b), runs))
    return Ceilings(dtype, 2 * src.nbytes / copy_s, 2 * n ** 3 / gemm_s, src.nbytes, n,
                    "CPU: np.copyto of 32 MiB, np.matmul in the dtype (median of 5)")


def _gpu_copy_seconds(clock, runs: int) -> float:
    import cupy
    src = cupy.ones(GPU_COPY_BYTES, dtype=cupy.uint8)
    dst = cupy.empty_like(src)
    rt = cupy.cuda.runtime

    def copy():
        rt.memcpyAsync(dst.data.ptr, src.data.ptr, src.nbytes, rt.memcpyDeviceToDevice,
                       cupy.cuda.get_current_stream().ptr)
    copy()
    return median(clock.measure(copy, runs))


def measure_gpu(dtype: str, runs: int = 10) -> Ceilings:
    import cupy
    clock = CudaEventClock(flush_l2=False)     # the operands dwarf the L2 anyway
    copy_s = _gpu_copy_seconds(clock, runs)
    n = GPU_GEMM_N
    if dtype == "bfloat16":
        import torch
        torch.backends.cuda.matmul.allow_tf32 = False
        a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        gemm = lambda: torch.matmul(a, b)  # noqa: E731
        how = "torch.matmul"
    else:
        rng = cupy.random.default_rng(0)
        a = rng.standard_normal((n, n), dtype=cupy.float32).astype(dtype)
        b = rng.standard_normal((n, n), dtype=cupy.float32).astype(dtype)
        gemm = lambda: cupy.matmul(a, b)  # noqa: E731
        how = f"cupy.matmul (CUPY_TF32={os.environ.get('CUPY_TF32', '0')})"
    for _ in range(2):
        gemm()
    gemm_s = median(clock.measure(gemm, runs))
    return Ceilings(dtype, 2 * GPU_COPY_BYTES / copy_s, 2 * n ** 3 / gemm_s, GPU_COPY_BYTES, n,
                    f"GPU: cudaMemcpyAsync D2D of {GPU_COPY_BYTES / 2**20:g} MiB; {how} {n}^3 "
                    f"in the dtype (median of {runs}, warm)")
