"""torchvision.ops.roi_align / roi_pool transcribed into plain torch, for machines without
torchvision (whose wheel pins its own torch and is gigabytes).

A line-by-line transcription of torchvision's CPU kernels (torchvision/csrc/ops/cpu/
roi_align_kernel.cpp, roi_pool_kernel.cpp), one region, one bin and one sample at a time, in
torch operations so that autograd differentiates it: an oracle independent of gpuconv, slow and
only for small cases. Box geometry is computed in Python floats (float64).
"""
from __future__ import annotations

import math

import torch

FLT_MAX = 3.4028234663852886e38   # torchvision's roi_pool scan starts below every float


def boxes_to_rois(boxes) -> torch.Tensor:
    """torchvision's convert_boxes_to_roi_format: a list of (K_i, 4) -> (K, 5) rows
    [image index, x1, y1, x2, y2]."""
    if isinstance(boxes, torch.Tensor):
        return boxes
    return torch.cat([torch.cat([torch.full((b.shape[0], 1), float(i), dtype=b.dtype), b], 1)
                      for i, b in enumerate(boxes)], 0)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _bilinear(plane: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """torchvision's bilinear_interpolate on one (C, H, W) image at (y, x)."""
    height, width = plane.shape[1], plane.shape[2]
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return plane.new_zeros(plane.shape[0])
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (hy * hx * plane[:, y_low, x_low] + hy * lx * plane[:, y_low, x_high]
            + ly * hx * plane[:, y_high, x_low] + ly * lx * plane[:, y_high, x_high])


def roi_align(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    rois = boxes_to_rois(boxes).tolist()
    pooled_h, pooled_w = _pair(output_size)
    out = []
    for roi in rois:
        plane = input[int(roi[0])]
        offset = 0.5 if aligned else 0.0
        start_w, start_h = roi[1] * spatial_scale - offset, roi[2] * spatial_scale - offset
        end_w, end_h = roi[3] * spatial_scale - offset, roi[4] * spatial_scale - offset
        roi_w, roi_h = end_w - start_w, end_h - start_h
        if not aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / pooled_h, roi_w / pooled_w
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / pooled_h)
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / pooled_w)
        count = max(grid_h * grid_w, 1)
        bins = []
        for ph in range(pooled_h):
            row = []
            for pw in range(pooled_w):
                total = plane.new_zeros(plane.shape[0])
                for iy in range(grid_h):
                    y = start_h + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                    for ix in range(grid_w):
                        x = start_w + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                        total = total + _bilinear(plane, y, x)
                row.append(total / count)
            bins.append(torch.stack(row, -1))
        out.append(torch.stack(bins, -2))
    return torch.stack(out, 0)


def _round_half_away(v: float) -> int:
    # C++ std::round, which torchvision uses (Python's round() goes half to even).
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def roi_pool(input, boxes, output_size, spatial_scale=1.0):
    rois = boxes_to_rois(boxes).tolist()
    pooled_h, pooled_w = _pair(output_size)
    height, width = input.shape[2], input.shape[3]
    out = []
    for roi in rois:
        plane = input[int(roi[0])]
        start_w, start_h = (_round_half_away(roi[1] * spatial_scale),
                            _round_half_away(roi[2] * spatial_scale))
        end_w, end_h = (_round_half_away(roi[3] * spatial_scale),
                        _round_half_away(roi[4] * spatial_scale))
        roi_w, roi_h = max(end_w - start_w + 1, 1), max(end_h - start_h + 1, 1)
        bin_h, bin_w = roi_h / pooled_h, roi_w / pooled_w
        bins = []
        for ph in range(pooled_h):
            row = []
            for pw in range(pooled_w):
                h0 = min(max(math.floor(ph * bin_h) + start_h, 0), height)
                h1 = min(max(math.ceil((ph + 1) * bin_h) + start_h, 0), height)
                w0 = min(max(math.floor(pw * bin_w) + start_w, 0), width)
                w1 = min(max(math.ceil((pw + 1) * bin_w) + start_w, 0), width)
                if h1 <= h0 or w1 <= w0:
                    row.append(plane.new_zeros(plane.shape[0]))
                    continue
                window = plane[:, h0:h1, w0:w1].reshape(plane.shape[0], -1)
                # torchvision's scan: from -FLT_MAX, a strictly greater value replaces the
                # maximum, so a NaN is never taken and a bin of values <= -FLT_MAX gives -FLT_MAX.
                # The first maximum in row-major order takes the gradient, as the scan's.
                scanned = torch.nan_to_num(window.detach(), nan=-math.inf, posinf=math.inf,
                                           neginf=-math.inf)
                first = scanned.argmax(dim=1, keepdim=True)
                taken = window.gather(1, first)[:, 0]
                none = scanned.gather(1, first)[:, 0] <= -FLT_MAX
                row.append(taken.masked_fill(none, -FLT_MAX))
            bins.append(torch.stack(row, -1))
        out.append(torch.stack(bins, -2))
    return torch.stack(out, 0)
