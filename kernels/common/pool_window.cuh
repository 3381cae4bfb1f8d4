// Index arithmetic shared by the pooling and region-of-interest kernels: the two activation
// layouts, flat-index decoding (flat_index.cuh), grid-stride loops, PyTorch's window and
// adaptive-bin bounds, and the max-with-NaN rule.
//
// Every kernel is written once over a logical (N, C, H, W) activation; the template flag kNHWC
// picks the storage order. Offsets are 32-bit ints: the launchers refuse arrays of 2^31 or more
// elements with a clear error (design.md, "32-bit indexing is the fast path").
#pragma once

#include "dtypes.cuh"      // to_acc
#include "flat_index.cuh"  // Coord4, unflatten

namespace gc {

// Offset of element (n, c, 0, 0): adding `(h * W + w) * pixel_stride` reaches (n, c, h, w).
template <bool kNHWC>
__device__ __forceinline__ int plane_offset(int n, int c, int C, int H, int W) {
  return kNHWC ? n * H * W * C + c : (n * C + c) * H * W;
}

template <bool kNHWC>
__device__ __forceinline__ int pixel_stride(int C) {
  return kNHWC ? C : 1;
}

// Channels per thread of a pooling kernel with NHWC channel vectors (its kVectors flag; the
// launcher's launch_common.VECTOR_BYTES): 16 bytes of consecutive channels (8 halves, 4
// floats, 2 doubles), one load or store each; 1 without.
template <class T, bool kNHWC, bool kVectors>
__host__ __device__ constexpr int channel_vector() {
  static_assert(kNHWC || !kVectors, "channel vectors are NHWC's");
  return kVectors ? int(16 / sizeof(T)) : 1;
}

template <bool kNHWC>
__device__ __forceinline__ int offset_of(int n, int c, int h, int w, int C, int H, int W) {
  return plane_offset<kNHWC>(n, c, C, H, W) + (h * W + w) * pixel_stride<kNHWC>(C);
}

// Grid-stride loops: `for (long long i = grid_first(); i < total; i += grid_stride())`. The
// counter is 64-bit so that `i + stride` cannot overflow near 2^31; bodies index with (int)i,
// valid because every total is below 2^31 (checked by the launchers).
__device__ __forceinline__ long long grid_first() {
  return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ long long grid_stride() {
  return (long long)blockDim.x * gridDim.x;
}

// PyTorch's adaptive bins: output i of `out` covers inputs [floor(i*in/out), ceil((i+1)*in/out)).
// With the roles of `in` and `out` swapped, the same two functions give the outputs whose bins
// cover input h: [adaptive_start(h, out, in), adaptive_end(h, out, in)).
// The products can pass 2^31 only for planes of over ~46k rows; below that the division is the
// inline 32-bit one (a 64-bit division is a ~70-instruction subroutine call on the GPU).
__device__ __forceinline__ int bin_quotient(long long numerator, int denominator) {
  if (numerator <= 0x7fffffffLL) return (int)((unsigned)numerator / (unsigned)denominator);
  return (int)(numerator / denominator);
}
__device__ __forceinline__ int adaptive_start(int i, int in, int out) {
  return bin_quotient((long long)i * in, out);
}
__device__ __forceinline__ int adaptive_end(int i, int in, int out) {
  return bin_quotient((long long)(i + 1) * in + out - 1, out);
}

// The outputs [first, last) of a strided window (extent = (kernel - 1) * dilation + 1, the
// window of output p starting at p * stride - pad) that can contain input position h. Exact
// without dilation; with dilation a superset (the caller checks the tap or the argmax).
__device__ __forceinline__ int window_first_output(int h, int pad, int extent, int stride) {
  return (h + pad < extent) ? 0 : (h + pad - extent) / stride + 1;
}
__device__ __forceinline__ int window_last_output(int h, int pad, int stride, int outputs) {
  return min((h + pad) / stride + 1, outputs);
}

// The first tap r of a dilated window starting at `start` that lies at or after 0, and one past
// the last tap that lies before `size`: the in-bounds taps are [first, last). Dilation 1, the
// common case, skips the two integer divisions (about 20 instructions each, in kernels that
// have a budget of a few hundred per output at full memory bandwidth).
__device__ __forceinline__ int first_tap(int start, int dilation) {
  if (start >= 0) return 0;
  return dilation == 1 ? -start : (-start + dilation - 1) / dilation;
}
__device__ __forceinline__ int last_tap(int start, int dilation, int taps, int size) {
  if (start >= size) return 0;
  return min(taps, dilation == 1 ? size - start : (size - start + dilation - 1) / dilation);
}

// The windowed backward gathers' output bounds, as tables in shared memory: for each input row h
// the outputs [first[h], last[h]) whose windows can hold it (window_first_output /
// window_last_output), the same for columns. Each block builds them once (2 divisions per entry)
// so that its threads read them instead of dividing 4 times per element (max_pool2d backward on
// an H100 ran at 14-20% of the copy bandwidth: kernels/pool/NOTES.md). Layout in `table` (ints):
// row first[H], row last[H], column first[W], column last[W]. Every thread of the block must
// call it (it ends in a barrier).
struct WindowTables {
  const int *row_first, *row_last, *col_first, *col_last;
};

__device__ __forceinline__ WindowTables build_window_tables(int* table, int H, int W, int P,
                                                            int Q, int extent_h, int extent_w,
                                                            int stride_h, int stride_w, int pad_h,
                                                            int pad_w) {
  for (int h = threadIdx.x; h < H; h += blockDim.x) {
    table[h] = window_first_output(h, pad_h, extent_h, stride_h);
    table[H + h] = window_last_output(h, pad_h, stride_h, P);
  }
  int* col = table + 2 * H;
  for (int w = threadIdx.x; w < W; w += blockDim.x) {
    col[w] = window_first_output(w, pad_w, extent_w, stride_w);
    col[W + w] = window_last_output(w, pad_w, stride_w, Q);
  }
  __syncthreads();
  return {table, table + H, col, col + W};
}

// The outputs [p0, p1) x [q0, q1) whose windows (or adaptive bins) can hold an input element.
struct OutputSpan {
  int p0, p1, q0, q1;
};

// A window's OutputSpan for input (h, w): from the tables, or computed when the launcher chose
// not to build them.

__device__ __forceinline__ OutputSpan window_span(const WindowTables& t, bool use_tables, int h,
                                                  int w, int P, int Q, int extent_h,
                                                  int extent_w, int stride_h, int stride_w,
                                                  int pad_h, int pad_w) {
  if (use_tables) return {t.row_first[h], t.row_last[h], t.col_first[w], t.col_last[w]};
  return {window_first_output(h, pad_h, extent_h, stride_h),
          window_last_output(h, pad_h, stride_h, P),
          window_first_output(w, pad_w, extent_w, stride_w),
          window_last_output(w, pad_w, stride_w, Q)};
}

// The outputs whose windows hold input row (or column) h, for the backward gathers of the common
// square windows: kWindow taps, kStride apart from one output to the next, dilation 1 (template
// constants, as the forwards' kWindow; the launchers pick (2, 2), (3, 1), (3, 2)). The
// candidates are p = last - j for j in [0, kSpan): `last` the last output whose window starts at
// or before h, and in[j] whether output p exists and its window reaches h. Against the run-time
// window_span: two divisions by a constant (a shift or nothing) instead of four by a variable,
// and a fixed trip count, so that a gather's loads go out as one batch.
template <int kWindow, int kStride>
struct WindowCovers {
  static constexpr int kSpan = (kWindow + kStride - 1) / kStride;
  int last;
  bool in[kSpan];
};

template <int kWindow, int kStride>
__device__ __forceinline__ WindowCovers<kWindow, kStride> window_covers(int h, int pad,
                                                                        int outputs) {
  WindowCovers<kWindow, kStride> c;
  const int padded = h + pad;  // >= 0: the window of output 0 starts at -pad
  c.last = padded / kStride;
#pragma unroll
  for (int j = 0; j < c.kSpan; ++j) {
    const int p = c.last - j;
    c.in[j] = p >= 0 && p < outputs && padded - p * kStride < kWindow;
  }
  return c;
}

// The gathers' candidate outputs of input (h, w) for such a window, as one list: candidate
// e = j * kSpan + k is output (rows.last - j, cols.last - k), with its element index from the
// tensor's start (32 bits, formed unsigned: a candidate that does not exist may wrap; it is never
// read) and whether it holds the element. Visiting e from kCount - 1 down to 0 is the run-time loops'
// order (p ascending, then q), which keeps their bits.
template <int kWindow, int kStride>
struct WindowCandidates {
  static constexpr int kSpan = WindowCovers<kWindow, kStride>::kSpan;
  static constexpr int kCount = kSpan * kSpan;
  WindowCovers<kWindow, kStride> rows, cols;
  int at[kCount];
  bool in[kCount];
};

template <int kWindow, int kStride>
__device__ __forceinline__ WindowCandidates<kWindow, kStride> window_candidates(
    int h, int w, int pad_h, int pad_w, int P, int Q, int plane_offset, int pixel_stride) {
  WindowCandidates<kWindow, kStride> c;
  c.rows = window_covers<kWindow, kStride>(h, pad_h, P);
  c.cols = window_covers<kWindow, kStride>(w, pad_w, Q);
  const unsigned last =
      (unsigned)plane_offset + ((unsigned)c.rows.last * Q + (unsigned)c.cols.last) * pixel_stride;
#pragma unroll
  for (int j = 0; j < c.kSpan; ++j) {
#pragma unroll
    for (int k = 0; k < c.kSpan; ++k) {
      c.at[j * c.kSpan + k] = (int)(last - ((unsigned)j * Q + k) * pixel_stride);
      c.in[j * c.kSpan + k] = c.rows.in[j] && c.cols.in[k];
    }
  }
  return c;
}

// The taps of a kWindow x kWindow window (a template constant: the launchers pick 2 or 3 for
// the common square windows, 0 = sizes known only at run time). The window forwards are bound
// by issued instructions, not by memory (Nsight Compute on an H100, kernels/pool/NOTES.md
// "Session 23 on the H100"), so a tap costs as little as it can: its element index is one add of
// per-row and per-column steps to the index of tap (0, 0), counted from the tensor's first
// element in 32 bits (every pooled tensor has fewer than 2^31 elements: the launchers check),
// and it is in bounds when its row and its column are, each tested once per window.
template <int kWindow>
struct WindowTaps {
  unsigned first;               // element index of tap (0, 0); wraps for padding taps
  unsigned row_step, col_step;  // index steps between rows and between columns of taps
  bool row_in[kWindow], col_in[kWindow];
  int r0, s0;                   // first in-bounds row and column of taps; kWindow if none
};

template <int kWindow>
__device__ __forceinline__ WindowTaps<kWindow> window_taps(int plane_offset, int hstart,
                                                           int wstart, int dil_h, int dil_w,
                                                           int H, int W, int pixel_stride) {
  WindowTaps<kWindow> t;
  // Unsigned: a tap in the padding may lie before the tensor or past 2^31; it is never read.
  t.first = (unsigned)plane_offset + ((unsigned)hstart * W + (unsigned)wstart) * pixel_stride;
  t.row_step = (unsigned)dil_h * W * pixel_stride;
  t.col_step = (unsigned)dil_w * pixel_stride;
  t.r0 = t.s0 = kWindow;
#pragma unroll
  for (int r = kWindow - 1; r >= 0; --r) {
    t.row_in[r] = (unsigned)(hstart + r * dil_h) < (unsigned)H;
    if (t.row_in[r]) t.r0 = r;
  }
#pragma unroll
  for (int s = kWindow - 1; s >= 0; --s) {
    t.col_in[s] = (unsigned)(wstart + s * dil_w) < (unsigned)W;
    if (t.col_in[s]) t.s0 = s;
  }
  return t;
}

// The window's taps loaded as one batch into registers: every in-bounds tap's load is issued
// before any value is used, so each thread has several loads in flight instead of the run-time
// loops' one or two per round trip. Taps outside the input read as `fill` (the reduction's
// identity). v[r * kWindow + s][e] is channel e of tap (r, s): V consecutive channels (NHWC
// channel vectors, one load_packed per tap: the address aligned to as many; else V = 1).
template <int kWindow, int V, class A, class T>
__device__ __forceinline__ void load_window(A (&v)[kWindow * kWindow][V], const T* x,
                                            const WindowTaps<kWindow>& t, A fill) {
#pragma unroll
  for (int r = 0; r < kWindow; ++r) {
#pragma unroll
    for (int s = 0; s < kWindow; ++s) {
      const int index = (int)(t.first + r * t.row_step + s * t.col_step);
      if (t.row_in[r] && t.col_in[s]) {
        load_packed<T, V>(x + index, v[r * kWindow + s]);
      } else {
#pragma unroll
        for (int e = 0; e < V; ++e) v[r * kWindow + s][e] = fill;
      }
    }
  }
}

// Max pooling's update rule (PyTorch): a larger value or any NaN replaces the running maximum,
// so NaN propagates and its index is the last NaN of the window; ties keep the first maximum.
template <class A>
__device__ __forceinline__ bool max_takes(A value, A best) {
  return value > best || value != value;
}

}  // namespace gc
