// The deterministic backward of ROI align: a gather. torchvision scatters every sample's four
// bilinear weights with atomicAdd (roi_align.cu keeps that as the default mode); here each input
// element sums, in increasing roi order and a fixed sample order, the contributions of the
// samples whose interpolation touches it: no atomics, bitwise identical run to run.
//
// A block owns a 4 x 16 pixel tile of one image (all channels) and first lists the rois that can
// touch it (roi_tiles.cuh). The bilinear weight factors into a row weight and a column weight,
// and the samples are a regular grid along each axis, so for pixel (h, w) only the sample rows
// whose coordinate lies in [h - 1, h + 1] and the sample columns in [w - 1, w + 1] contribute:
// a handful of candidates, found by one division and each checked with the forward's own
// arithmetic (roi_align_sampling.cuh). Design and cost model: kernels/pool/NOTES.md.
#include "dtypes.cuh"
#include "pool_window.cuh"
#include "roi_align_sampling.cuh"
#include "roi_tiles.cuh"

namespace {

// Can the samples of a box reach pixels [p0, p1) along one axis? Conservative: the box's extent
// [roi_start, roi_start + pooled * bin_size] widened by two pixels (a sample touches the pixels
// floor(y) and floor(y) + 1, and [-1, 0] clamps to 0). False for NaN coordinates.
template <class A>
__device__ __forceinline__ bool axis_overlaps(A roi_start, A bin_size, int pooled, int p0, int p1) {
  const A roi_end = roi_start + bin_size * static_cast<A>(pooled);
  const A lo = min(roi_start, roi_end);
  const A hi = max(roi_start, roi_end);
  return hi >= static_cast<A>(p0 - 2) && lo <= static_cast<A>(p1 + 1);
}

}  // namespace

template <class T, bool kNHWC>
__global__ void roi_align_backward_gather(const T* __restrict__ grad_output,
                                          const gc::acc_t<T>* __restrict__ rois,
                                          T* __restrict__ grad_input, int num_rois, int batch,
                                          int channels, int height, int width, int pooled_height,
                                          int pooled_width, gc::acc_t<T> spatial_scale,
                                          int sampling_ratio, int aligned) {
  using A = gc::acc_t<T>;
  __shared__ int list[gc::kRoiListCapacity];
  __shared__ int warp_counts[gc::kRoiTileWarps];
  __shared__ A roi_start_h[gc::kRoiListCapacity];
  __shared__ A roi_start_w[gc::kRoiListCapacity];
  __shared__ A bin_size_h[gc::kRoiListCapacity];
  __shared__ A bin_size_w[gc::kRoiListCapacity];
  __shared__ int grid_h[gc::kRoiListCapacity];
  __shared__ int grid_w[gc::kRoiListCapacity];
  const int out_ps = gc::pixel_stride<kNHWC>(channels);
  for (int n = blockIdx.y; n < batch; n += gridDim.y) {
    const gc::PixelTile tile = gc::pixel_tile(n, height, width);
    const int tile_w = tile.w1 - tile.w0;
    const int tile_pixels = (tile.h1 - tile.h0) * tile_w;
    const int items = tile_pixels * channels;
    int scanned = 0;
    for (int pass = 0; pass == 0 || scanned < num_rois; ++pass) {
      // the rois of this pass that can touch the tile, in increasing order
      const int list_size =
          gc::list_touching_rois(scanned, num_rois, list, warp_counts, [&](int k) {
            const gc::RoiAlignBox<A> box =
                gc::roi_align_box(rois + k * 5, spatial_scale, pooled_height, pooled_width,
                                  sampling_ratio, aligned != 0);
            const bool sampled = box.roi_bin_grid_h > 0 && box.roi_bin_grid_w > 0;
            return box.roi_batch_ind == n && sampled &&
                   axis_overlaps(box.roi_start_h, box.bin_size_h, pooled_height, tile.h0,
                                 tile.h1) &&
                   axis_overlaps(box.roi_start_w, box.bin_size_w, pooled_width, tile.w0, tile.w1);
          });
      for (int e = threadIdx.x; e < list_size; e += blockDim.x) {
        const gc::RoiAlignBox<A> box =
            gc::roi_align_box(rois + list[e] * 5, spatial_scale, pooled_height, pooled_width,
                              sampling_ratio, aligned != 0);
        roi_start_h[e] = box.roi_start_h;
        roi_start_w[e] = box.roi_start_w;
        bin_size_h[e] = box.bin_size_h;
        bin_size_w[e] = box.bin_size_w;
        grid_h[e] = box.roi_bin_grid_h;
        grid_w[e] = box.roi_bin_grid_w;
      }
      __syncthreads();
      // main loop
      for (int item = threadIdx.x; item < items; item += blockDim.x) {
        const gc::Coord4 o = gc::tile_element<kNHWC>(tile, item, channels, tile_pixels, tile_w);
        const int c = o.c, h = o.h, w = o.w;
        const int offset = gc::offset_of<kNHWC>(n, c, h, w, channels, height, width);
        A grad = pass == 0 ? A(0) : gc::to_acc(grad_input[offset]);
        for (int e = 0; e < list_size; ++e) {
          const int gh = grid_h[e], gw = grid_w[e];
          int t0, t1, u0, u1;
          gc::candidate_samples(roi_start_h[e], bin_size_h[e], gh, pooled_height, h, t0, t1);
          if (t0 > t1) continue;
          gc::candidate_samples(roi_start_w[e], bin_size_w[e], gw, pooled_width, w, u0, u1);
          if (u0 > u1) continue;
          const T* offset_grad_output =
              grad_output +
              gc::plane_offset<kNHWC>(list[e], c, channels, pooled_height, pooled_width);
          A roi_grad = A(0);
          for (int t = t0; t <= t1; ++t) {
            const int ph = t / gh;
            const A y = gc::sample_coordinate(roi_start_h[e], ph, bin_size_h[e], t - ph * gh, gh);
            const gc::AxisTerms<A> wy = gc::bilinear_axis_terms(y, height, h);
            if (!wy.touched) continue;
            A row_grad = A(0);
            A row_zero_terms = A(0);  // the sum of 0 * grad: 0, or NaN for a non-finite grad
            for (int u = u0; u <= u1; ++u) {
              const int pw = u / gw;
              const A x = gc::sample_coordinate(roi_start_w[e], pw, bin_size_w[e], u - pw * gw, gw);
              const gc::AxisTerms<A> wx = gc::bilinear_axis_terms(x, width, w);
              if (!wx.touched) continue;
              const A g = gc::to_acc(offset_grad_output[(ph * pooled_width + pw) * out_ps]);
              const A zero_term = A(0) * g;
              row_grad += wx.weight * g;
              if (wx.zero_term) row_grad += zero_term;
              row_zero_terms += zero_term;
            }
            roi_grad += wy.weight * row_grad;
            if (wy.zero_term) roi_grad += row_zero_terms;
          }
          grad += roi_grad / gc::sample_count<A>(gh, gw);
        }
        // epilogue
        grad_input[offset] = gc::from_acc<T>(grad);
      }
      __syncthreads();  // the list is rebuilt by the next pass or image
    }
  }
}
