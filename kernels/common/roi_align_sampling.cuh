// ROI align's geometry, shared by its forward kernels, atomic backward and gather backward
// (kernels/roi/roi_align*.cu). The arithmetic and the variable
// names are torchvision's (torchvision/csrc/ops/cuda/roi_align_kernel.cu), computed in the
// accumulator type (float for half types) with the boxes given in that type.
#pragma once

#include "dtypes.cuh"

namespace gc {

// Adaptive sampling takes torchvision's ceil(roi_height / pooled_height) samples per bin: the
// front keeps box coordinates within +-2^24 pixels, so at most 2^25 + 1. The cap only guards the
// int conversion against boxes that did not pass the front (torchvision's conversion is
// unchecked, undefined for NaN or huge values). The sample loops visit only the samples that can
// lie in the map (bin_samples_inside, candidate_samples), so a large grid costs no more than the
// map's extent.
constexpr int kMaxSamplingGrid = 1 << 30;

template <class A>
struct RoiAlignBox {
  int roi_batch_ind;
  A roi_start_h, roi_start_w;
  A bin_size_h, bin_size_w;
  int roi_bin_grid_h, roi_bin_grid_w;  // samples per bin along each axis (0: none)
};

template <class A>
__device__ __forceinline__ int adaptive_grid(A roi_extent, int pooled) {
  const A g = ceil(roi_extent / static_cast<A>(pooled));
  // !(g >= 1) also catches NaN
  return !(g >= A(1)) ? 0 : (g >= A(kMaxSamplingGrid) ? kMaxSamplingGrid : static_cast<int>(g));
}

// One row of rois: [batch_index, x1, y1, x2, y2].
template <class A>
__device__ __forceinline__ RoiAlignBox<A> roi_align_box(const A* __restrict__ offset_rois,
                                                        A spatial_scale, int pooled_height,
                                                        int pooled_width, int sampling_ratio,
                                                        bool aligned) {
  RoiAlignBox<A> box;
  box.roi_batch_ind = static_cast<int>(offset_rois[0]);
  // Do not use rounding; this implementation detail is critical
  const A offset = aligned ? A(0.5) : A(0);
  box.roi_start_w = offset_rois[1] * spatial_scale - offset;
  box.roi_start_h = offset_rois[2] * spatial_scale - offset;
  const A roi_end_w = offset_rois[3] * spatial_scale - offset;
  const A roi_end_h = offset_rois[4] * spatial_scale - offset;
  A roi_width = roi_end_w - box.roi_start_w;
  A roi_height = roi_end_h - box.roi_start_h;
  if (!aligned) {
    // Force malformed ROIs to be 1x1
    roi_width = max(roi_width, A(1));
    roi_height = max(roi_height, A(1));
  }
  box.bin_size_h = roi_height / static_cast<A>(pooled_height);
  box.bin_size_w = roi_width / static_cast<A>(pooled_width);
  // We use roi_bin_grid to sample the grid and mimic integral
  box.roi_bin_grid_h =
      sampling_ratio > 0 ? sampling_ratio : adaptive_grid(roi_height, pooled_height);
  box.roi_bin_grid_w = sampling_ratio > 0 ? sampling_ratio : adaptive_grid(roi_width, pooled_width);
  return box;
}

// The divisor of a bin's sum, torchvision's max(grid_h * grid_w, 1), multiplied in A: two
// adaptive grids of the front's largest boxes would overflow an int product.
template <class A>
__device__ __forceinline__ A sample_count(int grid_h, int grid_w) {
  return grid_h > 0 && grid_w > 0 ? static_cast<A>(grid_h) * static_cast<A>(grid_w) : A(1);
}

template <class A>
__device__ __forceinline__ A unit_roundoff();
template <>
__device__ __forceinline__ float unit_roundoff<float>() {
  return 5.9604645e-8f;  // 2^-24
}
template <>
__device__ __forceinline__ double unit_roundoff<double>() {
  return 1.1102230246251565e-16;  // 2^-53
}

// How many samples, step apart, the rounding of sample_coordinate and of its inversion (below)
// can move a coordinate of about `magnitude` pixels (|roi_start|, the bins before it, the bound
// it is compared with): a few units in the last place of that magnitude, in samples, plus one.
// About one sample for ordinary boxes; more where the step is below the coordinates' rounding
// (samples that round onto the same coordinate, e.g. onto the map's last row).
template <class A>
__device__ __forceinline__ A rounding_slack(A magnitude, A step) {
  return A(16) * unit_roundoff<A>() * (magnitude + A(2)) / fabs(step) + A(1);
}

// The coordinate of sample iy of bin ph (the forward, the atomic backward and the gather all use
// this one expression, so they agree on every sample to the last bit).
template <class A>
__device__ __forceinline__ A sample_coordinate(A roi_start, int bin, A bin_size, int iy, int grid) {
  return roi_start + static_cast<A>(bin) * bin_size +
         static_cast<A>(iy + .5f) * bin_size / static_cast<A>(grid);
}

// Bilinear interpolation weights of the point (y, x), torchvision's bilinear_interpolate_gradient:
// points outside [-1, height] x [-1, width] get no weight; points in [-1, 0] clamp to 0; the last
// row and column clamp onto themselves.
template <class A>
struct BilinearWeights {
  bool inside;
  int y_low, y_high, x_low, x_high;
  A w1, w2, w3, w4;  // (y_low, x_low), (y_low, x_high), (y_high, x_low), (y_high, x_high)
};

// One axis of the interpolation: the two neighbours and the weight of the far one.
template <class A>
__device__ __forceinline__ void bilinear_axis(A y, int height, int& y_low, int& y_high, A& ly) {
  if (y <= 0) y = 0;
  y_low = static_cast<int>(y);
  if (y_low >= height - 1) {
    y_high = y_low = height - 1;
    y = static_cast<A>(y_low);
  } else {
    y_high = y_low + 1;
  }
  ly = y - static_cast<A>(y_low);
}

// deal with cases that inverse elements are out of feature map boundary; written as !(in range)
// so that NaN coordinates take this branch
template <class A>
__device__ __forceinline__ bool bilinear_inside(A y, A x, int height, int width) {
  return y >= A(-1) && y <= static_cast<A>(height) && x >= A(-1) && x <= static_cast<A>(width);
}

template <class A>
__device__ __forceinline__ BilinearWeights<A> bilinear_weights(int height, int width, A y, A x) {
  BilinearWeights<A> b;
  b.inside = bilinear_inside(y, x, height, width);
  if (!b.inside) {
    b.y_low = b.y_high = b.x_low = b.x_high = 0;
    b.w1 = b.w2 = b.w3 = b.w4 = A(0);
    return b;
  }
  A ly, lx;
  bilinear_axis(y, height, b.y_low, b.y_high, ly);
  bilinear_axis(x, width, b.x_low, b.x_high, lx);
  const A hy = A(1) - ly, hx = A(1) - lx;
  b.w1 = hy * hx;
  b.w2 = hy * lx;
  b.w3 = ly * hx;
  b.w4 = ly * lx;
  return b;
}

// What row (or column) `pixel` receives from the interpolation at coordinate y along one axis:
// the bilinear weights factor as w(y, h) * w(x, w), which lets the gather backward treat rows
// and columns separately. `touched`: pixel is y_low or y_high of an in-range y (the range test
// of this axis alone: the joint test of bilinear_inside is the conjunction); `weight`: the sum
// of its terms; `zero_term`: one of them has weight 0 (y on a pixel centre, or clamped to the
// last row), a term torchvision still adds, as grad * 0, so a non-finite gradient gives NaN
// there (the gather adds those 0 * grad terms for the same NaNs).
template <class A>
struct AxisTerms {
  A weight;
  bool touched;
  bool zero_term;
};

template <class A>
__device__ __forceinline__ AxisTerms<A> bilinear_axis_terms(A y, int height, int pixel) {
  AxisTerms<A> terms{A(0), false, false};
  if (!(y >= A(-1) && y <= static_cast<A>(height))) return terms;
  int y_low, y_high;
  A ly;
  bilinear_axis(y, height, y_low, y_high, ly);
  const A hy = A(1) - ly;
  const bool low = pixel == y_low, high = pixel == y_high;
  terms.touched = low || high;
  terms.weight = (low ? hy : A(0)) + (high ? ly : A(0));
  terms.zero_term = (low && hy == A(0)) || (high && ly == A(0));
  return terms;
}

// The samples [first, last] (empty when first > last) of the real-valued positions
// (t + 0.5) * step past `origin` (t from 0, `samples` of them) that can lie in [lo, hi]: the
// interval inverted, widened by the rounding slack of coordinates of about `magnitude` pixels,
// clamped. A superset: the callers test each sample's own coordinate exactly.
template <class A>
__device__ __forceinline__ void samples_between(A origin, A step, int samples, A lo, A hi,
                                                A magnitude, int& first, int& last) {
  first = 0;
  last = samples - 1;
  if (step == A(0)) return;  // a zero-size box: every sample sits at origin, check them all
  A a = (lo - origin) / step - A(0.5);
  A b = (hi - origin) / step - A(0.5);
  if (step < A(0)) {
    const A swap = a;
    a = b;
    b = swap;
  }
  if (!(a <= b)) {  // NaN coordinates: no sample has weight
    last = -1;
    return;
  }
  const A slack = rounding_slack(magnitude + fabs(lo) + fabs(hi), step);
  // clamp before converting, so that a huge quotient cannot overflow the int
  const A lowest = A(-1), highest = static_cast<A>(samples);
  a = min(max(a - slack, lowest), highest);
  b = min(max(b + slack, lowest), highest);
  first = max(static_cast<int>(ceil(a)), 0);
  last = min(static_cast<int>(floor(b)), samples - 1);
}

// The samples t = bin * grid + i (0 <= t < pooled * grid) along one axis whose coordinate
// roi_start + (t + 0.5) * step can lie in [pixel - 1, pixel + 1] ([-1, 2] for pixel 1: a
// coordinate in [-1, 0] clamps to 0, whose upper neighbour, with weight 0, is pixel 1), widened
// against rounding (samples_between): [first, last], empty when first > last.
template <class A>
__device__ __forceinline__ void candidate_samples(A roi_start, A bin_size, int grid, int pooled,
                                                  int pixel, int& first, int& last) {
  const A step = bin_size / static_cast<A>(grid);
  samples_between(roi_start, step, pooled * grid, static_cast<A>(pixel == 1 ? -1 : pixel - 1),
                  static_cast<A>(pixel + 1),
                  fabs(roi_start) + fabs(bin_size) * static_cast<A>(pooled), first, last);
}

// Grids up to this many samples per axis are visited whole by bin_samples_inside: its two
// divisions would cost more than the few samples they could skip (an ordinary box's grid is
// 1-8; each visited sample is tested exactly anyway).
constexpr int kWholeGridMax = 16;

// The samples [first, last] of bin `bin` (0 <= i < grid) along one axis whose coordinate can lie
// in [-1, extent], the only ones that add anything (torchvision skips the others): what the
// forward and the atomic backward visit, each still tested exactly.
template <class A>
__device__ __forceinline__ void bin_samples_inside(A roi_start, A bin_size, int grid, int bin,
                                                   int extent, int& first, int& last) {
  if (grid <= kWholeGridMax) {
    first = 0;
    last = grid - 1;
    return;
  }
  const A origin = roi_start + static_cast<A>(bin) * bin_size;
  samples_between(origin, bin_size / static_cast<A>(grid), grid, A(-1),
                  static_cast<A>(extent), fabs(roi_start) + fabs(origin) + fabs(bin_size),
                  first, last);
}

}  // namespace gc
