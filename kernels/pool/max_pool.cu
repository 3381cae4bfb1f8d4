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
template <class T, bool kNHWC, bool kIndices, int kWindow>
__global__ void max_pool2d_forward(const T* __restrict__ x, T* __restrict__ y,
                                   long long* __restrict__ indices, GC_POOL_SHAPE_PARAMS) {
  GC_POOL_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  const int total = N * C * P * Q;
  const int ps = gc::pixel_stride<kNHWC>(C);
  for (long long i = gc::grid_first(); i < total; i += gc::grid_stride()) {
    const gc::Coord4 o = gc::unflatten<kNHWC>((int)i, GC_POOL_SHAPE.output);
    const int hstart = o.h * stride_h - pad_h;
    const int wstart = o.w * stride_w - pad_w;
    const int plane_offset = gc::plane_offset<kNHWC>(o.n, o.c, C, H, W);
    A best = gc::acc_lowest<A>();
    int best_index;
    // An all -inf window reports its first in-bounds tap, as PyTorch does; a window of padding
    // only (dilation wider than the input) gives -inf and index -1 (gpuconv.pool.geometry).
    if constexpr (kWindow > 0) {
      const gc::WindowTaps<kWindow> taps =
          gc::window_taps<kWindow>(plane_offset, hstart, wstart, dil_h, dil_w, H, W, ps);
      const bool empty = taps.r0 == kWindow || taps.s0 == kWindow;
      best_index = empty ? -1 : (hstart + taps.r0 * dil_h) * W + wstart + taps.s0 * dil_w;
      // Taps outside the input read as -inf, which never replaces the running maximum.
      A v[kWindow * kWindow];
      gc::load_window<kWindow>(v, x, taps, best);
#pragma unroll
      for (int r = 0; r < kWindow; ++r) {
#pragma unroll
        for (int s = 0; s < kWindow; ++s) {
          if (gc::max_takes(v[r * kWindow + s], best)) {
            best = v[r * kWindow + s];
            best_index = (hstart + r * dil_h) * W + wstart + s * dil_w;
          }
        }
      }
    } else {
      const int r0 = gc::first_tap(hstart, dil_h);
      const int r1 = gc::last_tap(hstart, dil_h, R, H);
      const int s0 = gc::first_tap(wstart, dil_w);
      const int s1 = gc::last_tap(wstart, dil_w, S, W);
      const bool empty = r0 >= r1 || s0 >= s1;
      best_index = empty ? -1 : (hstart + r0 * dil_h) * W + wstart + s0 * dil_w;
      const T* plane = x + plane_offset;
      for (int r = r0; r < r1; ++r) {
        const int h = hstart + r * dil_h;
        for (int s = s0; s < s1; ++s) {
          const int w = wstart + s * dil_w;
          const A v = gc::to_acc(plane[(h * W + w) * ps]);
          if (gc::max_takes(v, best)) {
            best = v;
            best_index = h * W + w;
          }
        }
      }
    }
    // epilogue
    y[i] = gc::from_acc<T>(best);
    if (kIndices) indices[i] = best_index;
  }
}

// Backward as a gather: one thread per input element sums, in a fixed (p, q) order, the output
// gradients of the windows whose argmax is this element. No atomics, so the result is bitwise
// reproducible; every element of grad_input is written (no zero-fill pass). kWindow, kStride:
// as in avg_pool2d_backward (WindowCandidates; dilation 1), 0, 0 for run-time bounds; same bits.
template <class T, bool kNHWC, int kWindow, int kStride>
__global__ void max_pool2d_backward(const T* __restrict__ grad_output,
                                    const long long* __restrict__ indices,
                                    T* __restrict__ grad_input, GC_POOL_SHAPE_PARAMS,
                                    int use_tables) {
  GC_POOL_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  const int total = N * C * H * W;
  const int ps = gc::pixel_stride<kNHWC>(C);
  const int extent_h = (R - 1) * dil_h + 1;
  const int extent_w = (S - 1) * dil_w + 1;
  extern __shared__ int window_table[];
  gc::WindowTables t{};
  if (kWindow == 0 && use_tables) {
    t = gc::build_window_tables(window_table, H, W, P, Q, extent_h, extent_w, stride_h,
                                stride_w, pad_h, pad_w);
  }
  for (long long i = gc::grid_first(); i < total; i += gc::grid_stride()) {
    const gc::Coord4 o = gc::unflatten<kNHWC>((int)i, GC_POOL_SHAPE.input);
    const int plane = gc::plane_offset<kNHWC>(o.n, o.c, C, P, Q);
    const long long self = (long long)o.h * W + o.w;
    A grad = A(0);
    if constexpr (kWindow > 0) {
      using Candidates = gc::WindowCandidates<kWindow, kStride>;
      const Candidates c = gc::window_candidates<kWindow, kStride>(o.h, o.w, pad_h, pad_w, P, Q,
                                                                  plane, ps);
      // every candidate's index loaded first, then the gradients of those naming this element
      bool mine[Candidates::kCount];
#pragma unroll
      for (int e = 0; e < Candidates::kCount; ++e) mine[e] = c.in[e] && indices[c.at[e]] == self;
#pragma unroll
      for (int e = Candidates::kCount - 1; e >= 0; --e) {
        if (mine[e]) grad += gc::to_acc(grad_output[c.at[e]]);
      }
    } else {
      const gc::OutputSpan s = gc::window_span(t, use_tables, o.h, o.w, P, Q, extent_h,
                                               extent_w, stride_h, stride_w, pad_h, pad_w);
      for (int p = s.p0; p < s.p1; ++p) {
        for (int q = s.q0; q < s.q1; ++q) {
          const int j = plane + (p * Q + q) * ps;
          if (indices[j] == self) grad += gc::to_acc(grad_output[j]);
        }
      }
    }
    grad_input[i] = gc::from_acc<T>(grad);
  }
}
