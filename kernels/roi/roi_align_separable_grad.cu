// ROI align backward as two weighted sums, over columns and then over rows: the separable
// forward's transpose (roi_align_separable.cu), for the same calls (few boxes, adaptive
// sampling). No atomics and a fixed order: bitwise reproducible, so both modes take it there.
//
// Why: torchvision's backward, and roi_align.cu's atomic one, add four atomics per sample into a
// zero-filled gradient: with adaptive sampling about four per pixel under a box and channel, all
// of a box's bins landing on the same few planes (the few-huge-boxes case: ~120 M atomics onto
// ~20 M elements, after a zero fill of the whole gradient). Here the gradient of pixel (r, col)
// of image n is
//     sum over boxes k of image n, bin rows ph:  Wy_{k,ph}[r] * U[k, ph, c, col],
//     U[k, ph, c, col] = sum over bins pw:  Wx_{k,pw}[col] * grad_output[k, c, ph, pw] / count_k,
// with Wy, Wx the per-pixel weights of roi_align_spans.cuh. Pass 1
// (roi_align_separable_grad_columns) writes U into an accumulator-typed scratch laid out as the
// forward's row sums ((K, PH, C, W) for NCHW, (K, PH, W, C) for NHWC), for the columns the box's
// samples can name. Pass 2 (roi_align_separable_grad_rows) writes every element of the gradient
// once (no zero fill): a block per image row lists the (box, bin row) pairs whose samples name the
// row, in increasing order (roi_tiles.cuh's list), with their weights, and each element sums
// them in that order.
//
// Semantics: torchvision's, non-finite gradients included (a weight-0 term adds 0 * g: NaN for a
// non-finite g, as the gather backward does). Sums in another order than torchvision's: the
// values agree within rounding. Boxes whose batch index lies outside [0, N) add nothing (the
// front rejects such boxes). Design and cost model: kernels/pool/NOTES.md "ROI align backward:
// columns, then rows".
#include "dtypes.cuh"
#include "pool_window.cuh"
#include "roi_align_sampling.cuh"
#include "roi_align_spans.cuh"
#include "roi_tiles.cuh"

namespace {

constexpr int kSeparableThreads = gc::kRoiTileThreads;  // the launcher's block: 256
// Gradient elements of one image row a thread of pass 2 writes (the row's list is built once
// per block for 256 x this many elements)
constexpr int kElementsPerThread = 16;

}  // namespace

// Pass 1. Block b covers box k, bin row ph ((k, ph) = b / blocks_per_bin_row) and elements
// [part * 256, part * 256 + 256) (part = the rest) of the (C, W) slab in the map's order (NCHW:
// c * W + col; NHWC: col * C + c). A thread whose column the box's samples can name writes U
// there (0 for a box without samples or image); pass 2 reads no other column.
// The minimum of one block per SM: with the block size alone ptxas held double to 64
// registers and spilled 4-16 bytes (CUDA 13 NVRTC, sm_80 and sm_90).
template <class T, bool kNHWC>
__global__ void __launch_bounds__(kSeparableThreads, 1)
    roi_align_separable_grad_columns(const T* __restrict__ grad_output,
                                     const gc::acc_t<T>* __restrict__ rois,
                                     gc::acc_t<T>* __restrict__ col_sums, int blocks_per_bin_row,
                                     int batch, int channels, int height, int width,
                                     int pooled_height, int pooled_width,
                                     gc::acc_t<T> spatial_scale, int sampling_ratio, int aligned) {
  using A = gc::acc_t<T>;
  const gc::SlabElement<A> e = gc::slab_element<kNHWC>(rois, blocks_per_bin_row, channels, width,
                                                       pooled_height, pooled_width,
                                                       spatial_scale, sampling_ratio, aligned);
  if (!e.in_span) return;
  const gc::RoiAlignBox<A>& box = e.box;
  A u = A(0);
  if (gc::is_sampled(box, batch)) {
    const int grid = box.roi_bin_grid_w;
    const A count = gc::sample_count<A>(box.roi_bin_grid_h, grid);
    // the bins whose samples can name this column
    int first, last;
    gc::candidate_samples(box.roi_start_w, box.bin_size_w, grid, pooled_width, e.col, first,
                          last);
    for (int pw = first / grid; first <= last && pw <= last / grid; ++pw) {
      A weight;
      const int term = gc::bin_axis_term(box.roi_start_w, box.bin_size_w, grid, pooled_width,
                                         pw, width, e.col, weight);
      if (term == gc::kUntouched) continue;
      const int g_index =
          kNHWC ? (e.bin_row * pooled_width + pw) * channels + e.c
                : ((e.k * channels + e.c) * pooled_height + e.ph) * pooled_width + pw;
      u = gc::add_term(u, weight, term, gc::to_acc(grad_output[g_index]) / count);
    }
  }
  col_sums[e.bin_row * e.slab + e.element] = u;
}

// Pass 2. Block b covers row r of image n ((n, r) = b / blocks_per_row) and elements
// [part * 4096, part * 4096 + 4096) (part = the rest) of the row's (C, W) slab in the map's
// order, and writes each of them. The (box, bin row) pairs e = k * PH + ph whose samples name
// row r are listed in increasing e, up to kRoiListCapacity per pass; a row named by more takes
// several passes, each adding to what the previous one wrote (as the gather backward does).
// The minimum of one block per SM lets ptxas take the registers it needs: with the bounds' block
// size alone it held double to 48 and spilled (39 for float and the half types, 64 for double).
template <class T, bool kNHWC>
__global__ void __launch_bounds__(kSeparableThreads, 1)
    roi_align_separable_grad_rows(const gc::acc_t<T>* __restrict__ col_sums,
                                  const gc::acc_t<T>* __restrict__ rois,
                                  T* __restrict__ grad_input, int blocks_per_row, int num_rois,
                                  int batch, int channels, int height, int width,
                                  int pooled_height, int pooled_width,
                                  gc::acc_t<T> spatial_scale, int sampling_ratio, int aligned) {
  using A = gc::acc_t<T>;
  __shared__ int list[gc::kRoiListCapacity];
  __shared__ int warp_counts[gc::kRoiTileWarps];
  __shared__ A pair_weight[gc::kRoiListCapacity];
  __shared__ int pair_term[gc::kRoiListCapacity];
  __shared__ int pair_col0[gc::kRoiListCapacity];
  __shared__ int pair_col1[gc::kRoiListCapacity];
  const int image_row = blockIdx.x / blocks_per_row;
  const int part = blockIdx.x - image_row * blocks_per_row;
  const int n = image_row / height, r = image_row - n * height;
  const int slab = channels * width;
  const int first_element = part * kSeparableThreads * kElementsPerThread;
  const int pairs = num_rois * pooled_height;
  int scanned = 0;
  for (int pass = 0; pass == 0 || scanned < pairs; ++pass) {
    // the (box, bin row) pairs of this pass that name row r, in increasing order
    const int list_size = gc::list_touching_rois(scanned, pairs, list, warp_counts, [&](int e) {
      const int k = e / pooled_height, ph = e - k * pooled_height;
      const gc::RoiAlignBox<A> box = gc::roi_align_box(
          rois + k * 5, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned != 0);
      if (!gc::is_sampled(box, batch) || box.roi_batch_ind != n) return false;
      A weight;
      return gc::bin_axis_term(box.roi_start_h, box.bin_size_h, box.roi_bin_grid_h,
                               pooled_height, ph, height, r, weight) != gc::kUntouched;
    });
    // the listed pairs' row weights and column spans (the test above computed the weight too,
    // but a pair's place in the list is known only once the ordered list is complete)
    for (int i = threadIdx.x; i < list_size; i += blockDim.x) {
      const int k = list[i] / pooled_height, ph = list[i] - k * pooled_height;
      const gc::RoiAlignBox<A> box = gc::roi_align_box(
          rois + k * 5, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned != 0);
      A weight;
      pair_term[i] = gc::bin_axis_term(box.roi_start_h, box.bin_size_h, box.roi_bin_grid_h,
                                       pooled_height, ph, height, r, weight);
      pair_weight[i] = weight;
      gc::span_pixels(box.roi_start_w, box.bin_size_w, pooled_width, 0, pooled_width, width,
                      pair_col0[i], pair_col1[i]);
    }
    __syncthreads();  // the list's weights and spans are complete
    // main loop
#pragma unroll 1
    for (int j = 0; j < kElementsPerThread; ++j) {
      const int element = first_element + j * kSeparableThreads + threadIdx.x;
      if (element >= slab) break;
      const int c = kNHWC ? element % channels : element / width;
      const int col = kNHWC ? element / channels : element % width;
      const int offset = gc::offset_of<kNHWC>(n, c, r, col, channels, height, width);
      A grad = pass == 0 ? A(0) : gc::to_acc(grad_input[offset]);
      for (int i = 0; i < list_size; ++i) {
        if (col < pair_col0[i] || col > pair_col1[i]) continue;  // no sample names the column
        grad = gc::add_term(grad, pair_weight[i], pair_term[i], col_sums[list[i] * slab + element]);
      }
      // epilogue
      grad_input[offset] = gc::from_acc<T>(grad);
    }
    __syncthreads();  // the list is rebuilt by the next pass
  }
}
