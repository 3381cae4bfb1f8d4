"""The peers gpuconv is measured against (perf.md "Baselines"), prepared for one case.

On a GPU, all on the same device and stream as gpuconv, on the very same data (shared through
DLPack, no copy):
- ``cudnn``       torch.nn.functional.conv2d / torch.nn.grad.conv2d_*, cuDNN on, benchmark mode
                  (its tuning happens in the warm-up), TF32 off: a strict fp32 comparison;
- ``cudnn_nhwc``  the same on channels_last tensors;
- ``torch_native`` the same call with cuDNN off (PyTorch's im2col + cuBLAS, its depthwise and
                  dilated kernels); cuBLAS TF32 is off too;
- ``cublas``      cupy.matmul on the GEMM view of the conv (M=N*P*Q, N=K, K=C*R*S): the exact
                  problem (checked) for a plain 1x1 conv, the GEMM inside im2col+GEMM
                  (im2col excluded, not checkable) otherwise;
- ``torch``       PyTorch's own pooling (forward and the aten backward ops);
- ``torchvision`` torchvision.ops roi_align / roi_pool and their backward ops.
Without a GPU the one baseline is ``reference``: gpuconv's NumPy reference, which is also the
oracle every simulator result is checked against.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, ContextManager

from .geometry import ConvShape, PoolShape, RoiShape
from .operations import Inputs, NotApplicable, Unavailable, gpuconv_runner, numpy_dtype, output_nchw
from .suites import Case

GPU_CONV_BASELINES = ("cudnn", "cudnn_nhwc", "torch_native", "cublas")
GPU_POOL_BASELINES = ("torch",)
GPU_ROI_BASELINES = ("torchvision",)
CPU_BASELINES = ("reference",)
# The largest GEMM-view operands the cublas baseline allocates (bytes, A + B + C).
GEMM_VIEW_LIMIT = 4 << 30


@dataclass
class Baseline:
    name: str
    executor: str
    run: Callable[[], Any]
    to_nchw: Callable[[Any], Any]                 # result -> NCHW array of the case's xp
    context: Callable[[], ContextManager] = contextlib.nullcontext
    checkable: bool = True                        # False: not the case's result (GEMM view)
    note: str = ""
    is_gpuconv: bool = False                      # the reference: its failures are gpuconv's


def baseline_names(case: Case, mode: str) -> tuple[str, ...]:
    if mode == "cpu":
        return CPU_BASELINES
    op = case.layer.op
    return {"conv": GPU_CONV_BASELINES, "pool": GPU_POOL_BASELINES, "roi": GPU_ROI_BASELINES}[op]


def prepare(name: str, case: Case, inp: Inputs) -> Baseline:
    """Build one baseline for a case; Unavailable / NotApplicable when it cannot run it."""
    if name == "reference":
        run = gpuconv_runner(case, inp, None)
        return Baseline("reference", "cpu-reference", run, lambda out: output_nchw(case, inp, out),
                        is_gpuconv=True)
    if name == "cublas":
        return _cublas(case, inp)
    torch = _torch()
    if name in ("cudnn", "cudnn_nhwc", "torch_native"):
        return _torch_conv(torch, name, case, inp)
    if name == "torch":
        return _torch_pool(torch, case, inp)
    if name == "torchvision":
        return _torchvision_roi(torch, case, inp)
    raise ValueError(f"unknown baseline {name!r}")


# ---- torch --------------------------------------------------------------------------------

def _torch():
    try:
        import torch
    except ImportError as exc:
        raise Unavailable(f"torch is not installed ({exc})") from None
    if not torch.cuda.is_available():
        raise Unavailable("torch has no CUDA device")
    return torch


def configure_torch(torch) -> dict:
    """Process-wide settings for the torch baselines; returned for the JSON record."""
    torch.backends.cuda.matmul.allow_tf32 = False     # native conv's cuBLAS GEMMs: strict fp32
    torch.backends.cudnn.allow_tf32 = False
    return {"torch.backends.cuda.matmul.allow_tf32": False,
            "torch.backends.cudnn.allow_tf32": False,
            "torch.backends.cudnn.benchmark": "True for cudnn/cudnn_nhwc (tuned in the warm-up)",
            "torch.backends.cudnn.enabled": "False for torch_native"}


def _as_torch(torch, a, channels_last: bool = False):
    t = torch.from_dlpack(a)
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t


def _from_torch(t):
    import cupy
    return cupy.from_dlpack(t.contiguous())


def _torch_conv(torch, name: str, case: Case, inp: Inputs) -> Baseline:
    s: ConvShape = case.layer.shape
    cl = name == "cudnn_nhwc"
    geometry = (s.stride, s.pad, s.dilation, s.groups)
    if case.direction == "forward":
        x, w = _as_torch(torch, inp.x_nchw, cl), _as_torch(torch, inp.w, cl)
        run = lambda: torch.nn.functional.conv2d(x, w, None, *geometry)  # noqa: E731
    elif case.direction == "data_grad":
        w, dy = _as_torch(torch, inp.w, cl), _as_torch(torch, inp.dy_nchw, cl)
        run = lambda: torch.nn.grad.conv2d_input(s.input_shape, w, dy, *geometry)  # noqa: E731
    else:
        x, dy = _as_torch(torch, inp.x_nchw, cl), _as_torch(torch, inp.dy_nchw, cl)
        run = lambda: torch.nn.grad.conv2d_weight(x, s.weight_shape, dy, *geometry)  # noqa: E731
    enabled = name != "torch_native"

    def flags():
        # flags() defaults enabled/benchmark to False: every flag is spelled out.
        return torch.backends.cudnn.flags(enabled=enabled, benchmark=enabled,
                                          deterministic=False, allow_tf32=False)
    executor = "torch-native" if not enabled else ("cudnn-nhwc" if cl else "cudnn")
    return Baseline(name, executor, run, _from_torch, context=flags)


def _torch_pool(torch, case: Case, inp: Inputs) -> Baseline:
    s: PoolShape = case.layer.shape
    F, aten = torch.nn.functional, torch.ops.aten
    x = _as_torch(torch, inp.x_nchw, channels_last=case.layout == "NHWC")
    if s.op in ("max", "avg"):
        k, st, p = list(s.kernel), list(s.stride), list(s.pad)
    out_size = [1, 1] if s.op.startswith("global") else (list(s.output_size) if s.output_size else None)
    if case.direction == "forward":
        run = {
            "max": lambda: F.max_pool2d(x, k, st, p, 1, s.ceil_mode),
            "avg": lambda: F.avg_pool2d(x, k, st, p, s.ceil_mode, True),
            "global_avg": lambda: F.adaptive_avg_pool2d(x, out_size),
            "adaptive_avg": lambda: F.adaptive_avg_pool2d(x, out_size),
            "global_max": lambda: F.adaptive_max_pool2d(x, out_size),
            "adaptive_max": lambda: F.adaptive_max_pool2d(x, out_size),
        }[s.op]
        return Baseline("torch", "torch", run, _from_torch)
    # dy in x's layout, as a channels_last model holds it (an NCHW dy costs torch a copy a call)
    dy = _as_torch(torch, inp.dy_nchw, channels_last=case.layout == "NHWC")
    if s.op == "max":
        idx = F.max_pool2d(x, k, st, p, 1, s.ceil_mode, return_indices=True)[1]
        run = lambda: aten.max_pool2d_with_indices_backward(dy, x, k, st, p, [1, 1], s.ceil_mode, idx)  # noqa: E731
    elif s.op == "avg":
        run = lambda: aten.avg_pool2d_backward(dy, x, k, st, p, s.ceil_mode, True, None)  # noqa: E731
    elif s.op in ("global_avg", "adaptive_avg"):
        run = lambda: aten._adaptive_avg_pool2d_backward(dy, x)  # noqa: E731
    else:
        idx = F.adaptive_max_pool2d(x, out_size, return_indices=True)[1]
        run = lambda: aten.adaptive_max_pool2d_backward(dy, x, idx)  # noqa: E731
    return Baseline("torch", "torch", run, _from_torch)


def _torchvision_roi(torch, case: Case, inp: Inputs) -> Baseline:
    try:
        import torchvision
    except ImportError as exc:
        raise Unavailable(f"torchvision is not installed ({exc})") from None
    s: RoiShape = case.layer.shape
    x, boxes = _as_torch(torch, inp.x_nchw), _as_torch(torch, inp.boxes)
    ph, pw = s.output_size
    ops = torch.ops.torchvision
    if case.direction == "forward":
        if s.op == "roi_align":
            run = lambda: torchvision.ops.roi_align(x, boxes, s.output_size, s.spatial_scale,  # noqa: E731
                                                    s.sampling_ratio, s.aligned)
        else:
            run = lambda: torchvision.ops.roi_pool(x, boxes, s.output_size, s.spatial_scale)  # noqa: E731
        return Baseline("torchvision", "torchvision", run, _from_torch)
    dy = _as_torch(torch, inp.dy_nchw)
    n, c, h, w = s.input_shape
    if s.op == "roi_align":
        run = lambda: ops._roi_align_backward(dy, boxes, s.spatial_scale, ph, pw, n, c, h, w,  # noqa: E731
                                              s.sampling_ratio, s.aligned)
    else:
        argmax = ops.roi_pool(x, boxes, s.spatial_scale, ph, pw)[1]
        run = lambda: ops._roi_pool_backward(dy, boxes, argmax, s.spatial_scale, ph, pw, n, c, h, w)  # noqa: E731
    return Baseline("torchvision", "torchvision", run, _from_torch)


# ---- cuBLAS -------------------------------------------------------------------------------

def gemm_view(s: ConvShape, direction: str) -> tuple[int, int, int]:
    """(M, N, K) of the GEMM that im2col + GEMM runs for this conv and direction."""
    npq, crs = s.N * s.P * s.Q, s.C * s.R * s.S
    return {"forward": (npq, s.K, crs),         # im2col(x) [NPQ x CRS] @ w^T [CRS x K]
            "data_grad": (npq, crs, s.K),       # dy [NPQ x K] @ w [K x CRS], then col2im
            "weight_grad": (s.K, crs, npq)}[direction]   # dy^T [K x NPQ] @ im2col(x)


def _cublas(case: Case, inp: Inputs) -> Baseline:
    s: ConvShape = case.layer.shape
    if s.groups != 1:
        raise NotApplicable("grouped conv: no single GEMM")
    try:
        import cupy
    except ImportError as exc:
        raise Unavailable(f"cupy is not installed ({exc})") from None
    m, n, k = gemm_view(s, case.direction)
    itemsize = numpy_dtype(case.dtype).itemsize
    need = (m * k + k * n + m * n) * itemsize
    if need > GEMM_VIEW_LIMIT:
        raise NotApplicable(f"GEMM view needs {need / 2**30:.1f} GiB (limit {GEMM_VIEW_LIMIT / 2**30:.0f} GiB)")
    if not s.is_plain_gemm:
        rng = cupy.random.default_rng(0)
        a = rng.standard_normal((m, k), dtype=cupy.float32).astype(case.dtype)
        b = rng.standard_normal((k, n), dtype=cupy.float32).astype(case.dtype)
        return Baseline("cublas", "cublas", lambda: cupy.matmul(a, b), lambda out: out,
                        checkable=False, note=f"GEMM of the im2col view only ({m}x{n}x{k}); "
                        "im2col/col2im excluded, result not comparable")
    N, C, H, W, K = s.N, s.C, s.H, s.W, s.K
    rows = lambda a, c: cupy.ascontiguousarray(a.transpose(0, 2, 3, 1).reshape(-1, c))  # noqa: E731
    if case.direction == "forward":
        a, b = rows(inp.x_nchw, C), cupy.ascontiguousarray(inp.w.reshape(K, C).T)
        to_nchw = lambda out: out.reshape(N, H, W, K).transpose(0, 3, 1, 2)  # noqa: E731
    elif case.direction == "data_grad":
        a, b = rows(inp.dy_nchw, K), cupy.ascontiguousarray(inp.w.reshape(K, C))
        to_nchw = lambda out: out.reshape(N, H, W, C).transpose(0, 3, 1, 2)  # noqa: E731
    else:
        a = cupy.ascontiguousarray(inp.dy_nchw.transpose(1, 0, 2, 3).reshape(K, -1))
        b = rows(inp.x_nchw, C)
        to_nchw = lambda out: out.reshape(K, C, 1, 1)  # noqa: E731
    return Baseline("cublas", "cublas", lambda: cupy.matmul(a, b), to_nchw,
                    note=f"the exact 1x1 problem as one GEMM ({m}x{n}x{k})")
