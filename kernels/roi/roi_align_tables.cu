// ROI align forward with per-box sample tables: a block works on one box, one thread per output
// element (torchvision's mapping), the box's sample geometry computed once per block into shared
// memory. The launcher takes it where the output has enough elements to fill the GPU that way
// (gpuconv/roi/launch_align.py); roi_align.cu's forward, whose lanes split a bin's samples,
// keeps the outputs too small for that (few huge boxes with adaptive sampling).
//
// Why: torchvision's kernel, and roi_align.cu's per 2 or 4 channels, compute every sample's
// coordinates, range tests and bilinear weights per output element: two divisions and the
// clamping branches per sample, for 4 loads. But the row coordinate of sample (ph, iy) depends
// only on the box, ph and iy (the column likewise on pw and ix), and the bilinear weights factor
// into a row factor and a column factor ((1 - ly) (1 - lx), (1 - ly) lx, ly (1 - lx), ly lx). So
// the block tabulates PH * grid_h row samples and PW * grid_w column samples (neighbour offsets
// and factors), and a thread's sample costs two shared-memory reads, four products and four
// loads. The products and the sum are bilinear_weights' and roi_align_forward's expressions in
// the same order: the outputs are the same bits.
#include "dtypes.cuh"
#include "flat_index.cuh"
#include "pool_window.cuh"
#include "roi_align_sampling.cuh"

namespace {

// One sample along one axis: the offsets of its two neighbours within a plane (rows: row *
// width * pixel stride; columns: column * pixel stride) and their factors (1 - l, l). low < 0
// marks a sample outside [-1, extent]: it contributes nothing (bilinear_inside is the
// conjunction of the two axes' tests).
template <class A>
struct AxisSample {
  int low, high;
  A w_low, w_high;
};

template <class A>
__device__ __forceinline__ AxisSample<A> axis_sample(A coordinate, int extent, int step) {
  AxisSample<A> s;
  if (!(coordinate >= A(-1) && coordinate <= static_cast<A>(extent))) {  // NaN included
    s.low = s.high = -1;
    s.w_low = s.w_high = A(0);
    return s;
  }
  int low, high;
  A l;
  gc::bilinear_axis(coordinate, extent, low, high, l);
  s.low = low * step;
  s.high = high * step;
  s.w_low = A(1) - l;
  s.w_high = l;
  return s;
}

// Fills `table` with the `bins * grid` samples of one axis (entry bin * grid + i), the block's
// threads striding over the entries.
template <class A>
__device__ __forceinline__ void fill_axis(AxisSample<A>* table, A roi_start, A bin_size,
                                          int bins, int grid, int extent, int step) {
  for (int i = threadIdx.x; i < bins * grid; i += blockDim.x) {
    const int bin = i / grid;
    const int sample = i - bin * grid;
    table[i] = axis_sample(gc::sample_coordinate(roi_start, bin, bin_size, sample, grid), extent,
                           step);
  }
}

// The sum over one bin's kGrid x kGrid samples (the bin's row and column table entries), in
// the order and with the expressions of the run-time loop in the kernel. Every sample's four
// loads are issued before any is summed (an outside sample loads the plane's first element and
// adds nothing): with the loop's `continue`, each sample's loads waited behind a branch, four
// loads in flight per thread instead of 4 * kGrid^2.
template <int kGrid, class T, class A>
__device__ __forceinline__ A sum_fixed_grid(const T* __restrict__ plane,
                                            const AxisSample<A>* bin_rows,
                                            const AxisSample<A>* bin_cols) {
  constexpr int kSamples = kGrid * kGrid;
  T v[kSamples][4];
  bool inside[kSamples];
#pragma unroll
  for (int s = 0; s < kSamples; ++s) {
    const AxisSample<A> ys = bin_rows[s / kGrid];
    const AxisSample<A> xs = bin_cols[s % kGrid];
    inside[s] = ys.low >= 0 && xs.low >= 0;
    const int y_low = inside[s] ? ys.low : 0, y_high = inside[s] ? ys.high : 0;
    const int x_low = inside[s] ? xs.low : 0, x_high = inside[s] ? xs.high : 0;
    v[s][0] = plane[y_low + x_low];
    v[s][1] = plane[y_low + x_high];
    v[s][2] = plane[y_high + x_low];
    v[s][3] = plane[y_high + x_high];
  }
  A output_val = A(0);
#pragma unroll
  for (int s = 0; s < kSamples; ++s) {
    if (!inside[s]) continue;
    const AxisSample<A> ys = bin_rows[s / kGrid];
    const AxisSample<A> xs = bin_cols[s % kGrid];
    const A w1 = ys.w_low * xs.w_low, w2 = ys.w_low * xs.w_high;
    const A w3 = ys.w_high * xs.w_low, w4 = ys.w_high * xs.w_high;
    output_val += w1 * gc::to_acc(v[s][0]) + w2 * gc::to_acc(v[s][1]) +
                  w3 * gc::to_acc(v[s][2]) + w4 * gc::to_acc(v[s][3]);
  }
  return output_val;
}

// The sum over one bin's grid_h x grid_w samples from its table entries, torchvision's order.
template <class T, class A>
__device__ __forceinline__ A sum_tabled(const T* __restrict__ plane,
                                        const AxisSample<A>* bin_rows,
                                        const AxisSample<A>* bin_cols, int grid_h, int grid_w) {
  A output_val = A(0);
  for (int iy = 0; iy < grid_h; ++iy) {
    const AxisSample<A> ys = bin_rows[iy];
    for (int ix = 0; ix < grid_w; ++ix) {
      const AxisSample<A> xs = bin_cols[ix];
      if (ys.low < 0 || xs.low < 0) continue;
      const A w1 = ys.w_low * xs.w_low, w2 = ys.w_low * xs.w_high;
      const A w3 = ys.w_high * xs.w_low, w4 = ys.w_high * xs.w_high;
      output_val += w1 * gc::to_acc(plane[ys.low + xs.low]) +
                    w2 * gc::to_acc(plane[ys.low + xs.high]) +
                    w3 * gc::to_acc(plane[ys.high + xs.low]) +
                    w4 * gc::to_acc(plane[ys.high + xs.high]);
    }
  }
  return output_val;
}

// The same sum with each sample's coordinates and weights computed here (a box whose grid
// exceeds the tables), as roi_align.cu's forward does.
template <class T, class A>
__device__ __forceinline__ A sum_computed(const T* __restrict__ plane,
                                          const gc::RoiAlignBox<A>& box, int ph, int pw,
                                          int grid_h, int grid_w, int height, int width, int ps) {
  A output_val = A(0);
  for (int iy = 0; iy < grid_h; ++iy) {
    const A y = gc::sample_coordinate(box.roi_start_h, ph, box.bin_size_h, iy, grid_h);
    for (int ix = 0; ix < grid_w; ++ix) {
      const A x = gc::sample_coordinate(box.roi_start_w, pw, box.bin_size_w, ix, grid_w);
      const gc::BilinearWeights<A> b = gc::bilinear_weights(height, width, y, x);
      if (!b.inside) continue;
      output_val += b.w1 * gc::to_acc(plane[(b.y_low * width + b.x_low) * ps]) +
                    b.w2 * gc::to_acc(plane[(b.y_low * width + b.x_high) * ps]) +
                    b.w3 * gc::to_acc(plane[(b.y_high * width + b.x_low) * ps]) +
                    b.w4 * gc::to_acc(plane[(b.y_high * width + b.x_high) * ps]);
    }
  }
  return output_val;
}

}  // namespace

// Output (K, C, PH, PW) in NCHW, (K, PH, PW, C) in NHWC; block b computes the elements
// [chunk * blockDim.x, (chunk + 1) * blockDim.x) of box b / blocks_per_box (chunk = the rest),
// in the output's storage order: consecutive threads are consecutive bins of one plane (NCHW,
// torchvision's pattern) or consecutive channels of one bin (NHWC, coalesced loads).
// `out_decoder` splits a flat output index (gc::FlatDecoder of C, PH, PW). kGrid > 0: the
// sampling ratio, a compile-time constant (the sample loops unrolled, every load of an element
// issued before the sums); 0: the box's grid, fixed or adaptive, at run time. `table_entries`:
// the capacity of each axis' table (dynamic shared memory: 2 * table_entries AxisSample<A>); a
// box whose grid needs more (huge adaptive boxes) computes its samples per element instead.
// A box whose batch index lies outside [0, N) gives zeros (the front rejects such boxes).
template <class T, bool kNHWC, int kGrid>
__global__ void roi_align_forward_tabled(const T* __restrict__ input,
                                         const gc::acc_t<T>* __restrict__ rois,
                                         T* __restrict__ output, gc::FlatDecoder out_decoder,
                                         int blocks_per_box, int batch, int channels, int height,
                                         int width, int pooled_height, int pooled_width,
                                         gc::acc_t<T> spatial_scale, int sampling_ratio,
                                         int aligned, int table_entries) {
  using A = gc::acc_t<T>;
  extern __shared__ __align__(16) unsigned char roi_tables[];
  AxisSample<A>* rows = reinterpret_cast<AxisSample<A>*>(roi_tables);
  AxisSample<A>* cols = rows + table_entries;
  const int box_index = blockIdx.x / blocks_per_box;
  const int chunk = blockIdx.x - box_index * blocks_per_box;
  const gc::RoiAlignBox<A> box = gc::roi_align_box(rois + box_index * 5, spatial_scale,
                                                   pooled_height, pooled_width, sampling_ratio,
                                                   aligned != 0);
  const int grid_h = kGrid > 0 ? kGrid : box.roi_bin_grid_h;
  const int grid_w = kGrid > 0 ? kGrid : box.roi_bin_grid_w;
  const int ps = gc::pixel_stride<kNHWC>(channels);
  // Uniform across the block (one box): every thread reaches the barrier or none does.
  const bool tabled = pooled_height * grid_h <= table_entries &&
                      pooled_width * grid_w <= table_entries;
  if (tabled) {
    fill_axis(rows, box.roi_start_h, box.bin_size_h, pooled_height, grid_h, height, width * ps);
    fill_axis(cols, box.roi_start_w, box.bin_size_w, pooled_width, grid_w, width, ps);
    __syncthreads();  // the tables are complete before any thread reads them
  }
  const int per_box = channels * pooled_height * pooled_width;
  const int element = chunk * blockDim.x + threadIdx.x;
  if (element >= per_box) return;
  const int index = box_index * per_box + element;
  const gc::Coord4 o = gc::unflatten<kNHWC>(index, out_decoder);  // o.n is box_index
  // We do average (integral) pooling inside a bin; when the grid is empty, output zeros.
  const A count = static_cast<A>(max(grid_h * grid_w, 1));
  A output_val = A(0);
  if (box.roi_batch_ind >= 0 && box.roi_batch_ind < batch) {
    const T* plane =
        input + gc::plane_offset<kNHWC>(box.roi_batch_ind, o.c, channels, height, width);
    if (!tabled) {
      output_val = sum_computed(plane, box, o.h, o.w, grid_h, grid_w, height, width, ps);
    } else if constexpr (kGrid > 0) {
      output_val = sum_fixed_grid<kGrid>(plane, rows + o.h * kGrid, cols + o.w * kGrid);
    } else {
      output_val = sum_tabled(plane, rows + o.h * grid_h, cols + o.w * grid_w, grid_h, grid_w);
    }
  }
  output[index] = gc::from_acc<T>(output_val / count);
}
