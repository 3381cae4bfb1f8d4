// Max pooling over strided, padded, dilated windows (torch.nn.functional.max_pool2d), forward
// and backward, NCHW and NHWC. Design and bandwidth arithmetic: kernels/pool/NOTES.md.
#include "dtypes.cuh"
#include "pool_shape.cuh"
#include "pool_window.cuh"

// main loop: one thread per output element (n, c, p, q). In NHWC consecutive threads are
// consecutive channels of one window, so each tap is one coalesced load across the warp; in
// NCHW consecutive threads are horizontally adjacent windows of one plane.
// The padding never takes part (PyTorch pads max pooling with -inf), so the loops run over the
// in-bounds taps only. `indices` (flat h * W + w within the plane) is written when kIndices.
// kWindow: 2 or 3 when the window is that square (its taps loaded as one batch, load_window),
// 0 for any other size.
// kVectors (NHWC only; the launcher's promise that C is a multiple of the vector and every
// array is 16-byte aligned): a thread owns 16 bytes of consecutive channels of one output pixel
// (8 halves, 4 floats, 2 doubles), which share its window, so the pixel's decoding and the
// taps' bounds are paid once per vector, and each tap is one 16-byte load (one channel per
// thread: 2-byte loads filling half a warp's 128-byte lines, bound by issued instructions on an
// H100, kernels/pool/NOTES.md). Each channel scans the same taps in the same order.
template <class T, bool kNHWC, bool kIndices, int kWindow, bool kVectors>
__global__ void max_pool2d_forward(const T* __restrict__ x, T* __restrict__ y,
                                   long long* __restrict__ indices, GC_POOL_SHAPE_PARAMS) {
  GC_POOL_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  constexpr int V = gc::channel_vector<T, kNHWC, kVectors>();
  const int vectors = N * C * P * Q / V;
  const int ps = gc::pixel_stride<kNHWC>(C);
  for (long long v = gc::grid_first(); v < vectors; v += gc::grid_stride()) {
    const int i = (int)v * V;  // the vector's first element
    const gc::Coord4 o = gc::unflatten<kNHWC>(i, GC_POOL_SHAPE.output);
    const int hstart = o.h * stride_h - pad_h;
    const int wstart = o.w * stride_w - pad_w;
    const int plane_offset = gc::plane_offset<kNHWC>(o.n, o.c, C, H, W);
    A best[V];
    int best_index[V];
#pragma unroll
    for (int e = 0; e < V; ++e) best[e] = gc::acc_lowest<A>();
    // An all -inf window reports its first in-bounds tap, as PyTorch does; a window of padding
    // only (dilation wider than the input) gives -inf and index -1 (gpuconv.pool.geometry).
    if constexpr (kWindow > 0) {
      const gc::WindowTaps<kWindow> taps =
          gc::window_taps<kWindow>(plane_offset, hstart, wstart, dil_h, dil_w, H, W, ps);
      const bool empty = taps.r0 == kWindow || taps.s0 == kWindow;
      const int first = empty ? -1 : (hstart + taps.r0 * dil_h) * W + wstart + taps.s0 * dil_w;
      // Taps outside the input read as -inf, which never replaces the running maximum.
      A tap[kWindow * kWindow][V];
      gc::load_window<kWindow>(tap, x, taps, gc::acc_lowest<A>());
#pragma unroll
      for (int e = 0; e < V; ++e) {
        best_index[e] = first;
#pragma unroll
        for (int r = 0; r < kWindow; ++r) {
#pragma unroll
          for (int s = 0; s < kWindow; ++s) {
            if (gc::max_takes(tap[r * kWindow + s][e], best[e])) {
              best[e] = tap[r * kWindow + s][e];
              best_index[e] = (hstart + r * dil_h) * W + wstart + s * dil_w;
            }
          }
        }
      }
    } else {
      const int r0 = gc::first_tap(hstart, dil_h);
      const int r1 = gc::last_tap(hstart, dil_h, R, H);
      const int s0 = gc::first_tap(wstart, dil_w);
      const int s1 = gc::last_tap(wstart, dil_w, S, W);
      const bool empty = r0 >= r1 || s0 >= s1;
      const int first = empty ? -1 : (hstart + r0 * dil_h) * W + wstart + s0 * dil_w;
#pragma unroll
      for (int e = 0; e < V; ++e) best_index[e] = first;
      const T* plane = x + plane_offset;
      for (int r = r0; r < r1; ++r) {
        const int h = hstart + r * dil_h;
        for (int s = s0; s < s1; ++s) {
          const int w = wstart + s * dil_w;
          A tap[V];
          gc::load_packed<T, V>(plane + (h * W + w) * ps, tap);
#pragma unroll
          for (int e = 0; e < V; ++e) {
            if (gc::max_takes(tap[e], best[e])) {
              best[e] = tap[e];
              best_index[e] = h * W + w;
            }
          }
        }
      }
    }
    // epilogue
    gc::store_rounded<T, V>(y + i, best);
    if (kIndices) {
      long long out_index[V];
#pragma unroll
      for (int e = 0; e < V; ++e) out_index[e] = best_index[e];
      gc::store_packed<long long, V>(indices + i, out_index);
    }
  }
}

// Backward as a gather: one thread per input element sums, in a fixed (p, q) order, the output
// gradients of the windows whose argmax is this element. No atomics, so the result is bitwise
// reproducible; every element of grad_input is written (no zero-fill pass). kWindow, kStride:
// as in avg_pool2d_backward (WindowCandidates; dilation 1), 0, 0 for run-time bounds; same bits.
// kVectors: as in the forward (a thread per 16 bytes of channels of one input pixel; each
// candidate's indices are then V int64 loads of 16 bytes each).
template <class T, bool kNHWC, int kWindow, int kStride, bool kVectors>
__global__ void max_pool2d_backward(const T* __restrict__ grad_output,
                                    const long long* __restrict__ indices,
                                    T* __restrict__ grad_input, GC_POOL_SHAPE_PARAMS,
                                    int use_tables) {
  GC_POOL_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  constexpr int V = gc::channel_vector<T, kNHWC, kVectors>();
  const int vectors = N * C * H * W / V;
  const int ps = gc::pixel_stride<kNHWC>(C);
  const int extent_h = (R - 1) * dil_h + 1;
  const int extent_w = (S - 1) * dil_w + 1;
  extern __shared__ int window_table[];
  gc::WindowTables t{};
  if (kWindow == 0 && use_tables) {
    t = gc::build_window_tables(window_table, H, W, P, Q, extent_h, extent_w, stride_h,
                                stride_w, pad_h, pad_w);
  }
  for (long long v = gc::grid_first(); v < vectors; v += gc::grid_stride()) {
    const int i = (int)v * V;  // the vector's first element
    const gc::Coord4 o = gc::unflatten<kNHWC>(i, GC_POOL_SHAPE.input);
    const int plane = gc::plane_offset<kNHWC>(o.n, o.c, C, P, Q);
    const long long self = (long long)o.h * W + o.w;
    A grad[V];
#pragma unroll
    for (int e = 0; e < V; ++e) grad[e] = A(0);
    if constexpr (kWindow > 0) {
      using Candidates = gc::WindowCandidates<kWindow, kStride>;
      const Candidates c = gc::window_candidates<kWindow, kStride>(o.h, o.w, pad_h, pad_w, P, Q,
                                                                  plane, ps);
      // every candidate's indices loaded first, then the gradients of those naming this element
      bool mine[Candidates::kCount][V];
#pragma unroll
      for (int k = 0; k < Candidates::kCount; ++k) {
        long long index[V];
        if (c.in[k]) gc::load_vector<long long, V>(indices + c.at[k], index);
#pragma unroll
        for (int e = 0; e < V; ++e) mine[k][e] = c.in[k] && index[e] == self;
      }
#pragma unroll
      for (int k = Candidates::kCount - 1; k >= 0; --k) {
        bool any = false;
#pragma unroll
        for (int e = 0; e < V; ++e) any = any || mine[k][e];
        if (any) {
          A g[V];
          gc::load_packed<T, V>(grad_output + c.at[k], g);
#pragma unroll
          for (int e = 0; e < V; ++e) {
            if (mine[k][e]) grad[e] += g[e];
          }
        }
      }
    } else {
      const gc::OutputSpan s = gc::window_span(t, use_tables, o.h, o.w, P, Q, extent_h,
                                               extent_w, stride_h, stride_w, pad_h, pad_w);
      for (int p = s.p0; p < s.p1; ++p) {
        for (int q = s.q0; q < s.q1; ++q) {
          const int j = plane + (p * Q + q) * ps;
          long long index[V];
          gc::load_vector<long long, V>(indices + j, index);
          bool any = false;
#pragma unroll
          for (int e = 0; e < V; ++e) any = any || index[e] == self;
          if (any) {
            A g[V];
            gc::load_packed<T, V>(grad_output + j, g);
#pragma unroll
            for (int e = 0; e < V; ++e) {
              if (index[e] == self) grad[e] += g[e];
            }
          }
        }
      }
    }
    gc::store_rounded<T, V>(grad_input + i, grad);
  }
}
