// Adaptive average and max pooling (torch.nn.functional.adaptive_{avg,max}_pool2d), forward and
// backward, NCHW and NHWC. Output (i, j) pools the bin [floor(i*H/P), ceil((i+1)*H/P)) x
// [floor(j*W/Q), ceil((j+1)*W/Q)). Design and bandwidth arithmetic: kernels/pool/NOTES.md.
#include "adaptive_bins.cuh"
#include "dtypes.cuh"
#include "pool_shape.cuh"
#include "pool_window.cuh"

// main loop: one thread per output element (coalesced over channels in NHWC, over bins in NCHW).
// kVectors (NHWC only; the launcher's promise that C is a multiple of the vector and every
// array is 16-byte aligned): a thread owns 16 bytes of consecutive channels of one output pixel
// (8 halves, 4 floats, 2 doubles), which share its bin: the decoding and the bin bounds once
// per vector, one 16-byte load per element of the bin; each channel scans the bin in the same
// order (max_pool2d_forward's argument).
template <class T, bool kNHWC, bool kIndices, bool kVectors>
__global__ void adaptive_max_pool2d_forward(const T* __restrict__ x, T* __restrict__ y,
                                            long long* __restrict__ indices,
                                            GC_POOL_SHAPE_PARAMS) {
  GC_POOL_SHAPE_NAMES;
  constexpr int V = gc::channel_vector<T, kNHWC, kVectors>();
  const int vectors = N * C * P * Q / V;
  const int ps = gc::pixel_stride<kNHWC>(C);
  for (long long v = gc::grid_first(); v < vectors; v += gc::grid_stride()) {
    const int i = (int)v * V;  // the vector's first element
    const gc::Coord4 o = gc::unflatten<kNHWC>(i, GC_POOL_SHAPE.output);
    const gc::Bin bin = gc::adaptive_bin(o.h, o.w, H, W, P, Q);
    gc::MaxArg<gc::acc_t<T>> m[V];
    gc::max_over_bin<T, V>(x + gc::plane_offset<kNHWC>(o.n, o.c, C, H, W), ps, W, bin, m);
    // epilogue
    T out[V];
    long long out_index[V];
#pragma unroll
    for (int e = 0; e < V; ++e) {
      out[e] = gc::from_acc<T>(m[e].value);
      out_index[e] = m[e].index;
    }
    gc::store_packed<T, V>(y + i, out);
    if (kIndices) gc::store_packed<long long, V>(indices + i, out_index);
  }
}

template <class T, bool kNHWC, bool kVectors>
__global__ void adaptive_avg_pool2d_forward(const T* __restrict__ x, T* __restrict__ y,
                                            GC_POOL_SHAPE_PARAMS) {
  GC_POOL_SHAPE_NAMES;
  constexpr int V = gc::channel_vector<T, kNHWC, kVectors>();
  const int vectors = N * C * P * Q / V;
  const int ps = gc::pixel_stride<kNHWC>(C);
  for (long long v = gc::grid_first(); v < vectors; v += gc::grid_stride()) {
    const int i = (int)v * V;  // the vector's first element
    const gc::Coord4 o = gc::unflatten<kNHWC>(i, GC_POOL_SHAPE.output);
    const gc::Bin bin = gc::adaptive_bin(o.h, o.w, H, W, P, Q);
    gc::acc_t<T> mean[V];
    gc::mean_over_bin<T, V>(x + gc::plane_offset<kNHWC>(o.n, o.c, C, H, W), ps, W, bin, mean);
    gc::store_rounded<T, V>(y + i, mean);
  }
}

// Backward as gathers: one thread per input element visits the bins that contain it (rows
// [floor(h*P/H), ceil((h+1)*P/H)), the same for columns) in a fixed order. No atomics: bitwise
// reproducible, and every element of grad_input is written. With `use_tables` (the launcher's
// choice when they fit in shared memory) the bin bounds come from per-block tables
// (gc::build_adaptive_tables) instead of integer divisions per element.
namespace {

__device__ __forceinline__ gc::OutputSpan covering_bins(const gc::AdaptiveTables& t,
                                                        bool use_tables, int h, int w, int H,
                                                        int W, int P, int Q) {
  if (use_tables) return {t.row_first[h], t.row_last[h], t.col_first[w], t.col_last[w]};
  return {gc::adaptive_start(h, P, H), gc::adaptive_end(h, P, H), gc::adaptive_start(w, Q, W),
          gc::adaptive_end(w, Q, W)};
}

__device__ __forceinline__ int bin_extent(const int* table, bool use_tables, int p, int in,
                                          int out) {
  return use_tables ? table[p] : gc::adaptive_end(p, in, out) - gc::adaptive_start(p, in, out);
}

// The kTwoBins gathers' candidates: bins (p0, q0), (p0, q0 + 1), (p0 + 1, q0), (p0 + 1, q0 + 1)
// (the loops' order), each with its element offset (unsigned: one past the last bin may pass
// 2^31; it is never read) and whether it holds the element.
struct TwoByTwo {
  unsigned at[4];
  bool in[4];
};

__device__ __forceinline__ TwoByTwo two_by_two(const gc::OutputSpan& b, int plane, int Q, int ps) {
  const bool row2 = b.p1 > b.p0 + 1, col2 = b.q1 > b.q0 + 1;
  TwoByTwo c;
  c.at[0] = (unsigned)plane + (unsigned)(b.p0 * Q + b.q0) * ps;
  c.at[1] = c.at[0] + ps;
  c.at[2] = c.at[0] + (unsigned)Q * ps;
  c.at[3] = c.at[2] + ps;
  c.in[0] = true;  // every element lies in at least one bin
  c.in[1] = col2;
  c.in[2] = row2;
  c.in[3] = row2 && col2;
  return c;
}

}  // namespace

// kTwoBins: the launcher's promise that P <= H and Q <= W (the usual shrinking pooling), where
// at most two bins per axis hold an element (bin i + 1 starts at or after bin i's last row), so
// the gathers visit a fixed 2 x 2 candidates with flags and issue their loads as one batch
// instead of run-time loops of one or two trips (whose unrolled prologues cost more than the
// work: ~390 issued instructions per element on an H100, kernels/pool/NOTES.md). Same terms in
// the same order as the loops: the same bits.
template <class T, bool kNHWC, bool kTwoBins>
__global__ void adaptive_max_pool2d_backward(const T* __restrict__ grad_output,
                                             const long long* __restrict__ indices,
                                             T* __restrict__ grad_input,
                                             GC_POOL_SHAPE_PARAMS, int use_tables) {
  GC_POOL_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  extern __shared__ int adaptive_table[];
  gc::AdaptiveTables t{};
  if (use_tables) t = gc::build_adaptive_tables(adaptive_table, H, W, P, Q);
  const int total = N * C * H * W;
  const int ps = gc::pixel_stride<kNHWC>(C);
  for (long long i = gc::grid_first(); i < total; i += gc::grid_stride()) {
    const gc::Coord4 o = gc::unflatten<kNHWC>((int)i, GC_POOL_SHAPE.input);
    const int plane = gc::plane_offset<kNHWC>(o.n, o.c, C, P, Q);
    const long long self = (long long)o.h * W + o.w;
    const gc::OutputSpan b = covering_bins(t, use_tables, o.h, o.w, H, W, P, Q);
    A grad = A(0);
    if constexpr (kTwoBins) {
      const TwoByTwo c = two_by_two(b, plane, Q, ps);
      bool mine[4];
#pragma unroll
      for (int k = 0; k < 4; ++k) mine[k] = c.in[k] && indices[c.at[k]] == self;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        if (mine[k]) grad += gc::to_acc(grad_output[c.at[k]]);
      }
    } else {
      for (int p = b.p0; p < b.p1; ++p) {
        for (int q = b.q0; q < b.q1; ++q) {
          const int j = plane + (p * Q + q) * ps;
          if (indices[j] == self) grad += gc::to_acc(grad_output[j]);
        }
      }
    }
    grad_input[i] = gc::from_acc<T>(grad);
  }
}

// kVectors (NHWC only; the launcher's promise that C is a multiple of the vector and both
// arrays are 16-byte aligned): a thread owns 16 bytes of consecutive channels of one pixel (8
// halves, 4 floats, 2 doubles), whose bins are the same, so the pixel's decoding, bin bounds
// and extents are paid once per vector instead of once per channel (one channel per thread ran
// ~250 issued instructions per element in fp16 NHWC: bound by instructions, kernels/pool/
// NOTES.md), and every access is one 16-byte load or store. Each channel still sums the same
// terms in the same order: the same bits as without vectors.
template <class T, bool kNHWC, bool kTwoBins, bool kVectors>
__global__ void adaptive_avg_pool2d_backward(const T* __restrict__ grad_output,
                                             T* __restrict__ grad_input,
                                             GC_POOL_SHAPE_PARAMS, int use_tables) {
  GC_POOL_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  constexpr int V = gc::channel_vector<T, kNHWC, kVectors>();
  extern __shared__ int adaptive_table[];
  gc::AdaptiveTables t{};
  if (use_tables) t = gc::build_adaptive_tables(adaptive_table, H, W, P, Q);
  const int vectors = N * C * H * W / V;
  const int ps = gc::pixel_stride<kNHWC>(C);
  for (long long v = gc::grid_first(); v < vectors; v += gc::grid_stride()) {
    const int i = (int)v * V;  // the vector's first element
    const gc::Coord4 o = gc::unflatten<kNHWC>(i, GC_POOL_SHAPE.input);
    const int plane = gc::plane_offset<kNHWC>(o.n, o.c, C, P, Q);
    const gc::OutputSpan b = covering_bins(t, use_tables, o.h, o.w, H, W, P, Q);
    A grad[V];
#pragma unroll
    for (int e = 0; e < V; ++e) grad[e] = A(0);
    if constexpr (kTwoBins) {
      const TwoByTwo c = two_by_two(b, plane, Q, ps);
      T g[4][V];  // as stored until summed (avg_pool2d_backward's register argument)
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        if (c.in[k]) gc::load_vector<T, V>(grad_output + c.at[k], g[k]);
      }
      const int rows[2] = {bin_extent(t.row_extent, use_tables, b.p0, H, P),
                           c.in[2] ? bin_extent(t.row_extent, use_tables, b.p0 + 1, H, P) : 1};
      const int cols[2] = {bin_extent(t.col_extent, use_tables, b.q0, W, Q),
                           c.in[1] ? bin_extent(t.col_extent, use_tables, b.q0 + 1, W, Q) : 1};
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        if (c.in[k]) {
          const A area = static_cast<A>(rows[k / 2] * cols[k % 2]);
#pragma unroll
          for (int e = 0; e < V; ++e) grad[e] += gc::to_acc(g[k][e]) / area;
        }
      }
    } else {
      for (int p = b.p0; p < b.p1; ++p) {
        const int rows = bin_extent(t.row_extent, use_tables, p, H, P);
        for (int q = b.q0; q < b.q1; ++q) {
          const A area = static_cast<A>(rows * bin_extent(t.col_extent, use_tables, q, W, Q));
          A g[V];
          gc::load_packed<T, V>(grad_output + plane + (p * Q + q) * ps, g);
#pragma unroll
          for (int e = 0; e < V; ++e) grad[e] += g[e] / area;
        }
      }
    }
    gc::store_rounded<T, V>(grad_input + i, grad);
  }
}
