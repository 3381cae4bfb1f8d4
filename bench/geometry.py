"""The problem shapes the benchmark runs: one frozen record per operation kind.

Names follow CUTLASS (design.md): input N C H W, filters K R S, output P Q. Output sizes use
PyTorch's formulas, so a shape means the same thing here, in gpuconv and in the baselines.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


def pair(value) -> tuple[int, int]:
    """shapes.json writes stride/pad/dilation/kernel as an int or an [h, w] list."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"expected an int or [h, w], got {value!r}")
        return int(value[0]), int(value[1])
    return int(value), int(value)


def conv_output_size(size: int, kernel: int, stride: int, pad: int, dilation: int) -> int:
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


@dataclass(frozen=True)
class ConvShape:
    N: int
    C: int
    H: int
    W: int
    K: int
    R: int
    S: int
    stride: tuple[int, int] = (1, 1)
    pad: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self):
        if self.C % self.groups or self.K % self.groups:
            raise ValueError(f"groups={self.groups} must divide C={self.C} and K={self.K}")
        if self.P < 1 or self.Q < 1:
            raise ValueError(f"conv {self.describe()} has an empty output ({self.P}x{self.Q})")

    @property
    def P(self) -> int:
        return conv_output_size(self.H, self.R, self.stride[0], self.pad[0], self.dilation[0])

    @property
    def Q(self) -> int:
        return conv_output_size(self.W, self.S, self.stride[1], self.pad[1], self.dilation[1])

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.C, self.H, self.W)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.K, self.C // self.groups, self.R, self.S)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.K, self.P, self.Q)

    @property
    def kind(self) -> str:
        """The perf.md family: depthwise > grouped > dilated > pointwise > dense."""
        if self.groups > 1 and self.groups == self.C:
            return "depthwise"
        if self.groups > 1:
            return "grouped"
        if self.dilation != (1, 1):
            return "dilated"
        if (self.R, self.S) == (1, 1):
            return "pointwise"
        return "dense"

    @property
    def is_plain_gemm(self) -> bool:
        """A 1x1, stride-1, unpadded, ungrouped conv is exactly one GEMM (M=N*H*W, N=K, K=C)."""
        return ((self.R, self.S) == (1, 1) and self.stride == (1, 1) and self.pad == (0, 0)
                and self.groups == 1)

    def describe(self) -> str:
        text = (f"N{self.N} C{self.C} {self.H}x{self.W} -> K{self.K} {self.R}x{self.S}"
                f" s{_pair_text(self.stride)} p{_pair_text(self.pad)}")
        if self.dilation != (1, 1):
            text += f" d{_pair_text(self.dilation)}"
        if self.groups != 1:
            text += f" g{self.groups}"
        return text


POOL_OPS = ("max", "avg", "global_avg", "global_max", "adaptive_avg", "adaptive_max")


@dataclass(frozen=True)
class PoolShape:
    op: str
    N: int
    C: int
    H: int
    W: int
    kernel: tuple[int, int] | None = None      # window ops only
    stride: tuple[int, int] | None = None
    pad: tuple[int, int] = (0, 0)
    ceil_mode: bool = False
    output_size: tuple[int, int] | None = None  # adaptive ops only

    def __post_init__(self):
        if self.op not in POOL_OPS:
            raise ValueError(f"pool op must be one of {POOL_OPS}, got {self.op!r}")
        if self.op in ("max", "avg") and (self.kernel is None or self.stride is None):
            raise ValueError(f"{self.op} pooling needs kernel and stride")
        if self.op.startswith("adaptive") and self.output_size is None:
            raise ValueError(f"{self.op} pooling needs output_size")
        if self.P < 1 or self.Q < 1:
            raise ValueError(f"pool {self.describe()} has an empty output")

    @property
    def kind(self) -> str:
        return self.op.split("_")[0] if "_" in self.op else self.op

    @property
    def is_max(self) -> bool:
        return self.op.endswith("max")

    def _window_out(self, size: int, k: int, s: int, p: int) -> int:
        # torch's pooling_output_shape: a ceil-mode window must start inside the input or the
        # left padding.
        out = (size + 2 * p - k + ((s - 1) if self.ceil_mode else 0)) // s + 1
        if self.ceil_mode and (out - 1) * s >= size + p:
            out -= 1
        return out

    @property
    def P(self) -> int:
        if self.op in ("max", "avg"):
            return self._window_out(self.H, self.kernel[0], self.stride[0], self.pad[0])
        return 1 if self.op.startswith("global") else self.output_size[0]

    @property
    def Q(self) -> int:
        if self.op in ("max", "avg"):
            return self._window_out(self.W, self.kernel[1], self.stride[1], self.pad[1])
        return 1 if self.op.startswith("global") else self.output_size[1]

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.C, self.H, self.W)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.C, self.P, self.Q)

    def window_elements(self) -> int:
        """Input elements visited per (n, c) plane, summed over the output (the op count)."""
        if self.op in ("max", "avg"):
            return self.P * self.Q * self.kernel[0] * self.kernel[1]
        if self.op.startswith("global"):
            return self.H * self.W
        return _adaptive_span(self.H, self.P) * _adaptive_span(self.W, self.Q)

    def describe(self) -> str:
        head = f"{self.op} N{self.N} C{self.C} {self.H}x{self.W}"
        if self.op in ("max", "avg"):
            head += (f" k{_pair_text(self.kernel)} s{_pair_text(self.stride)}"
                     f" p{_pair_text(self.pad)}" + (" ceil" if self.ceil_mode else ""))
        return f"{head} -> {self.P}x{self.Q}"


def _adaptive_span(size: int, out: int) -> int:
    """Sum of adaptive bin lengths: bin i covers [floor(i*size/out), ceil((i+1)*size/out))."""
    return sum(math.ceil((i + 1) * size / out) - (i * size) // out for i in range(out))


ROI_OPS = ("roi_align", "roi_pool")


@dataclass(frozen=True)
class RoiShape:
    op: str
    N: int
    C: int
    H: int
    W: int
    rois: int
    output_size: tuple[int, int]
    spatial_scale: float
    sampling_ratio: int = -1      # roi_align only
    aligned: bool = False         # roi_align only

    def __post_init__(self):
        if self.op not in ROI_OPS:
            raise ValueError(f"roi op must be one of {ROI_OPS}, got {self.op!r}")
        if self.rois < 1:
            raise ValueError("rois must be >= 1")

    @property
    def kind(self) -> str:
        return self.op.split("_")[1]

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.C, self.H, self.W)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.rois, self.C, *self.output_size)

    def describe(self) -> str:
        text = (f"{self.op} N{self.N} C{self.C} {self.H}x{self.W} rois{self.rois}"
                f" -> {_pair_text(self.output_size, 'x')} scale {self.spatial_scale:g}")
        if self.op == "roi_align":
            text += f" sr{self.sampling_ratio}" + (" aligned" if self.aligned else "")
        return text


def _pair_text(p: tuple[int, int], sep: str = ",") -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}{sep}{p[1]}"
