// Channels-last 3x3 depthwise convolution with 4-channel vectors: the MobileNet layers in NHWC.
// Launcher, contract and routing: gpuconv/conv/launch_depthwise.py ("vector"); design and the
// bandwidth arithmetic: kernels/conv/NOTES.md, "Depthwise NHWC: 4-channel vectors".
//
// conv2d_depthwise_vector<T, kStride>: NHWC, one 3x3 filter per channel (K == C), stride
//   kStride (1 or 2) along both axes, dilation 1, C a multiple of 4, x, w and out aligned to
//   gc::pack_elements<T, 4>() elements (4, or 2 for double: accesses of at most 16 bytes).
//   Each thread owns 4 consecutive channels of a run of DEPTHWISE_VECTOR_RUN outputs along q on
//   `rows` consecutive output rows: its 9 x 4 filter taps stay in registers for all of them, and
//   every input pixel it reads is one 4-element vector load (16 bytes in fp32), so a warp's load
//   covers 32 consecutive vectors of one pixel row. One launch covers every item (a flat 1-D
//   grid of DEPTHWISE_VECTOR_THREADS-thread blocks over N x row groups x runs x C/4; channel
//   vectors fastest, so neighbouring threads share their input rows through L1).
// `flip` (nonzero) reads each filter rotated by 180 degrees, as in depthwise.cu: the stride-1
// data gradient as a forward pass over dy.
#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "epilogue.cuh"

constexpr int DEPTHWISE_VECTOR_THREADS = 128;
constexpr int DEPTHWISE_VECTOR_RUN = 4;  // outputs per thread along q
constexpr int DEPTHWISE_VECTOR_TAPS = 3;  // filter rows = filter columns (load_filters: 9 taps)

namespace {

constexpr int kLanes = 4;  // channels per vector

// taps[t][j] = tap t of the filter of channel j, for the 4 consecutive filters of 9 taps each
// at `w` (kFlip: each filter rotated by 180 degrees, tap t read from 8 - t). A template, so
// that every tap index is a compile-time constant (the taps stay in registers).
template <bool kFlip, class T>
__device__ __forceinline__ void load_filters(gc::acc_t<T> (&taps)[9][kLanes], const T* w) {
  constexpr int FILTER = 9;
#pragma unroll
  for (int e = 0; e < kLanes * FILTER; e += kLanes) {
    gc::acc_t<T> v[kLanes];
    gc::load_packed(w + e, v);
#pragma unroll
    for (int i = 0; i < kLanes; ++i) {
      const int j = (e + i) / FILTER, t = (e + i) % FILTER;
      taps[kFlip ? FILTER - 1 - t : t][j] = v[i];
    }
  }
}

}  // namespace

// The minimum of one block per SM lifts ptxas's own cap: without it the float stride-2 build
// stopped at 128 registers and spilled 8 bytes (CUDA 13 NVRTC, sm_80 and sm_90, measured with
// 256-thread blocks).
template <class T, int kStride>
__global__ void __launch_bounds__(DEPTHWISE_VECTOR_THREADS, 1)
conv2d_depthwise_vector(const T* __restrict__ x, const T* __restrict__ w, int flip, int rows,
                        GC_CONV_SHAPE_PARAMS, GC_EPILOGUE_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  constexpr int TAPS = DEPTHWISE_VECTOR_TAPS;
  constexpr int RUN = DEPTHWISE_VECTOR_RUN;
  constexpr int COLS = (RUN - 1) * kStride + TAPS;  // input columns under a run's windows

  const int vectors = C / kLanes;
  const int runs = (Q + RUN - 1) / RUN;
  const int row_groups = (P + rows - 1) / rows;
  // Fewer than 2^31 items: each is at least 4 output elements of a launch that the launcher
  // keeps under 2^31 elements.
  const int item = blockIdx.x * blockDim.x + threadIdx.x;
  if (item >= N * row_groups * runs * vectors) return;
  const int vector = item % vectors;
  int rest = item / vectors;
  const int run = rest % runs;
  rest /= runs;
  const int group = rest % row_groups;
  const int n = rest / row_groups;
  const int c0 = vector * kLanes;

  // The 4 channels' filters: 36 contiguous elements of the (K, 1, 3, 3) weight (aligned like
  // w, as c0 is a multiple of 4), read as 9 vectors into taps x lanes registers.
  A taps[TAPS * TAPS][kLanes];
  if (flip) {
    load_filters<true>(taps, w + c0 * TAPS * TAPS);
  } else {
    load_filters<false>(taps, w + c0 * TAPS * TAPS);
  }

  const gc::Epilogue<T> epi = GC_EPILOGUE(T);
  const T* x_image = x + n * H * W * C + c0;
  const int q0 = run * RUN;
  const int w0 = q0 * kStride - pad_w;
  const int p_end = min((group + 1) * rows, P);
  for (int p = group * rows; p < p_end; ++p) {
    A acc[RUN][kLanes];
#pragma unroll
    for (int i = 0; i < RUN; ++i) {
#pragma unroll
      for (int j = 0; j < kLanes; ++j) acc[i][j] = A(0);
    }
    // main loop: the filter rows whose input row is inside the image. Each of a row's COLS
    // input vectors (columns outside the image read as 0) feeds the outputs whose window
    // holds it; the loads are independent of the FMAs, so the compiler issues them early.
    const int h0 = p * kStride - pad_h;
#pragma unroll
    for (int r = 0; r < TAPS; ++r) {
      const int h = h0 + r;
      if (h < 0 || h >= H) continue;
      const T* x_row = x_image + h * W * C;
#pragma unroll
      for (int col = 0; col < COLS; ++col) {
        const int wc = w0 + col;
        A v[kLanes] = {};
        if (wc >= 0 && wc < W) gc::load_packed(x_row + wc * C, v);
#pragma unroll
        for (int i = 0; i < RUN; ++i) {
          const int s = col - i * kStride;  // the tap of output i that reads this column
          if (s < 0 || s >= TAPS) continue;
#pragma unroll
          for (int j = 0; j < kLanes; ++j) acc[i][j] += v[j] * taps[r * TAPS + s][j];
        }
      }
    }
    // epilogue
#pragma unroll
    for (int i = 0; i < RUN; ++i) {
      if (q0 + i < Q) epi.store_vector(n, c0, p * Q + q0 + i, acc[i]);
    }
  }
}
