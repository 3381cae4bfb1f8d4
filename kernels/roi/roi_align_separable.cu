// ROI align forward as two weighted sums, over rows and then over columns: the kernel for few
// boxes sampled densely (adaptive sampling), whose bins hold hundreds of samples each.
//
// Why: torchvision's kernel, and roi_align.cu's lanes, read the four corners of every sample.
// With adaptive sampling a bin of b x b pixels takes ceil(b)^2 samples, so about four loads per
// pixel under the box (and channel), each behind its sample's coordinate arithmetic. But the
// bilinear weight of sample (iy, ix) at pixel (r, c) factors into wy(iy, r) * wx(ix, c), and the
// range test factors too (bilinear_inside is the conjunction of the two axes' tests), so a bin's
// sum over its samples is
//     sum_r Wy[r] * sum_c Wx[c] * x[r, c],   Wy[r] = sum_iy wy(iy, r),  Wx[c] = sum_ix wx(ix, c):
// one load per pixel and bin row, with weights a block shares. Pass 1
// (roi_align_separable_rows) writes, for each box k, bin row ph, channel and column,
//     S[k, ph, c, col] = sum_r Wy_ph[r] * x[n, c, r, col]
// into an accumulator-typed scratch ((K, PH, C, W) for an NCHW map, (K, PH, W, C) for NHWC),
// consecutive threads on consecutive columns (NCHW) or channels (NHWC) of one row: each warp load
// is one run of 32 elements. Pass 2 (roi_align_separable_columns) sums each bin's columns of S
// and divides by the sample count. The weights of a block's rows (columns) are computed once per
// block, a thread per pixel, into shared memory: a pixel's weight sums the terms of the handful
// of samples within a pixel of it (roi_align_spans.cuh).
//
// Semantics: torchvision's. A sample outside [-1, extent] along either axis adds nothing; every
// other sample adds all four bilinear terms, weight 0 included, so a non-finite pixel under a
// weight-0 term gives NaN: a pixel some sample names with a weight-0 term adds 0 * x as well
// (gc::AxisTerms::zero_term). The sums run in another order than torchvision's (weights summed
// first, rows before columns): the values agree within rounding, not to the bit. A box whose
// batch index lies outside [0, N) gives zeros (the front rejects such boxes).
// Design and cost model: kernels/pool/NOTES.md "ROI align forward: rows, then columns".
#include "dtypes.cuh"
#include "pool_window.cuh"
#include "roi_align_sampling.cuh"
#include "roi_align_spans.cuh"

namespace {

constexpr int kSeparableThreads = 256;  // the launcher's block; one table entry per thread
// Loads a thread issues before summing them (every one in [0, extent): always in bounds)
constexpr int kLoadsInFlight = 8;

// sum + the weighted values first[i * stride] of the pixels i < count of a table chunk.
template <class V, class A>
__device__ __forceinline__ A add_weighted(A sum, const V* __restrict__ first, int stride,
                                          const A* weight, const int* term, int count) {
  int i = 0;
  for (; i + kLoadsInFlight <= count; i += kLoadsInFlight) {
    A v[kLoadsInFlight];
#pragma unroll
    for (int j = 0; j < kLoadsInFlight; ++j) v[j] = gc::to_acc(first[(i + j) * stride]);
#pragma unroll
    for (int j = 0; j < kLoadsInFlight; ++j) {
      sum = gc::add_term(sum, weight[i + j], term[i + j], v[j]);
    }
  }
  for (; i < count; ++i) {
    sum = gc::add_term(sum, weight[i], term[i], gc::to_acc(first[i * stride]));
  }
  return sum;
}

// sum + the weighted values[p * stride] of the pixels p in [first, last] along one axis
// (`values` at pixel first): the block computes the weights 256 pixels at a time, a thread per
// pixel (weight_of(pixel, weight) -> AxisTerm), into the shared chunk `weight` / `term`, then
// the threads that `read` add theirs. Every thread of the block calls it (the barriers), with
// the same span.
template <class V, class A, class WeightOf>
__device__ __forceinline__ A add_span(A sum, const V* __restrict__ values, int stride, int first,
                                      int last, bool read, A* weight, int* term,
                                      WeightOf&& weight_of) {
  for (int base = first; base <= last; base += kSeparableThreads) {
    const int pixels = min(kSeparableThreads, last - base + 1);
    if (threadIdx.x < pixels) {
      A w;
      term[threadIdx.x] = weight_of(base + static_cast<int>(threadIdx.x), w);
      weight[threadIdx.x] = w;
    }
    __syncthreads();  // the chunk's weights are complete
    if (read) {
      sum = add_weighted(sum, values + (base - first) * stride, stride, weight, term, pixels);
    }
    __syncthreads();  // every thread is done with the chunk before the next one is written
  }
  return sum;
}

}  // namespace

// Pass 1. Block b covers box k, bin row ph ((k, ph) = b / blocks_per_bin_row) and elements
// [part * 256, part * 256 + 256) (part = the rest) of the (C, W) slab of row sums in the map's
// order (NCHW: c * W + col; NHWC: col * C + c). Each thread whose column the box's samples can
// name writes its sum (0 for a box without samples or image); the others write nothing, and
// pass 2 reads only written columns (span_pixels is monotone).
template <class T, bool kNHWC>
__global__ void __launch_bounds__(kSeparableThreads)
    roi_align_separable_rows(const T* __restrict__ input, const gc::acc_t<T>* __restrict__ rois,
                             gc::acc_t<T>* __restrict__ row_sums, int blocks_per_bin_row,
                             int batch, int channels, int height, int width, int pooled_height,
                             int pooled_width, gc::acc_t<T> spatial_scale, int sampling_ratio,
                             int aligned) {
  using A = gc::acc_t<T>;
  __shared__ A row_weight[kSeparableThreads];
  __shared__ int row_term[kSeparableThreads];
  const gc::SlabElement<A> e = gc::slab_element<kNHWC>(rois, blocks_per_bin_row, channels, width,
                                                       pooled_height, pooled_width,
                                                       spatial_scale, sampling_ratio, aligned);
  const gc::RoiAlignBox<A>& box = e.box;
  const bool mine = e.in_span;
  int row0 = 0, row1 = -1;  // no rows for a box without samples or image
  if (gc::is_sampled(box, batch)) {
    gc::span_pixels(box.roi_start_h, box.bin_size_h, pooled_height, e.ph, e.ph + 1, height, row0,
                    row1);
  }
  const int ps = gc::pixel_stride<kNHWC>(channels);
  const int row_stride = width * ps;
  const T* column =
      row1 < row0 || !mine
          ? input
          : input + gc::plane_offset<kNHWC>(box.roi_batch_ind, e.c, channels, height, width) +
                e.col * ps;
  // main loop
  const A sum = add_span(A(0), column + row0 * row_stride, row_stride, row0, row1, mine,
                         row_weight, row_term, [&](int row, A& weight) {
                           return gc::bin_axis_term(box.roi_start_h, box.bin_size_h,
                                                    box.roi_bin_grid_h, pooled_height, e.ph,
                                                    height, row, weight);
                         });
  // epilogue
  if (mine) row_sums[e.bin_row * e.slab + e.element] = sum;
}

// Pass 2. Block b covers bin (k, ph, pw) = b / channel_blocks and channels [part * 256, ...)
// (part = the rest): the bin's columns of the row sums, weighted, over the sample count. Output
// (K, C, PH, PW) in NCHW, (K, PH, PW, C) in NHWC.
// The minimum of one block per SM: with the block size alone ptxas held double to 64
// registers and spilled 4-16 bytes (CUDA 13 NVRTC, sm_80 and sm_90).
template <class T, bool kNHWC>
__global__ void __launch_bounds__(kSeparableThreads, 1)
    roi_align_separable_columns(const gc::acc_t<T>* __restrict__ row_sums,
                                const gc::acc_t<T>* __restrict__ rois, T* __restrict__ output,
                                int channel_blocks, int batch, int channels, int height,
                                int width, int pooled_height, int pooled_width,
                                gc::acc_t<T> spatial_scale, int sampling_ratio, int aligned) {
  using A = gc::acc_t<T>;
  __shared__ A col_weight[kSeparableThreads];
  __shared__ int col_term[kSeparableThreads];
  const int bin = blockIdx.x / channel_blocks;
  const int c = (blockIdx.x - bin * channel_blocks) * blockDim.x + threadIdx.x;
  const int bin_row = bin / pooled_width, pw = bin - bin_row * pooled_width;
  const int k = bin_row / pooled_height, ph = bin_row - k * pooled_height;
  const gc::RoiAlignBox<A> box = gc::roi_align_box(rois + k * 5, spatial_scale, pooled_height,
                                                   pooled_width, sampling_ratio, aligned != 0);
  int col0 = 0, col1 = -1;
  if (gc::is_sampled(box, batch)) {
    gc::span_pixels(box.roi_start_w, box.bin_size_w, pooled_width, pw, pw + 1, width, col0,
                    col1);
  }
  const int col_stride = kNHWC ? channels : 1;
  const A* sums = row_sums + bin_row * channels * width + (kNHWC ? c : c * width);
  // main loop
  const A sum = add_span(A(0), sums + col0 * col_stride, col_stride, col0, col1, c < channels,
                         col_weight, col_term, [&](int col, A& weight) {
                           return gc::bin_axis_term(box.roi_start_w, box.bin_size_w,
                                                    box.roi_bin_grid_w, pooled_width, pw, width,
                                                    col, weight);
                         });
  // epilogue
  if (c < channels) {
    // We do average (integral) pooling inside a bin; when the grid is empty, output zeros.
    const A count = gc::sample_count<A>(box.roi_bin_grid_h, box.roi_bin_grid_w);
    const int index = kNHWC ? bin * channels + c : ((k * channels + c) * pooled_height + ph) *
                                                           pooled_width + pw;
    output[index] = gc::from_acc<T>(sum / count);
  }
}
