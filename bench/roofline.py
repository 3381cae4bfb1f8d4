"""FLOP and byte counts, the roofline floor, speed ratios and their geometric mean (perf.md).

- FLOPs of a convolution, in every direction: 2*N*K*P*Q*(C/groups)*R*S (a multiply-add is 2).
- Bytes: the least traffic a kernel needs: each array the computation needs read once, the
  result written once. Where a backward pass can use either the saved argmax indices or the
  forward input to find the maxima, the cheaper of the two counts.
- Pooling and ROI "FLOPs" count one operation per visited input element (an add or a compare;
  8 for a bilinear sample: four weighted taps); those families are bandwidth-bound and their
  floor is set by the bytes.
- floor = max(FLOPs / peak FLOP/s, bytes / bandwidth), both ceilings measured in the same run;
  a case's roofline fraction is floor / measured time (1.0 = at the hardware limit).
- ratio = baseline time / gpuconv time: > 1 means gpuconv is faster.

Convolution counts come from ``gpuconv.conv2d_flops`` / ``gpuconv.conv2d_bytes``
(gpuconv/utils.py) when the package has them, from the same formulas here otherwise
(``conv_flops_formula`` / ``conv_bytes_formula``; tests/bench checks that both agree). Pooling
and ROI counts are the bench's own: gpuconv/utils.py has none for them.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from .geometry import ConvShape, PoolShape, RoiShape

CONV_DIRECTIONS = ("forward", "data_grad", "weight_grad")
# Pooling and ROI have no weights: their only gradient is the data gradient.
DATA_DIRECTIONS = ("forward", "data_grad")
# Pooling indices are int64 in PyTorch's convention (and api.md follows PyTorch);
# torchvision's roi_pool keeps its argmax as int32.
POOL_INDEX_BYTES = 8
ROI_ARGMAX_BYTES = 4
BILINEAR_FLOPS = 8


def _prod(shape) -> int:
    return math.prod(int(d) for d in shape)


# ---- convolution --------------------------------------------------------------------------

def conv_flops_formula(shape: ConvShape) -> int:
    return 2 * shape.N * shape.K * shape.P * shape.Q * (shape.C // shape.groups) * shape.R * shape.S


def conv_bytes_formula(shape: ConvShape, direction: str, itemsize: int) -> int:
    if direction not in CONV_DIRECTIONS:
        raise ValueError(f"direction must be one of {CONV_DIRECTIONS}, got {direction!r}")
    # Every direction reads two of x, w, y and writes the third (forward: read x, w, write y;
    # data_grad: read dy, w, write dx; weight_grad: read x, dy, write dw): the same elements.
    x, w, y = _prod(shape.input_shape), _prod(shape.weight_shape), _prod(shape.output_shape)
    return (x + w + y) * itemsize


def _utility(name: str):
    import gpuconv
    return getattr(gpuconv, name, None)


def _geometry_kwargs(shape: ConvShape) -> dict:
    return dict(stride=shape.stride, padding=shape.pad, dilation=shape.dilation, groups=shape.groups)


def conv_flops(shape: ConvShape) -> int:
    fn = _utility("conv2d_flops")
    if fn is None:
        return conv_flops_formula(shape)
    return int(fn(shape.input_shape, shape.weight_shape, **_geometry_kwargs(shape)))


def conv_bytes(shape: ConvShape, direction: str, itemsize: int) -> int:
    fn = _utility("conv2d_bytes")
    if fn is None or direction not in CONV_DIRECTIONS:
        return conv_bytes_formula(shape, direction, itemsize)
    return int(fn(shape.input_shape, shape.weight_shape, **_geometry_kwargs(shape), itemsize=itemsize))


def count_source() -> str:
    if _utility("conv2d_flops") is not None and _utility("conv2d_bytes") is not None:
        return ("conv: gpuconv.conv2d_flops / conv2d_bytes (gpuconv/utils.py); pooling and ROI: "
                "bench/roofline.py")
    return "bench/roofline.py (gpuconv/utils.py has no conv2d_flops / conv2d_bytes)"


# ---- pooling ------------------------------------------------------------------------------

def pool_flops(shape: PoolShape) -> int:
    return shape.N * shape.C * shape.window_elements()


def pool_bytes(shape: PoolShape, direction: str, itemsize: int) -> int:
    x, y = _prod(shape.input_shape), _prod(shape.output_shape)
    if direction == "forward":
        return (x + y) * itemsize
    if direction != "data_grad":
        raise ValueError(f"direction must be one of {DATA_DIRECTIONS} for pooling, got {direction!r}")
    total = (y + x) * itemsize                   # read dy, write dx
    if shape.is_max:                             # where the maxima are: indices, or x again
        total += min(y * POOL_INDEX_BYTES, x * itemsize)
    return total


# ---- regions of interest ------------------------------------------------------------------

def roi_align_samples(shape: RoiShape, boxes: np.ndarray) -> int:
    """Bilinear samples per channel over all boxes (torchvision's roi_align grid).

    ``boxes``: (K, 5) rows [batch_index, x1, y1, x2, y2] in input-image coordinates.
    """
    ph, pw = shape.output_size
    b = np.asarray(boxes, dtype=np.float64)
    roi_w = (b[:, 3] - b[:, 1]) * shape.spatial_scale
    roi_h = (b[:, 4] - b[:, 2]) * shape.spatial_scale
    if not shape.aligned:                        # legacy mode forces boxes to at least 1x1
        roi_w, roi_h = np.maximum(roi_w, 1.0), np.maximum(roi_h, 1.0)
    if shape.sampling_ratio > 0:
        grid = np.full(len(b), shape.sampling_ratio ** 2, dtype=np.int64)
    else:                                        # adaptive: ceil(bin size) points per axis
        grid = np.ceil(roi_h / ph).astype(np.int64) * np.ceil(roi_w / pw).astype(np.int64)
    return int(grid.sum()) * ph * pw


def roi_pool_elements(shape: RoiShape, boxes: np.ndarray) -> int:
    """Input elements compared per channel over all boxes (torchvision's roi_pool bins)."""
    ph, pw = shape.output_size
    total = 0
    for _, x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float64):
        start_w, start_h = _round_half_away(x1 * shape.spatial_scale), _round_half_away(y1 * shape.spatial_scale)
        end_w, end_h = _round_half_away(x2 * shape.spatial_scale), _round_half_away(y2 * shape.spatial_scale)
        rows = _roi_pool_bin_lengths(start_h, max(end_h - start_h + 1, 1), ph, shape.H)
        cols = _roi_pool_bin_lengths(start_w, max(end_w - start_w + 1, 1), pw, shape.W)
        total += sum(rows) * sum(cols)
    return total


def _round_half_away(v: float) -> int:
    return int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)


def _roi_pool_bin_lengths(start: int, length: int, bins: int, size: int) -> list[int]:
    bin_size = length / bins
    out = []
    for i in range(bins):
        lo = min(max(math.floor(i * bin_size) + start, 0), size)
        hi = min(max(math.ceil((i + 1) * bin_size) + start, 0), size)
        out.append(max(hi - lo, 0))
    return out


def roi_flops(shape: RoiShape, boxes: np.ndarray) -> int:
    if shape.op == "roi_align":
        return BILINEAR_FLOPS * shape.C * roi_align_samples(shape, boxes)
    return shape.C * roi_pool_elements(shape, boxes)


def roi_bytes(shape: RoiShape, direction: str, itemsize: int) -> int:
    x, y = _prod(shape.input_shape), _prod(shape.output_shape)
    boxes = shape.rois * 5 * itemsize
    if direction == "forward":
        return (x + y) * itemsize + boxes
    if direction != "data_grad":
        raise ValueError(f"direction must be one of {DATA_DIRECTIONS} for ROI ops, got {direction!r}")
    total = (y + x) * itemsize + boxes           # read dy and boxes, write dx
    if shape.op == "roi_pool":                   # where the maxima are: argmax, or x again
        total += min(y * ROI_ARGMAX_BYTES, x * itemsize)
    return total


# ---- any shape ----------------------------------------------------------------------------

def work(shape, direction: str, itemsize: int, boxes: np.ndarray | None = None) -> tuple[int, int]:
    """(FLOPs, bytes) of one case."""
    if isinstance(shape, ConvShape):
        return conv_flops(shape), conv_bytes(shape, direction, itemsize)
    if isinstance(shape, PoolShape):
        return pool_flops(shape), pool_bytes(shape, direction, itemsize)
    if isinstance(shape, RoiShape):
        if boxes is None:
            raise ValueError("ROI FLOPs depend on the boxes: pass boxes")
        return roi_flops(shape, boxes), roi_bytes(shape, direction, itemsize)
    raise TypeError(f"unknown shape type {type(shape).__name__}")


def roofline_floor(flops: float, nbytes: float, peak_flops: float, bandwidth: float) -> float:
    """Seconds the case needs at least: the slower of compute at peak and traffic at bandwidth."""
    if peak_flops <= 0 or bandwidth <= 0:
        raise ValueError("peak_flops and bandwidth must be > 0")
    return max(flops / peak_flops, nbytes / bandwidth)


def roofline_fraction(floor_s: float, time_s: float) -> float:
    if time_s <= 0:
        raise ValueError(f"time_s must be > 0, got {time_s}")
    return floor_s / time_s


def speed_ratio(baseline_s: float, gpuconv_s: float) -> float:
    """baseline time / gpuconv time: > 1 means gpuconv is faster."""
    if baseline_s <= 0 or gpuconv_s <= 0:
        raise ValueError("times must be > 0")
    return baseline_s / gpuconv_s


def geometric_mean(values: Iterable[float]) -> float:
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("geometric mean of no values")
    if any(not v > 0 for v in vals):
        raise ValueError(f"geometric mean needs positive values, got {vals}")
    return math.exp(sum(math.log(v) for v in vals) / len(vals))
