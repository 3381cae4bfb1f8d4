// ROI align (Mask R-CNN; torchvision.ops.roi_align semantics): forward and the atomic backward,
// NCHW and NHWC. The deterministic backward is roi_align_gather.cu. Structure and variable names
// follow torchvision/csrc/ops/cuda/roi_align_kernel.cu; what differs, and why:
// - `lanes_per_bin` lanes (1..32, a power of two chosen by the launcher) share one output bin and
//   split its sampling grid, then combine with a warp butterfly: few huge boxes with adaptive
//   sampling (hundreds of samples per bin) still fill the GPU;
// - NHWC, where consecutive threads are consecutive channels of one bin (coalesced loads);
// - accumulation in float for half types, boxes read in the accumulator type;
// - the atomic backward adds into an accumulator-typed buffer (float for halves), converted once.
#include "dtypes.cuh"
#include "pool_window.cuh"
#include "reduce.cuh"
#include "roi_align_sampling.cuh"

namespace {

// The bins of one pass of a warp: the warp's lanes hold lanes_per_bin consecutive lanes per bin.
// `first_bin` is warp-uniform, so every lane runs the same number of passes and reaches every
// shuffle (the loop condition never diverges inside a warp).
struct BinLanes {
  long long first_bin;       // bin of lane 0 in the first pass
  long long bins_per_pass;
  int bin_in_warp, slice;    // this lane's bin within the warp's group, its share of the samples
};

__device__ __forceinline__ BinLanes bin_lanes(int lanes_per_bin) {
  BinLanes b;
  const int lane = threadIdx.x % gc::kWarpSize;
  b.first_bin = (gc::grid_first() - lane) / lanes_per_bin;
  b.bins_per_pass = gc::grid_stride() / lanes_per_bin;
  b.bin_in_warp = lane / lanes_per_bin;
  b.slice = lane % lanes_per_bin;
  return b;
}

// Visits this lane's samples (iy, ix) of the rows [iy0, iy0 + rows) and columns
// [ix0, ix0 + cols) of a sampling grid: flat sample numbers slice, slice + lanes, ... of that
// window in row-major order (with one lane per bin, torchvision's order).
template <class F>
__device__ __forceinline__ void for_each_sample(int iy0, int rows, int ix0, int cols, int slice,
                                                int lanes, F&& visit) {
  const long long samples = static_cast<long long>(rows) * cols;
  if (slice >= samples) return;
  int iy = slice / cols;
  int ix = slice % cols;
  const int step_y = lanes / cols;
  const int step_x = lanes % cols;
  for (long long s = slice; s < samples; s += lanes) {
    visit(iy0 + iy, ix0 + ix);
    iy += step_y;
    ix += step_x;
    if (ix >= cols) {
      ix -= cols;
      ++iy;
    }
  }
}

// Visits, as for_each_sample, this lane's samples of bin (ph, pw) of `box` that can lie in the
// height x width map (the others add nothing: gc::bin_samples_inside), passing their coordinates
// (y, x) in the input plane.
template <class A, class F>
__device__ __forceinline__ void for_each_sample_point(const gc::RoiAlignBox<A>& box, int ph,
                                                      int pw, int height, int width, int slice,
                                                      int lanes, F&& visit) {
  int iy0, iy1, ix0, ix1;
  gc::bin_samples_inside(box.roi_start_h, box.bin_size_h, box.roi_bin_grid_h, ph, height, iy0,
                         iy1);
  gc::bin_samples_inside(box.roi_start_w, box.bin_size_w, box.roi_bin_grid_w, pw, width, ix0,
                         ix1);
  if (iy0 > iy1 || ix0 > ix1) return;
  for_each_sample(iy0, iy1 - iy0 + 1, ix0, ix1 - ix0 + 1, slice, lanes, [&](int iy, int ix) {
    const A y = gc::sample_coordinate(box.roi_start_h, ph, box.bin_size_h, iy, box.roi_bin_grid_h);
    const A x = gc::sample_coordinate(box.roi_start_w, pw, box.bin_size_w, ix, box.roi_bin_grid_w);
    visit(y, x);
  });
}

}  // namespace

// Channels one thread computes in the forward (kChannels, chosen by the launcher: launch_align.
// forward_channels). In NCHW, 2 or 4 channels of one bin share its sample coordinates and
// bilinear weights (computed once, as torchvision's CPU pre_calc does, instead of once per channel
// as its CUDA kernel does); consecutive threads stay on consecutive bins of one plane,
// torchvision's load pattern. 4 is faster while the feature map fits in L2, 2 beyond (each
// thread then streams 4 planes from DRAM: kernels/pool/NOTES.md "ROI align: channels per
// thread"). In NHWC the warp's lanes are the channels already: 1.
//
// Forward: output (K, C, PH, PW) in NCHW, (K, PH, PW, C) in NHWC. A box whose batch index lies
// outside [0, N) gives zeros (the front rejects such boxes; the kernel only stays in bounds).
// Each bin's channels are summed in torchvision's sample order, one sum per channel.
template <class T, bool kNHWC, int kChannels>
__global__ void roi_align_forward(const T* __restrict__ input,
                                  const gc::acc_t<T>* __restrict__ rois, T* __restrict__ output,
                                  int num_rois, int batch, int channels, int height, int width,
                                  int pooled_height, int pooled_width,
                                  gc::acc_t<T> spatial_scale, int sampling_ratio, int aligned,
                                  int lanes_per_bin) {
  using A = gc::acc_t<T>;
  static_assert(kChannels >= 1 && (!kNHWC || kChannels == 1), "NHWC takes one channel per thread");
  constexpr int CHANNELS = kChannels;
  const int channel_groups = (channels + CHANNELS - 1) / CHANNELS;
  const int nthreads = num_rois * channel_groups * pooled_height * pooled_width;
  const int ps = gc::pixel_stride<kNHWC>(channels);
  const int channel_stride = kNHWC ? 1 : height * width;
  const BinLanes lanes = bin_lanes(lanes_per_bin);
  for (long long first = lanes.first_bin; first < nthreads; first += lanes.bins_per_pass) {
    const long long index = first + lanes.bin_in_warp;
    A output_val[CHANNELS];
#pragma unroll
    for (int j = 0; j < CHANNELS; ++j) output_val[j] = A(0);
    A count = A(1);
    // (n, c, ph, pw) is an element in the pooled output; c counts groups of CHANNELS channels
    gc::Coord4 o{0, 0, 0, 0};
    int c0 = 0, live = 0;
    if (index < nthreads) {
      o = gc::unflatten<kNHWC>((int)index, channel_groups, pooled_height, pooled_width);
      c0 = o.c * CHANNELS;
      live = min(CHANNELS, channels - c0);
      const gc::RoiAlignBox<A> box = gc::roi_align_box(rois + o.n * 5, spatial_scale, pooled_height,
                                                       pooled_width, sampling_ratio, aligned != 0);
      // We do average (integral) pooling inside a bin; when the grid is empty, output zeros.
      count = gc::sample_count<A>(box.roi_bin_grid_h, box.roi_bin_grid_w);
      if (box.roi_batch_ind >= 0 && box.roi_batch_ind < batch) {
        const T* offset_input =
            input + gc::plane_offset<kNHWC>(box.roi_batch_ind, c0, channels, height, width);
        // main loop
        for_each_sample_point(box, o.h, o.w, height, width, lanes.slice, lanes_per_bin, [&](A y, A x) {
          const gc::BilinearWeights<A> b = gc::bilinear_weights(height, width, y, x);
          if (!b.inside) return;
          const int p1 = (b.y_low * width + b.x_low) * ps;
          const int p2 = (b.y_low * width + b.x_high) * ps;
          const int p3 = (b.y_high * width + b.x_low) * ps;
          const int p4 = (b.y_high * width + b.x_high) * ps;
#pragma unroll
          for (int j = 0; j < CHANNELS; ++j) {
            if (j >= live) break;
            // do bilinear interpolation
            const T* plane = offset_input + j * channel_stride;
            output_val[j] += b.w1 * gc::to_acc(plane[p1]) + b.w2 * gc::to_acc(plane[p2]) +
                             b.w3 * gc::to_acc(plane[p3]) + b.w4 * gc::to_acc(plane[p4]);
          }
        });
      }
    }
    // epilogue
#pragma unroll
    for (int j = 0; j < CHANNELS; ++j) output_val[j] = gc::warp_sum(output_val[j], lanes_per_bin);
    if (index < nthreads && lanes.slice == 0) {
#pragma unroll
      for (int j = 0; j < CHANNELS; ++j) {
        if (j >= live) break;
        output[gc::offset_of<kNHWC>(o.n, c0 + j, o.h, o.w, channels, pooled_height,
                                    pooled_width)] = gc::from_acc<T>(output_val[j] / count);
      }
    }
  }
}

// Atomic backward (the default mode; torchvision's formulation): each output bin spreads
// grad_output / count over the four neighbours of each of its samples with atomicAdd into
// `grad_input`, an accumulator-typed (float for halves) buffer the launcher zero-fills. The
// summation order depends on scheduling: not reproducible bit for bit (the deterministic mode
// uses roi_align_gather.cu).
//
// kNHWC is the layout of grad_input and the threads' order (NHWC: consecutive threads are
// consecutive channels of one bin, so a warp's atomics land on one 128-byte line per corner);
// kGradOutputNHWC that of grad_output. <T, true, false> serves NCHW calls whose scatter is
// large: the launcher accumulates into an NHWC scratch and transposes it once
// (accumulator.cu), because NCHW's atomics (consecutive threads on consecutive bins of one
// plane) each touch their own 32-byte sector, which past L2 is a DRAM read-modify-write
// (kernels/pool/NOTES.md "ROI align backward: NHWC accumulation"). Reading grad_output across
// channels costs one strided load per 16 atomics.
template <class T, bool kNHWC, bool kGradOutputNHWC>
__global__ void roi_align_backward_atomic(const T* __restrict__ grad_output,
                                          const gc::acc_t<T>* __restrict__ rois,
                                          gc::acc_t<T>* __restrict__ grad_input, int num_rois,
                                          int batch, int channels, int height, int width,
                                          int pooled_height, int pooled_width,
                                          gc::acc_t<T> spatial_scale, int sampling_ratio,
                                          int aligned, int lanes_per_bin) {
  using A = gc::acc_t<T>;
  const int nthreads = num_rois * channels * pooled_height * pooled_width;
  const int ps = gc::pixel_stride<kNHWC>(channels);
  const BinLanes lanes = bin_lanes(lanes_per_bin);
  for (long long first = lanes.first_bin; first < nthreads; first += lanes.bins_per_pass) {
    const long long index = first + lanes.bin_in_warp;
    if (index >= nthreads) continue;
    const gc::Coord4 o = gc::unflatten<kNHWC>((int)index, channels, pooled_height, pooled_width);
    const gc::RoiAlignBox<A> box = gc::roi_align_box(rois + o.n * 5, spatial_scale, pooled_height,
                                                     pooled_width, sampling_ratio, aligned != 0);
    if (box.roi_batch_ind < 0 || box.roi_batch_ind >= batch) continue;
    // We do average (integral) pooling inside a bin
    const A count = gc::sample_count<A>(box.roi_bin_grid_h, box.roi_bin_grid_w);
    const int out_index =
        kGradOutputNHWC == kNHWC
            ? (int)index
            : gc::offset_of<kGradOutputNHWC>(o.n, o.c, o.h, o.w, channels, pooled_height,
                                             pooled_width);
    const A grad_output_this_bin = gc::to_acc(grad_output[out_index]) / count;
    A* offset_grad_input =
        grad_input + gc::plane_offset<kNHWC>(box.roi_batch_ind, o.c, channels, height, width);
    // main loop
    for_each_sample_point(box, o.h, o.w, height, width, lanes.slice, lanes_per_bin, [&](A y, A x) {
      const gc::BilinearWeights<A> b = gc::bilinear_weights(height, width, y, x);
      if (!b.inside) return;
      const A g = grad_output_this_bin;
      atomicAdd(offset_grad_input + (b.y_low * width + b.x_low) * ps, g * b.w1);
      atomicAdd(offset_grad_input + (b.y_low * width + b.x_high) * ps, g * b.w2);
      atomicAdd(offset_grad_input + (b.y_high * width + b.x_low) * ps, g * b.w3);
      atomicAdd(offset_grad_input + (b.y_high * width + b.x_high) * ps, g * b.w4);
    });
  }
}
