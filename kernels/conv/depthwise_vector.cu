// 3x3 depthwise convolution with the filters in registers and no staging: a thread computes a run
// of DEPTHWISE_VECTOR_RUN outputs along q on `rows` output rows, for 4 consecutive channels in
// NHWC (one vector load per input pixel) or one channel in NCHW (one load per input element).
// Launcher, contract and routing: gpuconv/conv/launch_depthwise.py ("vector"); design and the
// bandwidth arithmetic: kernels/conv/NOTES.md, "Depthwise NHWC: 4-channel vectors" and
// "Depthwise NCHW: runs of four outputs".
//
// conv2d_depthwise_vector<T, kStride, kNHWC>: one 3x3 filter per channel (K == C), stride
//   kStride (1 or 2) along both axes, dilation 1.
//   NHWC: C a multiple of 4, x, w and out aligned to gc::pack_elements<T, 4>() elements (4, or 2
//   for double: accesses of at most 16 bytes). Each thread owns 4 consecutive channels; its
//   9 x 4 filter taps stay in registers for all its rows, and every input pixel it reads is one
//   4-element vector load (16 bytes in fp32), so a warp's load covers 32 consecutive vectors of
//   one pixel row. Items: a flat 1-D grid of DEPTHWISE_VECTOR_THREADS-thread blocks over N x row
//   groups x runs x C/4, channel vectors fastest, so neighbouring threads share their input rows
//   through L1.
//   NCHW: no alignment or channel rule (scalar accesses). Each thread owns one channel; items
//   over N x C x row groups x runs, runs fastest, so a warp's loads of one filter row read one
//   stretch of an input row and neighbouring runs share its columns through L1. What it buys
//   over the one-output-per-thread direct kernel: the 9 taps loaded once per thread, and each
//   input element loaded once per thread for its 4 outputs along q and its `rows` output rows
//   (the rows the next output row shares stay in registers) instead of once per output.
// `flip` (nonzero) reads each filter rotated by 180 degrees, as in depthwise.cu: the stride-1
// data gradient as a forward pass over dy.
#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "epilogue.cuh"

constexpr int DEPTHWISE_VECTOR_THREADS = 128;
constexpr int DEPTHWISE_VECTOR_RUN = 4;  // outputs per thread along q
constexpr int DEPTHWISE_VECTOR_TAPS = 3;  // filter rows = filter columns (load_filters: 9 taps)

namespace {

// Channels per thread: a vector of 4 in NHWC, one in NCHW.
template <bool kNHWC>
__host__ __device__ constexpr int lanes() {
  return kNHWC ? 4 : 1;
}

// taps[t][j] = tap t of the filter of channel j, for the L consecutive filters of 9 taps each
// at `w` (kFlip: each filter rotated by 180 degrees, tap t read from 8 - t). A template, so
// that every tap index is a compile-time constant (the taps stay in registers).
template <bool kFlip, class T, int L>
__device__ __forceinline__ void load_filters(gc::acc_t<T> (&taps)[9][L], const T* w) {
  constexpr int FILTER = 9;
#pragma unroll
  for (int e = 0; e < L * FILTER; e += L) {
    gc::acc_t<T> v[L];
    gc::load_packed(w + e, v);
#pragma unroll
    for (int i = 0; i < L; ++i) {
      const int j = (e + i) / FILTER, t = (e + i) % FILTER;
      taps[kFlip ? FILTER - 1 - t : t][j] = v[i];
    }
  }
}

}  // namespace

// Blocks per SM the build must allow (__launch_bounds__). NHWC: one, which lifts ptxas's own
// cap: without it the float stride-2 build stopped at 128 registers and spilled 8 bytes (CUDA 13
// NVRTC, sm_80 and sm_90, measured with 256-thread blocks). NCHW: eight (64 registers), the
// occupancy it had before it kept rows between output rows (76-80 registers unbounded for
// float, no spill at 64); double four (64 spilled up to 208 bytes).
template <class T, bool kNHWC>
__host__ __device__ constexpr int min_blocks() {
  return kNHWC ? 1 : sizeof(T) > 4 ? 4 : 8;
}

template <class T, int kStride, bool kNHWC>
__global__ void __launch_bounds__(DEPTHWISE_VECTOR_THREADS, (min_blocks<T, kNHWC>()))
conv2d_depthwise_vector(const T* __restrict__ x, const T* __restrict__ w, int flip, int rows,
                        GC_CONV_SHAPE_PARAMS, GC_EPILOGUE_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  constexpr int L = lanes<kNHWC>();
  constexpr int TAPS = DEPTHWISE_VECTOR_TAPS;
  constexpr int RUN = DEPTHWISE_VECTOR_RUN;
  constexpr int COLS = (RUN - 1) * kStride + TAPS;  // input columns under a run's windows

  const int vectors = C / L;
  const int runs = (Q + RUN - 1) / RUN;
  const int row_groups = (P + rows - 1) / rows;
  // Fewer than 2^31 items: each covers at least one output element of a launch that the
  // launcher keeps under 2^31 elements.
  const int item = blockIdx.x * blockDim.x + threadIdx.x;
  if (item >= N * row_groups * runs * vectors) return;
  // The item's coordinates, fastest first: NHWC channel vectors, runs, row groups, images;
  // NCHW runs, row groups, channels, images.
  int rest = item;
  const auto peel = [&rest](int extent) {
    const int coordinate = rest % extent;
    rest /= extent;
    return coordinate;
  };
  int vector, run, group;
  if (kNHWC) {
    vector = peel(vectors);
    run = peel(runs);
    group = peel(row_groups);
  } else {
    run = peel(runs);
    group = peel(row_groups);
    vector = peel(vectors);
  }
  const int n = rest;
  const int c0 = vector * L;

  // The L channels' filters: 9 L contiguous elements of the (K, 1, 3, 3) weight (NHWC: aligned
  // like w, as c0 is a multiple of 4), read as 9 accesses into taps x lanes registers.
  A taps[TAPS * TAPS][L];
  if (flip) {
    load_filters<true>(taps, w + c0 * TAPS * TAPS);
  } else {
    load_filters<false>(taps, w + c0 * TAPS * TAPS);
  }

  const gc::Epilogue<T> epi = GC_EPILOGUE(T);
  const int pixel_stride = kNHWC ? C : 1;
  const T* x_image = x + (kNHWC ? n * H * W * C + c0 : (n * C + c0) * H * W);
  const int q0 = run * RUN;
  const int w0 = q0 * kStride - pad_w;
  const int p_begin = group * rows;
  const int p_end = min(p_begin + rows, P);
  // The input rows under the current output row's windows, COLS pixels each (columns and rows
  // outside the image read as 0). NCHW keeps the TAPS - kStride rows that the next output row
  // shares and loads only kStride new ones, so that each input row is loaded once per thread,
  // not TAPS / kStride times (kernels/conv/NOTES.md "Depthwise NCHW: rows kept between output
  // rows"). NHWC loads every row and uses it at once, as before: keeping its 4-channel vectors
  // took 139-254 registers where it has 104-236.
  constexpr int KEPT = kNHWC ? 0 : (TAPS > kStride ? TAPS - kStride : 0);
  A window[TAPS][COLS][L];
  // acc[i] += the products of window row r's pixels with the taps of filter row r.
  const auto accumulate = [&](A (&acc)[RUN][L], int r) {
#pragma unroll
    for (int col = 0; col < COLS; ++col) {
#pragma unroll
      for (int i = 0; i < RUN; ++i) {
        const int s = col - i * kStride;  // the tap of output i that reads this column
        if (s < 0 || s >= TAPS) continue;
#pragma unroll
        for (int j = 0; j < L; ++j) acc[i][j] += window[r][col][j] * taps[r * TAPS + s][j];
      }
    }
  };
  for (int p = p_begin; p < p_end; ++p) {
    A acc[RUN][L];
#pragma unroll
    for (int i = 0; i < RUN; ++i) {
#pragma unroll
      for (int j = 0; j < L; ++j) acc[i][j] = A(0);
    }
    // main loop: the window's rows, then (NCHW) their products; the loads are independent of
    // the FMAs, so the compiler issues them early.
    const int h0 = p * kStride - pad_h;
    const bool first = p == p_begin;
#pragma unroll
    for (int r = 0; r < TAPS; ++r) {
      const int h = h0 + r;
      const bool row_inside = h >= 0 && h < H;
      if (r < KEPT && !first) {
#pragma unroll
        for (int col = 0; col < COLS; ++col) {
#pragma unroll
          for (int j = 0; j < L; ++j) window[r][col][j] = window[r + kStride][col][j];
        }
        continue;
      }
      if (kNHWC && !row_inside) continue;  // no products: nothing to load
      const T* x_row = x_image + (row_inside ? h : 0) * W * pixel_stride;
#pragma unroll
      for (int col = 0; col < COLS; ++col) {
        const int wc = w0 + col;
#pragma unroll
        for (int j = 0; j < L; ++j) window[r][col][j] = A(0);
        if (row_inside && wc >= 0 && wc < W) {
          gc::load_packed(x_row + wc * pixel_stride, window[r][col]);
        }
      }
      if (kNHWC) accumulate(acc, r);
    }
    if (!kNHWC) {
#pragma unroll
      for (int r = 0; r < TAPS; ++r) accumulate(acc, r);
    }
    // epilogue
#pragma unroll
    for (int i = 0; i < RUN; ++i) {
      if (q0 + i >= Q) continue;
      if constexpr (kNHWC) {
        epi.store_vector(n, c0, p * Q + q0 + i, acc[i]);
      } else {
        epi.store(n, c0, p * Q + q0 + i, acc[i][0]);
      }
    }
  }
}
