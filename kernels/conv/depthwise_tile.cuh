// Building blocks of the shared-memory depthwise kernels: the forward tiled and sliding-window
// kernels (depthwise.cu) and the tiled weight gradient (wgrad_depthwise.cu).
#pragma once

#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "fast_divmod.cuh"

// The shape of a staged tile, `channels` x `rows` x `cols`, with the divisions that split a
// staging index into (channel, row, column) as multiply-highs: a tile is restaged per block
// (forward) or per pixel tile (weight gradient), and a 32-bit division by a runtime value costs
// ~20 instructions on the GPU, two per staged element. Build it once, outside the tile loop.
template <bool NHWC>
struct TileIndex {
  int channels, rows, cols;
  gc::FastDivmod outer;    // NHWC: idx -> (pixel, channel); NCHW: idx -> (channel, pixel)
  gc::FastDivmod by_cols;  // pixel -> (row, column)

  __device__ __forceinline__ TileIndex(int channels_, int rows_, int cols_)
      : channels(channels_), rows(rows_), cols(cols_),
        outer(NHWC ? channels_ : rows_ * cols_), by_cols(cols_) {}
};

// Stages a tile (TileIndex) of one image (x_image points at its first channel; xs: the tensor's
// packed strides), starting at row h_first and column w_first, into shared memory with
// (channel, row, column) strides (sc, sr, sq); zeros stand for whatever lies outside the H x W
// plane (padding, ragged tiles). Neighbouring threads read neighbouring addresses: channels fast
// for NHWC, columns fast for NCHW. THREADS threads take part.
template <int THREADS, bool NHWC, class T, class A>
__device__ __forceinline__ void stage_input_tile(A* in_tile, const T* x_image,
                                                 const gc::Strides4& xs, const TileIndex<NHWC>& t,
                                                 int h_first, int w_first, int H, int W,
                                                 int sc, int sr, int sq, int tid) {
  const int elements = t.channels * t.rows * t.cols;
  for (int idx = tid; idx < elements; idx += THREADS) {
    int c, pixel;
    if (NHWC)
      t.outer.divmod(idx, pixel, c);
    else
      t.outer.divmod(idx, c, pixel);
    int hh, ww;
    t.by_cols.divmod(pixel, hh, ww);
    const int h = h_first + hh;
    const int wx = w_first + ww;
    A v = A(0);
    if (unsigned(h) < unsigned(H) && unsigned(wx) < unsigned(W))
      v = gc::to_acc(x_image[c * xs.c + h * xs.h + wx * xs.w]);
    in_tile[c * sc + hh * sr + ww * sq] = v;
  }
}

// Outputs per thread along q. Odd, so that the runs of consecutive threads start RUN words
// apart and a warp's window loads fall in 32 distinct banks without padding the rows; and 7
// divides the widths of 224-pixel networks (112, 56, 28, 14, 7), so no run is cut short there.
constexpr int DEPTHWISE_WINDOW_RUN = 7;

// acc[i] += sum_s w_row[s] * row[(i + s) * step], s < S: one filter row applied to a
// run of RUN outputs (forward), or RUN taps' sums over a row of S outputs of dy (w_row: the dy
// row; weight gradient). The window win holds the RUN inputs of the current tap in a ring: at tap
// s, output i reads element s + i from slot (s + i) % RUN, and the element s drops out of the
// window after the tap, so its slot takes the element s + RUN. Unrolled by RUN taps, every slot
// index is a constant and the ring costs no moves. Reads row[0 .. (S + RUN - 1) * step]
// (one element past the last one used: the look-ahead of the last tap) and w_row[0 .. S - 1];
// with step 1 every load of the unrolled taps is at a constant offset.
template <int RUN, class A>
__device__ __forceinline__ void slide_filter_row(A (&acc)[RUN], const A* row, int step,
                                                 const A* w_row, int S) {
  A win[RUN];
#pragma unroll
  for (int i = 0; i < RUN; ++i) win[i] = row[i * step];
  int s = 0;
  for (; s + RUN <= S; s += RUN) {
#pragma unroll
    for (int u = 0; u < RUN; ++u) {
      const A wv = w_row[s + u];
#pragma unroll
      for (int i = 0; i < RUN; ++i) acc[i] += wv * win[(u + i) % RUN];
      win[u] = row[(s + u + RUN) * step];
    }
  }
  // The last S % RUN taps (s is a multiple of RUN, so the slots are where the loop left them).
#pragma unroll
  for (int u = 0; u < RUN - 1; ++u) {
    if (s + u >= S) break;
    const A wv = w_row[s + u];
#pragma unroll
    for (int i = 0; i < RUN; ++i) acc[i] += wv * win[(u + i) % RUN];
    win[u] = row[(s + u + RUN) * step];
  }
}
