// Depthwise forward convolution: groups == C, output channel k = c * multiplier + j reads input
// channel c only (weight (K, 1, R, S)); stride, dilation, asymmetric padding; NCHW and NHWC.
//
// conv2d_depthwise_direct  one thread per output element, taps straight from global memory (L1
//                          serves the R*S-fold reuse between neighbouring threads). FR/FS > 0
//                          unroll the common square filters (3, 5, 7); 0 means runtime R, S.
//                          Consecutive threads take the contiguous dimension (q for NCHW, k for
//                          NHWC). NHWC takes the filters as (R, S, K) (the launcher transposes
//                          them): a warp's 32 consecutive filters then read one tap as one run
//                          of 32 values, where (K, R, S) spreads them over R*S cache lines.
//                          One thread per output, 1-D grid.
// conv2d_depthwise_tiled   the large-kernel path: a block stages an input tile with its halo for
//                          `channel_tile` input channels, plus their filters, in shared memory,
//                          then computes a tile_p x tile_q output tile for those channels and all
//                          their multiplier outputs. Each thread computes DEPTHWISE_OUT_Q outputs
//                          along q (tile_q / DEPTHWISE_OUT_Q apart) from one broadcast weight
//                          load per tap. Shared tile layout follows the tensor's: [c][h][w] for
//                          NCHW (lanes along q), [h][w][c] for NHWC (lanes along c), so both the
//                          global loads and the shared reads are unit-stride across a warp.
//                          Grid (ceil(P/tile_p) * ceil(Q/tile_q), ceil(C/channel_tile), N),
//                          DEPTHWISE_THREADS threads; tile_q must be a multiple of
//                          DEPTHWISE_OUT_Q; dynamic shared memory (launch_depthwise.py):
//                            (round_up(channel_tile * IN_H * IN_W, 4) + channel_tile * multiplier
//                             * R * S) * sizeof(acc), IN_H = (tile_p - 1) * stride_h + (R - 1) * dil_h + 1.
// conv2d_depthwise_window  stride 1, dilation 1: like the tiled kernel, a block stages its input
//                          tile and filters in shared memory, but each thread computes a run of
//                          DEPTHWISE_WINDOW_RUN consecutive outputs along q from a register
//                          window of the input row that slides one element per tap: one input
//                          and one weight shared load per tap for RUN FMAs (the tiled kernel:
//                          four inputs and one weight for four). Threads skip the filter rows
//                          that fall on padding, so only the image's rows are staged. Layouts
//                          and the launch contract: the comment above the kernel.
// Every kernel takes `flip`: nonzero reads each filter rotated by 180 degrees, w[k][R-1-r][S-1-s],
// which makes the stride-1 data gradient of a multiplier-1 depthwise convolution a forward pass
// of these kernels over dy (launch_bwd_data.depthwise); the shared-memory kernels rotate while
// staging the filters, so their loops do not change.
#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "epilogue.cuh"
#include "flat_index.cuh"
#include "../conv/depthwise_tile.cuh"

template <class T, bool NHWC, int FR, int FS>
__global__ void conv2d_depthwise_direct(const T* __restrict__ x, const T* __restrict__ w, int flip,
                                        GC_CONV_SHAPE_PARAMS, const gc::FlatDecoder output_index,
                                        GC_EPILOGUE_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  const gc::Epilogue<T> epi = GC_EPILOGUE(T);
  const gc::Strides4 xs = gc::packed_strides<NHWC>(C, H, W);
  const int taps_r = FR > 0 ? FR : R;
  const int taps_s = FS > 0 ? FS : S;
  const int multiplier = K / C;
  // One output per thread and no grid-stride loop: the launcher covers all N*K*P*Q outputs
  // (fewer than 2^31 - 2^20 per launch), so idx never overflows.
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= N * K * P * Q) return;
  const gc::Coord4 o = gc::unflatten<NHWC>(idx, output_index);
  const int n = o.n, k = o.c, p = o.h, q = o.w;
  const int c = multiplier == 1 ? k : k / multiplier;  // a division only for multipliers
  const T* xc = x + n * xs.n + c * xs.c;
  const int taps = taps_r * taps_s;
  const int tap_stride = NHWC ? K : 1;  // (R, S, K) filters for NHWC, (K, R, S) for NCHW
  const T* wk = w + (NHWC ? k : k * taps) + (flip ? (taps - 1) * tap_stride : 0);
  const int h0 = p * stride_h - pad_h;
  const int w0 = q * stride_w - pad_w;
  A acc = 0;
  // main loop
  gc::accumulate_window<FR, FS>(acc, xc, wk, h0, w0, R, S, H, W, dil_h, dil_w, xs,
                                flip ? -tap_stride : tap_stride);
  // epilogue
  epi.store(n, k, p * Q + q, acc);
}

constexpr int DEPTHWISE_THREADS = 256;

constexpr int DEPTHWISE_OUT_Q = 4;

// Where element idx of a run of whole filters of `taps` taps is read from: itself, or with
// `flip` the same filter's tap taps - 1 - t (r, s -> R - 1 - r, S - 1 - s).
__device__ __forceinline__ int filter_tap(int idx, int taps, int flip) {
  return flip ? idx + taps - 1 - 2 * (idx % taps) : idx;
}

template <class T, bool NHWC>
__global__ void __launch_bounds__(DEPTHWISE_THREADS)
conv2d_depthwise_tiled(const T* __restrict__ x, const T* __restrict__ w, int flip, int tile_p,
                       int tile_q, int channel_tile,
                       GC_CONV_SHAPE_PARAMS, GC_EPILOGUE_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  extern __shared__ __align__(16) unsigned char smem_raw[];

  const int multiplier = K / C;
  const int RS = R * S;
  const int tiles_q = (Q + tile_q - 1) / tile_q;
  const int p0 = (blockIdx.x / tiles_q) * tile_p;
  const int q0 = (blockIdx.x % tiles_q) * tile_q;
  const int c0 = blockIdx.y * channel_tile;
  const int n = blockIdx.z;
  const int ct = min(channel_tile, C - c0);
  const int kt = ct * multiplier;  // output channels of this block: c0 * multiplier + [0, kt)

  const int in_h = (tile_p - 1) * stride_h + (R - 1) * dil_h + 1;
  const int in_w = (tile_q - 1) * stride_w + (S - 1) * dil_w + 1;
  const int in_hw = in_h * in_w;
  // Shared-tile strides of (channel, row, column).
  const int sc = NHWC ? 1 : in_hw;
  const int sr = NHWC ? in_w * ct : in_w;
  const int sq = NHWC ? ct : 1;
  A* in_tile = reinterpret_cast<A*>(smem_raw);
  A* w_tile = in_tile + ((ct * in_hw + 3) & ~3);  // [k_local][r * S + s]

  const gc::Strides4 xs = gc::packed_strides<NHWC>(C, H, W);
  const T* x_image = x + n * xs.n + c0 * xs.c;
  const int h_origin = p0 * stride_h - pad_h;
  const int w_origin = q0 * stride_w - pad_w;
  const int tid = threadIdx.x;

  stage_input_tile<DEPTHWISE_THREADS>(in_tile, x_image, xs, TileIndex<NHWC>(ct, in_h, in_w),
                                      h_origin, w_origin, H, W, sc, sr, sq, tid);
  // The block's filters are one contiguous run of the (K, 1, R, S) weight.
  const T* w_block = w + c0 * multiplier * RS;
  for (int idx = tid; idx < kt * RS; idx += DEPTHWISE_THREADS)
    w_tile[idx] = gc::to_acc(w_block[filter_tap(idx, RS, flip)]);
  __syncthreads();

  const gc::Epilogue<T> epi = GC_EPILOGUE(T);
  const int q_groups = tile_q / DEPTHWISE_OUT_Q;
  const int items = kt * tile_p * q_groups;
  for (int item = tid; item < items; item += DEPTHWISE_THREADS) {
    int k_local, p_local, q_group;
    if (NHWC) {  // lanes along channels
      k_local = item % kt;
      const int t = item / kt;
      q_group = t % q_groups;
      p_local = t / q_groups;
    } else {     // lanes along q
      q_group = item % q_groups;
      const int t = item / q_groups;
      p_local = t % tile_p;
      k_local = t / tile_p;
    }
    const int c_local = k_local / multiplier;
    A acc[DEPTHWISE_OUT_Q];
#pragma unroll
    for (int i = 0; i < DEPTHWISE_OUT_Q; ++i) acc[i] = A(0);
    // main loop
    for (int r = 0; r < R; ++r) {
      const A* in_row = in_tile + c_local * sc + (p_local * stride_h + r * dil_h) * sr;
      const A* w_row = w_tile + k_local * RS + r * S;
      for (int s = 0; s < S; ++s) {
        const A wv = w_row[s];
        const A* in_tap = in_row + s * dil_w * sq;
#pragma unroll
        for (int i = 0; i < DEPTHWISE_OUT_Q; ++i)
          acc[i] += wv * in_tap[(q_group + i * q_groups) * stride_w * sq];
      }
    }
    // epilogue
    const int p = p0 + p_local;
    if (p >= P) continue;
#pragma unroll
    for (int i = 0; i < DEPTHWISE_OUT_Q; ++i) {
      const int q = q0 + q_group + i * q_groups;
      if (q < Q) epi.store(n, c0 * multiplier + k_local, p * Q + q, acc[i]);
    }
  }
}

// ------------------------------------------------------------------ register sliding window

// Shared pitch of one filter in the window kernel: R * S made odd, so that the lanes of a warp
// reading the same tap of up to 32 different filters hit 32 distinct banks.
// launch_depthwise.py: window_filter_pitch.
__device__ __forceinline__ int window_filter_pitch(int taps) { return taps | 1; }

// Shared channel pitch of the NCHW window tile: the plane rounded up to a value congruent to
// tile_q modulo 32, so that run j of channel c starts at (c * runs + j) * RUN (mod 32) and the
// 32 runs of a warp (runs fastest, then channels) read 32 distinct banks (RUN is odd).
// launch_depthwise.py: window_channel_pitch.
__device__ __forceinline__ int window_channel_pitch(int plane, int tile_q) {
  return plane + ((tile_q - plane) & 31);
}

// Grid (ceil(P / tile_p) * ceil(Q / tile_q), ceil(C / channel_tile), N), tile_q = runs * RUN,
// DEPTHWISE_THREADS threads; needs stride 1 and dilation 1 (the launcher routes other cases to
// the direct and tiled kernels). The block stages, in the accumulator type:
//   inputs: the image rows [max(p0 - pad_h, 0), min(p0 - pad_h + tile_p + R - 1, H)) (at most
//           ROWS = min(tile_p + R - 1, H)) by IN_W = tile_q + S columns from q0 - pad_w (zeros
//           outside the image; the last column is the window's look-ahead), laid out
//           [c][row][column] with channel pitch window_channel_pitch(ROWS * IN_W, tile_q) for
//           NCHW and [row][column][c] for NHWC;
//   filters: [k_local][r * S + s] with pitch window_filter_pitch(R * S);
// dynamic shared memory (launch_depthwise.py: window_smem_bytes):
//   (round_up(channel_tile * channel_elements, 4)
//    + channel_tile * multiplier * window_filter_pitch(R * S)) * sizeof(acc).
// Work items (k_local, run, p_local), one thread each in turn: NCHW puts runs fastest along the
// lanes (each run's RUN outputs are contiguous in the output row), NHWC channels fastest.
// At least one block per SM: without the minimum, ptxas (CUDA 13, sm_80) aimed at 48 registers
// and spilled one outside the main loop.
template <class T, bool NHWC>
__global__ void __launch_bounds__(DEPTHWISE_THREADS, 1)
conv2d_depthwise_window(const T* __restrict__ x, const T* __restrict__ w, int flip, int tile_p,
                        int runs, int channel_tile,
                        GC_CONV_SHAPE_PARAMS, GC_EPILOGUE_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  constexpr int RUN = DEPTHWISE_WINDOW_RUN;
  extern __shared__ __align__(16) unsigned char smem_raw[];

  const int multiplier = K / C;
  const int RS = R * S;
  const int tile_q = runs * RUN;
  const int tiles_q = (Q + tile_q - 1) / tile_q;
  const int p0 = (blockIdx.x / tiles_q) * tile_p;
  const int q0 = (blockIdx.x % tiles_q) * tile_q;
  const int c0 = blockIdx.y * channel_tile;
  const int n = blockIdx.z;
  const int ct = min(channel_tile, C - c0);
  const int kt = ct * multiplier;

  // Filter rows that fall on padding rows are skipped, never read: stage the image rows only.
  const int h_origin = p0 - pad_h;
  const int h_lo = max(h_origin, 0);
  const int rows = max(min(h_origin + tile_p + R - 1, H) - h_lo, 0);
  const int in_w = tile_q + S;
  const int rows_alloc = min(tile_p + R - 1, H);
  // Shared-tile strides of (channel, row, column).
  const int sc = NHWC ? 1 : window_channel_pitch(rows_alloc * in_w, tile_q);
  const int sr = NHWC ? in_w * ct : in_w;
  const int sq = NHWC ? ct : 1;
  A* in_tile = reinterpret_cast<A*>(smem_raw);
  A* w_tile = in_tile + (((NHWC ? rows_alloc * in_w : sc) * ct + 3) & ~3);

  const gc::Strides4 xs = gc::packed_strides<NHWC>(C, H, W);
  const T* x_image = x + n * xs.n + c0 * xs.c;
  const int w_origin = q0 - pad_w;
  const int tid = threadIdx.x;

  stage_input_tile<DEPTHWISE_THREADS>(in_tile, x_image, xs, TileIndex<NHWC>(ct, rows, in_w),
                                      h_lo, w_origin, H, W, sc, sr, sq, tid);
  // The block's filters are one contiguous (k_local, tap) run of the (K, 1, R, S) weight.
  const int wp = window_filter_pitch(RS);
  const T* w_block = w + c0 * multiplier * RS;
  for (int idx = tid; idx < kt * RS; idx += DEPTHWISE_THREADS)
    w_tile[(idx / RS) * wp + idx % RS] = gc::to_acc(w_block[filter_tap(idx, RS, flip)]);
  __syncthreads();

  const gc::Epilogue<T> epi = GC_EPILOGUE(T);
  const int items = kt * runs * tile_p;
  for (int item = tid; item < items; item += DEPTHWISE_THREADS) {
    int k_local, run;
    int t;
    if (NHWC) {  // lanes along channels
      k_local = item % kt;
      t = item / kt;
      run = t % runs;
    } else {     // lanes along the runs of a row
      run = item % runs;
      t = item / runs;
      k_local = t % kt;
    }
    const int p = p0 + (NHWC ? t / runs : t / kt);
    const int q_run = q0 + run * RUN;
    if (p >= P || q_run >= Q) continue;
    A acc[RUN];
#pragma unroll
    for (int i = 0; i < RUN; ++i) acc[i] = A(0);
    // main loop: the filter rows whose input row is inside the image
    const int r_lo = max(0, pad_h - p);
    const int r_hi = min(R, H + pad_h - p);
    const int tile_row = p - pad_h - h_lo;  // of tap r = 0; rows r_lo.. are in [0, rows)
    const A* in_run = in_tile + (k_local / multiplier) * sc + run * RUN * sq;
    const A* w_k = w_tile + k_local * wp;
    for (int r = r_lo; r < r_hi; ++r)
      slide_filter_row<RUN>(acc, in_run + (tile_row + r) * sr, sq, w_k + r * S, S);
    // epilogue
#pragma unroll
    for (int i = 0; i < RUN; ++i) {
      if (q_run + i < Q) epi.store(n, c0 * multiplier + k_local, p * Q + q_run + i, acc[i]);
    }
  }
}
