// ROI align's weights per pixel along one axis, for the separable kernels
// (kernels/roi/roi_align_separable.cu, roi_align_separable_grad.cu): the bilinear weight of
// sample (iy, ix) at pixel (r, c) factors into wy(iy, r) * wx(ix, c), and the range test too
// (bilinear_inside is the conjunction of the two axes' tests), so a bin's samples act on a pixel
// through Wy[r] = sum_iy wy(iy, r) along rows and Wx[c] along columns.
#pragma once

#include "dtypes.cuh"
#include "roi_align_sampling.cuh"

namespace gc {

// What a pixel receives from one bin's samples along one axis: nothing (untouched), weight, or
// weight plus 0 * value (a weight-0 term among them, which torchvision adds: NaN for a
// non-finite value).
enum AxisTerm : int { kUntouched = 0, kTouched = 1, kTouchedWithZeroTerm = 2 };

// The pixels [first, last] along one axis that the samples of bins [bin0, bin1) can name: their
// extent widened by two pixels (a sample names floor(y) and floor(y) + 1, or 0 and 1 from
// [-1, 0], and rounding moves a coordinate by less than a pixel while |roi_start| and
// |pooled * bin_size| stay below 2^20), clamped to [0, extent - 1]; the whole axis for larger or
// non-finite coordinates. Monotone in the bins: a bin's span lies within its box's.
template <class A>
__device__ __forceinline__ void span_pixels(A roi_start, A bin_size, int pooled, int bin0,
                                            int bin1, int extent, int& first, int& last) {
  first = 0;
  last = extent - 1;
  const A limit = A(1 << 20);
  const A box_extent = bin_size * static_cast<A>(pooled);
  // written as !(in range) so that NaN takes the whole axis
  if (!(roi_start > -limit && roi_start < limit && box_extent > -limit && box_extent < limit)) {
    return;
  }
  const A a = roi_start + static_cast<A>(bin0) * bin_size;
  const A b = roi_start + static_cast<A>(bin1) * bin_size;
  first = max(static_cast<int>(floor(min(a, b))) - 2, 0);
  last = min(static_cast<int>(floor(max(a, b))) + 2, extent - 1);
}

// Pixel `pixel`'s weight from the samples of bin `bin` along one axis (summed in sample order),
// and whether any sample names it (AxisTerm): the few samples within a pixel of it
// (candidate_samples), each with the forward's own coordinate expression.
template <class A>
__device__ __forceinline__ int bin_axis_term(A roi_start, A bin_size, int grid, int pooled,
                                             int bin, int extent, int pixel, A& weight) {
  int first, last;
  candidate_samples(roi_start, bin_size, grid, pooled, pixel, first, last);
  first = max(first, bin * grid);
  last = min(last, bin * grid + grid - 1);
  weight = A(0);
  int term = kUntouched;
  for (int t = first; t <= last; ++t) {
    const A y = sample_coordinate(roi_start, bin, bin_size, t - bin * grid, grid);
    const AxisTerms<A> a = bilinear_axis_terms(y, extent, pixel);
    if (!a.touched) continue;
    weight += a.weight;
    term = max(term, a.zero_term ? int(kTouchedWithZeroTerm) : int(kTouched));
  }
  return term;
}

// sum + what a pixel of weight `weight` and AxisTerm `term` adds from value v.
template <class A>
__device__ __forceinline__ A add_term(A sum, A weight, int term, A v) {
  if (term == kUntouched) return sum;
  sum += weight * v;
  if (term == kTouchedWithZeroTerm) sum += A(0) * v;  // 0, or NaN for a non-finite v
  return sum;
}

// Whether a box has samples along both axes and an image in [0, batch).
template <class A>
__device__ __forceinline__ bool is_sampled(const RoiAlignBox<A>& box, int batch) {
  return box.roi_bin_grid_h > 0 && box.roi_bin_grid_w > 0 && box.roi_batch_ind >= 0 &&
         box.roi_batch_ind < batch;
}

// Thread threadIdx.x of block b in a pass over the (C, W) slabs of (box, bin row) pairs: block b
// covers pair bin_row = k * PH + ph = b / blocks_per_bin_row and elements [part * blockDim.x,
// ...) of its slab (part = the rest) in the map's order (NCHW: c * W + col; NHWC: col * C + c).
// `in_span`: the element exists and the box's samples can name its column (span_pixels over all
// of the box's bins), the entries the separable passes write in their scratch.
template <class A>
struct SlabElement {
  RoiAlignBox<A> box;
  int bin_row, k, ph;
  int slab, element, c, col;
  bool in_span;
};

template <bool kNHWC, class A>
__device__ __forceinline__ SlabElement<A> slab_element(const A* __restrict__ rois,
                                                       int blocks_per_bin_row, int channels,
                                                       int width, int pooled_height,
                                                       int pooled_width, A spatial_scale,
                                                       int sampling_ratio, int aligned) {
  SlabElement<A> s;
  s.bin_row = blockIdx.x / blocks_per_bin_row;
  const int part = blockIdx.x - s.bin_row * blocks_per_bin_row;
  s.k = s.bin_row / pooled_height;
  s.ph = s.bin_row - s.k * pooled_height;
  s.box = roi_align_box(rois + s.k * 5, spatial_scale, pooled_height, pooled_width,
                        sampling_ratio, aligned != 0);
  s.slab = channels * width;
  s.element = part * blockDim.x + threadIdx.x;
  s.c = kNHWC ? s.element % channels : s.element / width;
  s.col = kNHWC ? s.element / channels : s.element % width;
  int col0, col1;
  span_pixels(s.box.roi_start_w, s.box.bin_size_w, pooled_width, 0, pooled_width, width, col0,
              col1);
  s.in_span = s.element < s.slab && s.col >= col0 && s.col <= col1;
  return s;
}

}  // namespace gc
