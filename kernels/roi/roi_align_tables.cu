// ROI align forward with per-box sample tables: a block works on one box, one thread per output
// element (torchvision's mapping), the box's sample geometry computed once per block into shared
// memory. The launcher takes it where the output has enough elements to fill the GPU that way
// (gpuconv/roi/launch_align.py); the outputs too small for that (few boxes) take
// roi_align_separable.cu's passes with adaptive sampling, else roi_align.cu's lanes.
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
// exceeds the tables), as roi_align.cu's forward does: over the samples that can lie in the
// map (gc::bin_samples_inside; the others add nothing).
template <class T, class A>
__device__ __forceinline__ A sum_computed(const T* __restrict__ plane,
                                          const gc::RoiAlignBox<A>& box, int ph, int pw,
                                          int grid_h, int grid_w, int height, int width, int ps) {
  A output_val = A(0);
  int iy0, iy1, ix0, ix1;
  gc::bin_samples_inside(box.roi_start_h, box.bin_size_h, grid_h, ph, height, iy0, iy1);
  gc::bin_samples_inside(box.roi_start_w, box.bin_size_w, grid_w, pw, width, ix0, ix1);
  for (int iy = iy0; iy <= iy1; ++iy) {
    const A y = gc::sample_coordinate(box.roi_start_h, ph, box.bin_size_h, iy, grid_h);
    for (int ix = ix0; ix <= ix1; ++ix) {
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

// A block's box: decoded, its samples per bin, and whether its axis tables hold them.
template <class A>
struct TabledBox {
  gc::RoiAlignBox<A> box;
  int grid_h, grid_w;
  bool tabled;  // uniform across the block (one box)
};

// Decodes the block's box and, where its grid fits `table_entries`, fills the axis tables
// `rows` and `cols` (plane offsets with `ps`, the pixel stride). Every thread of the block calls
// it: it holds the block's barrier when the box is tabled.
template <int kGrid, class A>
__device__ __forceinline__ TabledBox<A> tabulate_box(const A* __restrict__ roi, A spatial_scale,
                                                     int pooled_height, int pooled_width,
                                                     int sampling_ratio, int aligned,
                                                     int table_entries, int height, int width,
                                                     int ps, AxisSample<A>* rows,
                                                     AxisSample<A>* cols) {
  TabledBox<A> t;
  t.box = gc::roi_align_box(roi, spatial_scale, pooled_height, pooled_width, sampling_ratio,
                            aligned != 0);
  t.grid_h = kGrid > 0 ? kGrid : t.box.roi_bin_grid_h;
  t.grid_w = kGrid > 0 ? kGrid : t.box.roi_bin_grid_w;
  // in 64 bits: an adaptive grid of a huge box times the bins can pass INT32_MAX
  t.tabled = (long long)pooled_height * t.grid_h <= table_entries &&
             (long long)pooled_width * t.grid_w <= table_entries;
  if (t.tabled) {
    fill_axis(rows, t.box.roi_start_h, t.box.bin_size_h, pooled_height, t.grid_h, height,
              width * ps);
    fill_axis(cols, t.box.roi_start_w, t.box.bin_size_w, pooled_width, t.grid_w, width, ps);
    __syncthreads();  // the tables are complete before any thread reads them
  }
  return t;
}

// Bin (ph, pw)'s output from the plane of one channel: the average of its samples, from the
// tables (kGrid > 0: the unrolled constant grid) or computed per sample where they do not hold
// the box's grid; 0 for a box whose batch index lies outside [0, batch) (the front rejects
// such boxes) and, as in torchvision, for an empty grid.
template <int kGrid, bool kNHWC, class T, class A>
__device__ __forceinline__ A bin_average(const T* __restrict__ input, const TabledBox<A>& t,
                                         const AxisSample<A>* rows, const AxisSample<A>* cols,
                                         int ph, int pw, int c, int batch, int channels,
                                         int height, int width) {
  // We do average (integral) pooling inside a bin; when the grid is empty, output zeros.
  const A count = gc::sample_count<A>(t.grid_h, t.grid_w);
  A output_val = A(0);
  if (t.box.roi_batch_ind >= 0 && t.box.roi_batch_ind < batch) {
    const int ps = gc::pixel_stride<kNHWC>(channels);
    const T* plane =
        input + gc::plane_offset<kNHWC>(t.box.roi_batch_ind, c, channels, height, width);
    if (!t.tabled) {
      output_val = sum_computed(plane, t.box, ph, pw, t.grid_h, t.grid_w, height, width, ps);
    } else if constexpr (kGrid > 0) {
      output_val = sum_fixed_grid<kGrid>(plane, rows + ph * kGrid, cols + pw * kGrid);
    } else {
      output_val = sum_tabled(plane, rows + ph * t.grid_h, cols + pw * t.grid_w, t.grid_h,
                              t.grid_w);
    }
  }
  return output_val / count;
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
  const TabledBox<A> t = tabulate_box<kGrid>(
      rois + box_index * 5, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned,
      table_entries, height, width, gc::pixel_stride<kNHWC>(channels), rows, cols);
  const int per_box = channels * pooled_height * pooled_width;
  const int element = chunk * blockDim.x + threadIdx.x;
  if (element >= per_box) return;
  const int index = box_index * per_box + element;
  const gc::Coord4 o = gc::unflatten<kNHWC>(index, out_decoder);  // o.n is box_index
  output[index] = gc::from_acc<T>(bin_average<kGrid, kNHWC>(input, t, rows, cols, o.h, o.w, o.c,
                                                            batch, channels, height, width));
}

// A warp's 32 consecutive channels of one bin: the group of channels a block of the grouped
// forward covers.
constexpr int kGroupChannels = 32;
constexpr int kGroupedThreads = 256;  // the launcher's block

// Blocks per SM the grouped forward's registers are budgeted for (ptxas, sm_80 and sm_90).
// Unbounded, float with the constant grid takes 56 registers (4 blocks of 256 threads); held to
// 48 (5 blocks) it neither spills nor changes its loads' schedule (sm_90 SASS: 12 of a bin's 16
// loads issued before the first product either way). The half types spill there on sm_80 and
// the run-time grid everywhere: they keep 4 blocks (at most 64), double 3.
template <class T, int kGrid>
constexpr int kGroupedMinBlocks =
    sizeof(gc::acc_t<T>) == 8 ? 3 : (kGrid > 0 && sizeof(T) == 4 ? 5 : 4);

// The forward over an NHWC feature map (the caller's, or gpuconv/roi/launch_align.py's copy of
// an NCHW one), with the blocks ordered channel group first.
//
// Why: in torchvision's order (and roi_align_forward_tabled's) all the channels of one box are
// done before the next box. Detector proposals overlap many times over (the bench's FPN P2 map:
// each pixel under ~40 boxes), so a box's region comes back from DRAM for each box that covers
// it once the map outgrows L2: Nsight Compute measured ~15 times the map's bytes read on FPN P2.
// And in NCHW a sample's two columns use 8 bytes of each 32-byte sector: about three times the
// bytes a sample uses cross from L2 to L1. Here block b covers box b % num_rois, channels
// [g * 32, g * 32 + 32) and bins [chunk * bins_per_block, ...) with (g, chunk) = the rest of b:
// at any moment the resident blocks read the same 32 channels of every box, whose planes stay in
// L2 (32 channels x every pixel: 15.5 MB for FPN P2 in float32), and each warp's load is 32
// consecutive channels of one pixel.
//
// Output (K, C, PH, PW) (kOutNHWC false) or (K, PH, PW, C). An NCHW block stages its 32 channels
// x bins_per_block values in shared memory and writes them as 32 runs of consecutive bins.
// Dynamic shared memory: the two axis tables (table_entries each), then for an NCHW output a
// stage of 32 x (bins_per_block | 1) T. Samples, sums and outputs are roi_align_forward_tabled's
// (tabulate_box, bin_average): the same bits.
template <class T, bool kOutNHWC, int kGrid>
__global__ void __launch_bounds__(kGroupedThreads, (kGroupedMinBlocks<T, kGrid>))
    roi_align_forward_grouped(const T* __restrict__ input, const gc::acc_t<T>* __restrict__ rois,
                              T* __restrict__ output, int num_rois, int batch, int channels,
                              int height, int width, int pooled_height, int pooled_width,
                              gc::acc_t<T> spatial_scale, int sampling_ratio, int aligned,
                              int table_entries, int bins_per_block) {
  using A = gc::acc_t<T>;
  extern __shared__ __align__(16) unsigned char roi_tables[];
  AxisSample<A>* rows = reinterpret_cast<AxisSample<A>*>(roi_tables);
  AxisSample<A>* cols = rows + table_entries;
  T* stage = reinterpret_cast<T*>(cols + table_entries);
  const int bins = pooled_height * pooled_width;
  const int chunks = (bins + bins_per_block - 1) / bins_per_block;
  const int box_index = blockIdx.x % num_rois;
  const int rest = blockIdx.x / num_rois;
  const int c0 = (rest / chunks) * kGroupChannels;
  const int first_bin = (rest % chunks) * bins_per_block;
  const int block_bins = min(bins_per_block, bins - first_bin);
  const TabledBox<A> t = tabulate_box<kGrid>(rois + box_index * 5, spatial_scale,
                                             pooled_height, pooled_width, sampling_ratio,
                                             aligned, table_entries, height, width, channels,
                                             rows, cols);
  const int lane = threadIdx.x % kGroupChannels;  // the thread's channel within the group
  const int c = c0 + lane;
  const int stage_stride = bins_per_block | 1;  // odd: a warp's 32 channels on distinct banks
  for (int b = threadIdx.x / kGroupChannels; b < block_bins; b += blockDim.x / kGroupChannels) {
    const int bin = first_bin + b;
    const int ph = bin / pooled_width, pw = bin - ph * pooled_width;
    const T value = gc::from_acc<T>(
        c < channels ? bin_average<kGrid, true>(input, t, rows, cols, ph, pw, c, batch, channels,
                                                height, width)
                     : A(0));
    if constexpr (kOutNHWC) {
      if (c < channels) output[(box_index * bins + bin) * channels + c] = value;
    } else {
      stage[lane * stage_stride + b] = value;
    }
  }
  if constexpr (!kOutNHWC) {
    __syncthreads();  // the stage is complete before it is written out
    // epilogue: each channel's bins are consecutive in the output
    for (int i = threadIdx.x; i < kGroupChannels * block_bins; i += blockDim.x) {
      const int lane_i = i / block_bins, b = i - lane_i * block_bins;
      if (c0 + lane_i < channels) {
        output[(box_index * channels + c0 + lane_i) * bins + first_bin + b] =
            stage[lane_i * stage_stride + b];
      }
    }
  }
}
