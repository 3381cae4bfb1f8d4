// Average pooling over strided, padded windows (torch.nn.functional.avg_pool2d: count_include_pad,
// divisor_override, ceil_mode), forward and backward, NCHW and NHWC.
// Design and bandwidth arithmetic: kernels/pool/NOTES.md.
#include "dtypes.cuh"
#include "pool_shape.cuh"
#include "pool_window.cuh"

namespace {

// One axis of a window's divisor: the window of output p along an axis of `size` elements,
// clipped to size + pad (count_include_pad) or to the input. A window's divisor (without an
// override) is the product of its row and its column extents, so the compile-time gathers
// compute it per row and per column. Each extent fits in an int; their product may not (a
// legal kernel of 2^30 + 1 rows by 3 columns over a small input with as much padding), so it is
// taken in the accumulator type: extents below 2^24 convert exactly and the product rounds once,
// as PyTorch's int64 divide_factor does when it meets a float sum.
__device__ __forceinline__ int avg_extent(int p, int size, int taps, int stride, int pad,
                                          int count_include_pad) {
  const int start = p * stride - pad;
  const int end = min(start + taps, size + pad);
  return count_include_pad ? end - start : min(end, size) - max(start, 0);
}

// One window of average pooling, PyTorch's rule: the padded extent (clipped at H + pad on the
// far side, which only a ceil_mode window reaches) sets the divisor when count_include_pad; the
// in-bounds extent sets it otherwise; a divisor_override (any non-zero int, negative included)
// replaces both, and 0 means none (the front rejects an override of 0).
struct AvgWindow {
  int hstart, hend, wstart, wend;  // in-bounds rows [hstart, hend), columns [wstart, wend)
  int rows, cols;                  // the divisor's factors (an override: itself times 1)

  template <class A>
  __device__ __forceinline__ A divisor() const {
    return static_cast<A>(rows) * static_cast<A>(cols);
  }
};

__device__ __forceinline__ AvgWindow avg_window(int p, int q, int H, int W, int R, int S,
                                                int stride_h, int stride_w, int pad_h, int pad_w,
                                                int count_include_pad, int divisor_override) {
  AvgWindow win;
  win.hstart = max(p * stride_h - pad_h, 0);
  win.wstart = max(q * stride_w - pad_w, 0);
  win.hend = min(p * stride_h - pad_h + R, H);
  win.wend = min(q * stride_w - pad_w + S, W);
  const bool overridden = divisor_override != 0;
  win.rows = overridden ? divisor_override
                        : avg_extent(p, H, R, stride_h, pad_h, count_include_pad);
  win.cols = overridden ? 1 : avg_extent(q, W, S, stride_w, pad_w, count_include_pad);
  return win;
}

}  // namespace

// main loop: one thread per output element; see max_pool.cu for the coalescing argument.
// A window with no in-bounds element gives 0 (PyTorch). kWindow and kVectors as in
// max_pool2d_forward.
template <class T, bool kNHWC, int kWindow, bool kVectors>
__global__ void avg_pool2d_forward(const T* __restrict__ x, T* __restrict__ y,
                                   GC_POOL_SHAPE_PARAMS, int count_include_pad,
                                   int divisor_override) {
  GC_POOL_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  constexpr int V = gc::channel_vector<T, kNHWC, kVectors>();
  const int vectors = N * C * P * Q / V;
  const int ps = gc::pixel_stride<kNHWC>(C);
  for (long long v = gc::grid_first(); v < vectors; v += gc::grid_stride()) {
    const int i = (int)v * V;  // the vector's first element
    const gc::Coord4 o = gc::unflatten<kNHWC>(i, GC_POOL_SHAPE.output);
    const AvgWindow win = avg_window(o.h, o.w, H, W, R, S, stride_h, stride_w, pad_h, pad_w,
                                     count_include_pad, divisor_override);
    const int plane_offset = gc::plane_offset<kNHWC>(o.n, o.c, C, H, W);
    A sum[V];
#pragma unroll
    for (int e = 0; e < V; ++e) sum[e] = A(0);
    if constexpr (kWindow > 0) {
      // Taps outside the input read as 0: the same sum, bit for bit, as the loop below (it
      // starts at +0, so adding a 0 never changes it).
      A tap[kWindow * kWindow][V];
      gc::load_window<kWindow>(
          tap, x,
          gc::window_taps<kWindow>(plane_offset, o.h * stride_h - pad_h, o.w * stride_w - pad_w,
                                   1, 1, H, W, ps),
          A(0));
#pragma unroll
      for (int t = 0; t < kWindow * kWindow; ++t) {
#pragma unroll
        for (int e = 0; e < V; ++e) sum[e] += tap[t][e];
      }
    } else {
      const T* plane = x + plane_offset;
      for (int h = win.hstart; h < win.hend; ++h) {
        for (int w = win.wstart; w < win.wend; ++w) {
          A tap[V];
          gc::load_packed<T, V>(plane + (h * W + w) * ps, tap);
#pragma unroll
          for (int e = 0; e < V; ++e) sum[e] += tap[e];
        }
      }
    }
    // epilogue
    const bool empty = win.hstart >= win.hend || win.wstart >= win.wend;
    A mean[V];
#pragma unroll
    for (int e = 0; e < V; ++e) mean[e] = empty ? A(0) : sum[e] / win.template divisor<A>();
    gc::store_rounded<T, V>(y + i, mean);
  }
}

// Backward as a gather: one thread per input element sums grad_output / divisor over the
// windows that contain it, in a fixed (p, q) order: bitwise reproducible, no zero-fill pass.
// kWindow, kStride: a square window of that many taps and that stride, both ways (the launcher
// picks (2, 2), (3, 1), (3, 2): WindowCandidates); 0, 0 for any other window (run-time bounds).
// Both give the same bits: the same terms, divisors and order.
// kVectors (NHWC only; the launcher's promise that C is a multiple of the vector and both
// arrays are 16-byte aligned): a thread owns 16 bytes of consecutive channels of one pixel (8
// halves, 4 floats, 2 doubles), which share its windows, so the pixel's decoding, candidates
// and divisors are paid once per vector (the gather is bound by issued instructions: Nsight
// Compute, kernels/pool/NOTES.md) and each access is one 16-byte load or store. Each channel
// sums the same terms in the same order: the same bits as one channel per thread.
template <class T, bool kNHWC, int kWindow, int kStride, bool kVectors>
__global__ void avg_pool2d_backward(const T* __restrict__ grad_output, T* __restrict__ grad_input,
                                    GC_POOL_SHAPE_PARAMS, int count_include_pad,
                                    int divisor_override, int use_tables) {
  GC_POOL_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  constexpr int V = gc::channel_vector<T, kNHWC, kVectors>();
  const int vectors = N * C * H * W / V;
  const int ps = gc::pixel_stride<kNHWC>(C);
  extern __shared__ int window_table[];
  gc::WindowTables t{};
  if (kWindow == 0 && use_tables) {
    t = gc::build_window_tables(window_table, H, W, P, Q, R, S, stride_h, stride_w, pad_h,
                                pad_w);
  }
  for (long long v = gc::grid_first(); v < vectors; v += gc::grid_stride()) {
    const int i = (int)v * V;  // the vector's first element
    const gc::Coord4 o = gc::unflatten<kNHWC>(i, GC_POOL_SHAPE.input);
    const int plane_offset = gc::plane_offset<kNHWC>(o.n, o.c, C, P, Q);
    A grad[V];
#pragma unroll
    for (int e = 0; e < V; ++e) grad[e] = A(0);
    if constexpr (kWindow > 0) {
      using Candidates = gc::WindowCandidates<kWindow, kStride>;
      constexpr int kSpan = Candidates::kSpan;
      const Candidates c = gc::window_candidates<kWindow, kStride>(o.h, o.w, pad_h, pad_w, P, Q,
                                                                  plane_offset, ps);
      // held as stored (a vector of halves in 4 registers, not 8 floats) until summed
      T g[Candidates::kCount][V];
#pragma unroll
      for (int k = 0; k < Candidates::kCount; ++k) {
        if (c.in[k]) gc::load_vector<T, V>(grad_output + c.at[k], g[k]);
      }
      int row_extent[kSpan], col_extent[kSpan];
#pragma unroll
      for (int j = 0; j < kSpan; ++j) {
        row_extent[j] =
            avg_extent(c.rows.last - j, H, kWindow, kStride, pad_h, count_include_pad);
        col_extent[j] =
            avg_extent(c.cols.last - j, W, kWindow, kStride, pad_w, count_include_pad);
      }
#pragma unroll
      for (int k = Candidates::kCount - 1; k >= 0; --k) {
        // kWindow <= 3 here (launch_window.AVG_GATHER_WINDOWS): the product fits an int
        const A divisor = static_cast<A>(divisor_override != 0
                                             ? divisor_override
                                             : row_extent[k / kSpan] * col_extent[k % kSpan]);
        if (c.in[k]) {
#pragma unroll
          for (int e = 0; e < V; ++e) grad[e] += gc::to_acc(g[k][e]) / divisor;
        }
      }
    } else {
      const gc::OutputSpan s = gc::window_span(t, use_tables, o.h, o.w, P, Q, R, S, stride_h,
                                               stride_w, pad_h, pad_w);
      const T* plane = grad_output + plane_offset;
      for (int p = s.p0; p < s.p1; ++p) {
        for (int q = s.q0; q < s.q1; ++q) {
          const AvgWindow win = avg_window(p, q, H, W, R, S, stride_h, stride_w, pad_h, pad_w,
                                           count_include_pad, divisor_override);
          A g[V];
          gc::load_packed<T, V>(plane + (p * Q + q) * ps, g);
#pragma unroll
          for (int e = 0; e < V; ++e) grad[e] += g[e] / win.template divisor<A>();
        }
      }
    }
    gc::store_rounded<T, V>(grad_input + i, grad);
  }
}
