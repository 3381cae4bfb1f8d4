// ROI max pooling (Fast R-CNN; torchvision.ops.roi_pool semantics): forward, the atomic backward
// (default mode) and the deterministic gather backward, NCHW and NHWC. Structure and variable
// names follow torchvision/csrc/ops/cuda/roi_pool_kernel.cu. Design: kernels/pool/NOTES.md.
#include "dtypes.cuh"
#include "pool_window.cuh"
#include "roi_tiles.cuh"

namespace {

// torchvision's starting value of the running maximum, FLT_MAX (NVRTC has no <cfloat>).
constexpr float kFloatMax = 3.402823466e+38f;

// A box quantized to the feature map: torchvision rounds its corners (half away from zero) and
// forces malformed boxes to 1x1.
template <class A>
struct RoiPoolBox {
  int roi_batch_ind, roi_start_h, roi_start_w, roi_height, roi_width;
  A bin_size_h, bin_size_w;
};

template <class A>
__device__ __forceinline__ RoiPoolBox<A> roi_pool_box(const A* __restrict__ offset_rois,
                                                      A spatial_scale, int pooled_height,
                                                      int pooled_width) {
  RoiPoolBox<A> box;
  box.roi_batch_ind = static_cast<int>(offset_rois[0]);
  box.roi_start_w = static_cast<int>(round(offset_rois[1] * spatial_scale));
  box.roi_start_h = static_cast<int>(round(offset_rois[2] * spatial_scale));
  const int roi_end_w = static_cast<int>(round(offset_rois[3] * spatial_scale));
  const int roi_end_h = static_cast<int>(round(offset_rois[4] * spatial_scale));
  // Force malformed ROIs to be 1x1
  box.roi_width = max(roi_end_w - box.roi_start_w + 1, 1);
  box.roi_height = max(roi_end_h - box.roi_start_h + 1, 1);
  box.bin_size_h = static_cast<A>(box.roi_height) / static_cast<A>(pooled_height);
  box.bin_size_w = static_cast<A>(box.roi_width) / static_cast<A>(pooled_width);
  return box;
}

// Input rows [start, end) of bin ph along one axis, clipped to [0, size).
template <class A>
__device__ __forceinline__ void roi_pool_bin(int bin, A bin_size, int roi_start, int size,
                                             int& start, int& end) {
  start = static_cast<int>(floor(static_cast<A>(bin) * bin_size));
  end = static_cast<int>(ceil(static_cast<A>(bin + 1) * bin_size));
  // Add roi offsets and clip to input boundaries
  start = min(max(start + roi_start, 0), size);
  end = min(max(end + roi_start, 0), size);
}

// The bins along one axis that can contain input position `pixel`: bin b holds relative
// position r iff floor(b * s) <= r < ceil((b + 1) * s), i.e. r / s - 1 < b < (r + 1) / s;
// widened by one on each side against rounding (callers check each bin exactly).
template <class A>
__device__ __forceinline__ void candidate_bins(int pixel, int roi_start, A bin_size, int pooled,
                                               int& first, int& last) {
  const A r = static_cast<A>(pixel - roi_start);
  const A lo = min(max(r / bin_size - A(2), A(-1)), static_cast<A>(pooled));
  const A hi = min(max((r + A(1)) / bin_size + A(1), A(-1)), static_cast<A>(pooled));
  first = max(static_cast<int>(floor(lo)), 0);
  last = min(static_cast<int>(ceil(hi)), pooled - 1);
}

}  // namespace

// Forward: one thread per output bin (coalesced over channels in NHWC). An empty bin gives 0 and
// argmax -1; the running maximum starts at -FLT_MAX and takes only strictly larger values, as in
// torchvision (so NaN never wins). `argmax` (flat h * W + w, or -1) is written when kArgmax.
template <class T, bool kNHWC, bool kArgmax>
__global__ void roi_pool_forward(const T* __restrict__ input, const gc::acc_t<T>* __restrict__ rois,
                                 T* __restrict__ output, long long* __restrict__ argmax_data,
                                 int num_rois, int batch, int channels, int height, int width,
                                 int pooled_height, int pooled_width, gc::acc_t<T> spatial_scale) {
  using A = gc::acc_t<T>;
  const int nthreads = num_rois * channels * pooled_height * pooled_width;
  const int ps = gc::pixel_stride<kNHWC>(channels);
  for (long long index = gc::grid_first(); index < nthreads; index += gc::grid_stride()) {
    // (n, c, ph, pw) is an element in the pooled output
    const gc::Coord4 o = gc::unflatten<kNHWC>((int)index, channels, pooled_height, pooled_width);
    const RoiPoolBox<A> box =
        roi_pool_box(rois + o.n * 5, spatial_scale, pooled_height, pooled_width);
    int hstart, hend, wstart, wend;
    roi_pool_bin(o.h, box.bin_size_h, box.roi_start_h, height, hstart, hend);
    roi_pool_bin(o.w, box.bin_size_w, box.roi_start_w, width, wstart, wend);
    const bool outside_batch = box.roi_batch_ind < 0 || box.roi_batch_ind >= batch;
    const bool is_empty = hend <= hstart || wend <= wstart || outside_batch;
    // Define an empty pooling region to be zero
    A maxval = is_empty ? A(0) : A(-kFloatMax);
    // If nothing is pooled, argmax = -1 causes nothing to be backprop'd
    long long maxidx = -1;
    if (!is_empty) {
      const T* offset_input =
          input + gc::plane_offset<kNHWC>(box.roi_batch_ind, o.c, channels, height, width);
      // main loop
      for (int h = hstart; h < hend; ++h) {
        for (int w = wstart; w < wend; ++w) {
          const int input_index = h * width + w;
          const A v = gc::to_acc(offset_input[input_index * ps]);
          if (v > maxval) {
            maxval = v;
            maxidx = input_index;
          }
        }
      }
    }
    // epilogue
    output[index] = gc::from_acc<T>(maxval);
    if (kArgmax) argmax_data[index] = maxidx;
  }
}

// Atomic backward (default mode, torchvision's): each output bin adds its gradient at its argmax
// into the accumulator-typed `grad_input` (float for halves; zero-filled by the launcher).
template <class T, bool kNHWC>
__global__ void roi_pool_backward_atomic(const T* __restrict__ grad_output,
                                         const long long* __restrict__ argmax_data,
                                         const gc::acc_t<T>* __restrict__ rois,
                                         gc::acc_t<T>* __restrict__ grad_input, int num_rois,
                                         int batch, int channels, int height, int width,
                                         int pooled_height, int pooled_width) {
  const int nthreads = num_rois * channels * pooled_height * pooled_width;
  for (long long index = gc::grid_first(); index < nthreads; index += gc::grid_stride()) {
    const long long argmax = argmax_data[index];
    if (argmax < 0) continue;
    const gc::Coord4 o = gc::unflatten<kNHWC>((int)index, channels, pooled_height, pooled_width);
    const int roi_batch_ind = static_cast<int>(rois[o.n * 5]);
    const int offset = gc::offset_of<kNHWC>(roi_batch_ind, o.c, 0, 0, channels, height, width);
    atomicAdd(grad_input + offset + (int)argmax * gc::pixel_stride<kNHWC>(channels),
              gc::to_acc(grad_output[index]));
  }
}

// Deterministic backward, a gather over the tile's rois in increasing order (roi_tiles.cuh):
// each input element adds the gradients of the bins that contain it and chose it as argmax.
template <class T, bool kNHWC>
__global__ void roi_pool_backward_gather(const T* __restrict__ grad_output,
                                         const long long* __restrict__ argmax_data,
                                         const gc::acc_t<T>* __restrict__ rois,
                                         T* __restrict__ grad_input, int num_rois, int batch,
                                         int channels, int height, int width, int pooled_height,
                                         int pooled_width, gc::acc_t<T> spatial_scale) {
  using A = gc::acc_t<T>;
  __shared__ int list[gc::kRoiListCapacity];
  __shared__ int warp_counts[gc::kRoiTileWarps];
  __shared__ int roi_start_h[gc::kRoiListCapacity];
  __shared__ int roi_start_w[gc::kRoiListCapacity];
  __shared__ A bin_size_h[gc::kRoiListCapacity];
  __shared__ A bin_size_w[gc::kRoiListCapacity];
  const int out_ps = gc::pixel_stride<kNHWC>(channels);
  for (int n = blockIdx.y; n < batch; n += gridDim.y) {
    const gc::PixelTile tile = gc::pixel_tile(n, height, width);
    const int tile_w = tile.w1 - tile.w0;
    const int tile_pixels = (tile.h1 - tile.h0) * tile_w;
    const int items = tile_pixels * channels;
    int scanned = 0;
    for (int pass = 0; pass == 0 || scanned < num_rois; ++pass) {
      // the rois of this pass whose bins reach the tile, in increasing order; the last bin
      // may end one row or column past the box (roi_pool_bin's ceil of a product rounded up:
      // ceil(3 * float(7/3)) = 8), and the forward's argmax may sit there
      const int list_size =
          gc::list_touching_rois(scanned, num_rois, list, warp_counts, [&](int k) {
            const RoiPoolBox<A> box =
                roi_pool_box(rois + k * 5, spatial_scale, pooled_height, pooled_width);
            return box.roi_batch_ind == n && box.roi_start_h < tile.h1 &&
                   box.roi_start_h + box.roi_height + 1 > tile.h0 &&
                   box.roi_start_w < tile.w1 && box.roi_start_w + box.roi_width + 1 > tile.w0;
          });
      for (int e = threadIdx.x; e < list_size; e += blockDim.x) {
        const RoiPoolBox<A> box =
            roi_pool_box(rois + list[e] * 5, spatial_scale, pooled_height, pooled_width);
        roi_start_h[e] = box.roi_start_h;
        roi_start_w[e] = box.roi_start_w;
        bin_size_h[e] = box.bin_size_h;
        bin_size_w[e] = box.bin_size_w;
      }
      __syncthreads();
      // main loop
      for (int item = threadIdx.x; item < items; item += blockDim.x) {
        const gc::Coord4 o = gc::tile_element<kNHWC>(tile, item, channels, tile_pixels, tile_w);
        const int c = o.c, h = o.h, w = o.w;
        const int offset = gc::offset_of<kNHWC>(n, c, h, w, channels, height, width);
        const long long self = (long long)h * width + w;
        A grad = pass == 0 ? A(0) : gc::to_acc(grad_input[offset]);
        for (int e = 0; e < list_size; ++e) {
          int ph0, ph1, pw0, pw1;
          candidate_bins(h, roi_start_h[e], bin_size_h[e], pooled_height, ph0, ph1);
          candidate_bins(w, roi_start_w[e], bin_size_w[e], pooled_width, pw0, pw1);
          const int plane =
              gc::plane_offset<kNHWC>(list[e], c, channels, pooled_height, pooled_width);
          for (int ph = ph0; ph <= ph1; ++ph) {
            int hstart, hend;
            roi_pool_bin(ph, bin_size_h[e], roi_start_h[e], height, hstart, hend);
            if (h < hstart || h >= hend) continue;
            for (int pw = pw0; pw <= pw1; ++pw) {
              int wstart, wend;
              roi_pool_bin(pw, bin_size_w[e], roi_start_w[e], width, wstart, wend);
              if (w < wstart || w >= wend) continue;
              const int j = plane + (ph * pooled_width + pw) * out_ps;
              if (argmax_data[j] == self) grad += gc::to_acc(grad_output[j]);
            }
          }
        }
        // epilogue
        grad_input[offset] = gc::from_acc<T>(grad);
      }
      __syncthreads();  // the list is rebuilt by the next pass or image
    }
  }
}
