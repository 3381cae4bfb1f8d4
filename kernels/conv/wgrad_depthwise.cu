// Depthwise weight gradient (C/groups == 1; filter k = c * multiplier + j reads input channel c):
//   dw[k][0][r][s] = sum_{n,p,q} dy[n][k][p][q] * x[n][c][p*sh - pad_h + r*dh][q*sw - pad_w + s*dw]
// in logical (N, C, H, W) indices, whatever the layout.
//
// conv2d_wgrad_depthwise_tiled   (NCHW and NHWC; launch_bwd_weight.depthwise_tile_config) stages
//   tiles of dy and x in shared memory and keeps each thread on one run of taps for the whole
//   split, so every x and dy element is read from DRAM once and the R*S-fold reuse happens in
//   registers and shared memory. Its header comment says how.
// conv2d_wgrad_depthwise_nhwc    the fallback for a tile that does not fit in shared memory,
//   NHWC (NCHW falls back to conv2d_wgrad_direct, whose one-block-per-filter layout is the
//   depthwise one). Block (32, WGRAD_DEPTHWISE_ROWS): the 32 lanes of a warp take 32
//   consecutive filters, so every dy and x read of a warp is one contiguous run of channels; the
//   rows take interleaved pixels of the split, then sum in a fixed order through shared memory
//   (deterministic). Taps are the outer loop, so each thread keeps one accumulator; the split's
//   pixels are re-read per tap from L1/L2. Grid: (ceil(K / 32), splits). Sums go through
//   WgradEpilogue (WGRAD_STORE or WGRAD_PARTIAL).
#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "fast_divmod.cuh"
#include "../conv/depthwise_tile.cuh"
#include "../conv/wgrad_operands.cuh"

constexpr int WGRAD_DEPTHWISE_LANES = 32;
constexpr int WGRAD_DEPTHWISE_ROWS = 8;

template <class T>
__global__ void __launch_bounds__(WGRAD_DEPTHWISE_LANES * WGRAD_DEPTHWISE_ROWS)
conv2d_wgrad_depthwise_nhwc(const T* __restrict__ x, const T* __restrict__ dy,
                            GC_CONV_SHAPE_PARAMS,
                            int splits, int pixels_per_split, T* dw, gc::acc_t<T>* ws, int mode) {
  GC_CONV_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  __shared__ A partial[WGRAD_DEPTHWISE_ROWS][WGRAD_DEPTHWISE_LANES];

  const int lane = threadIdx.x;
  const int row = threadIdx.y;
  const int k = blockIdx.x * WGRAD_DEPTHWISE_LANES + lane;
  const bool active = k < K;
  const int c = (active ? k : 0) / (K / C);
  const int split = blockIdx.y;
  const gc::PixelRange range = gc::split_range(split, pixels_per_split, N * P * Q);
  const gc::FastDivmod div_pq(P * Q);
  const gc::FastDivmod div_q(Q);
  const gc::WgradEpilogue<T> epi{dw, ws, K * R * S, mode};

  // main loop: per tap, this split's pixels, then a fixed-order sum over the rows and its store
  for (int r = 0; r < R; ++r) {
    for (int s = 0; s < S; ++s) {
      A acc = A(0);
      if (active) {
        for (int j = range.begin + row; j < range.end; j += WGRAD_DEPTHWISE_ROWS) {
          int n, pq, p, q;
          div_pq.divmod(j, n, pq);
          div_q.divmod(pq, p, q);
          const int h = p * stride_h - pad_h + r * dil_h;
          const int w = q * stride_w - pad_w + s * dil_w;
          if (unsigned(h) < unsigned(H) && unsigned(w) < unsigned(W))
            acc += gc::to_acc(dy[j * K + k]) * gc::to_acc(x[((n * H + h) * W + w) * C + c]);
        }
      }
      partial[row][lane] = acc;
      __syncthreads();
      if (row == 0 && active) {
        A total = partial[0][lane];
        for (int i = 1; i < WGRAD_DEPTHWISE_ROWS; ++i) total += partial[i][lane];
        epi.store(split, (k * R + r) * S + s, total);
      }
      __syncthreads();  // partial is rewritten by the next tap
    }
  }
}

// ------------------------------------------------------------------ tiled, register runs of taps

constexpr int WGRAD_DEPTHWISE_TILE_THREADS = 256;

// Shared pitches: odd, so that lanes on different channels or rows of the same column hit
// different banks (launch_bwd_weight.py: depthwise_tile_pitches).
__device__ __forceinline__ int odd_pitch(int elements) { return elements | 1; }

// Grid (ceil(C / channel_tile) * tap_chunks, splits), WGRAD_DEPTHWISE_TILE_THREADS threads.
//
// Tap items: filter k_local of the block's kt = channel_tile * multiplier filters, filter row r
// and a run of RUN = DEPTHWISE_WINDOW_RUN taps s0 = g * RUN .. s0 + RUN - 1 along s (G =
// ceil(S / RUN) runs; taps past S are computed and dropped), k_local fastest: kt * R * G items.
// A thread owns one item and RUN accumulators for the whole launch. With `parts` > 1 (the
// launcher's choice when kt * R * G * parts <= THREADS), part j of the block's threads takes the
// tile rows p_local = j, j + parts, ...; the parts are summed in index order at the end. With
// parts == 1 and more items than threads, blockIdx.x also picks a chunk of THREADS items
// (tap_chunks = ceil(kt * R * G / THREADS); channel_tile is 1 then).
//
// Pixel tiles: tile_p x tile_q outputs of one image, N * ceil(P / tile_p) * ceil(Q / tile_q) of
// them in (n, row, column) order; split y takes tiles [y * tiles_per_split, ...). Per tile the
// block stages, in the accumulator type, [channel][row][column] with odd pitches:
//   dy: kt channels x tile_p x tile_q from (p0, q0);
//   x:  channel_tile channels x X_ROWS x X_COLS from (p0 * sh - pad_h, q0 * sw - pad_w),
//       X_ROWS = (tile_p - 1) * sh + (R - 1) * dh + 1,
//       X_COLS = max(tile_q + G * RUN, (tile_q - 1) * sw + (G * RUN - 1) * dw + 1)
//       (the slide's look-ahead, and the dropped taps past S);
// zeros outside the planes. Then each thread adds, for its rows whose tap row lands inside the
// image, acc[i] += dy[p][q] * x[p * sh + r * dh][q * sw + (s0 + i) * dw] over the tile's columns:
// with stride 1 and dilation 1 a register window slides along the x row (slide_filter_row: one x
// and one dy shared load per RUN FMAs), else a plain loop. Dynamic shared memory
// (launch_bwd_weight.depthwise_tile_smem_bytes): max(staged elements, THREADS * RUN)
// accumulators; the part sums reuse it.
// Every split stores its sums through WgradEpilogue (WGRAD_STORE or the partial modes; a split
// without tiles stores zeros), never atomics: deterministic.
// Blocks per SM the registers must allow: four (64 registers, as launch_bwd_weight's splits
// assume) for the 2- and 4-byte types; with fp64's window and accumulators in 64 registers
// ptxas (CUDA 13) spilled, so one there (~115 registers, two blocks). The 2-byte types in NHWC
// sat at exactly 64 and spilled 12 bytes once the shape became one struct argument (the
// conversions to float need a few more registers): three blocks there (up to 85 registers).
template <class T, bool NHWC>
struct WgradDepthwiseMinBlocks {
  static constexpr int value = sizeof(gc::acc_t<T>) == 8 ? 1 : (NHWC && sizeof(T) == 2 ? 3 : 4);
};

template <class T, bool NHWC>
__global__ void
__launch_bounds__(WGRAD_DEPTHWISE_TILE_THREADS, WgradDepthwiseMinBlocks<T, NHWC>::value)
conv2d_wgrad_depthwise_tiled(const T* __restrict__ x, const T* __restrict__ dy, int tile_p,
                             int tile_q, int channel_tile, int parts, int tiles_per_split,
                             GC_CONV_SHAPE_PARAMS, T* dw, gc::acc_t<T>* ws, int mode) {
  GC_CONV_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  constexpr int THREADS = WGRAD_DEPTHWISE_TILE_THREADS;
  constexpr int RUN = DEPTHWISE_WINDOW_RUN;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* smem = reinterpret_cast<A*>(smem_raw);

  const int multiplier = K / C;
  const int runs_s = (S + RUN - 1) / RUN;
  const int kt = channel_tile * multiplier;
  const int tap_items = kt * R * runs_s;
  const int tap_chunks = parts > 1 ? 1 : (tap_items + THREADS - 1) / THREADS;
  const int c0 = (blockIdx.x / tap_chunks) * channel_tile;
  const int chunk = blockIdx.x % tap_chunks;
  const int ct = min(channel_tile, C - c0);
  const int split = blockIdx.y;
  const int tid = threadIdx.x;

  // This thread's item: (k_local, r, g) and its part of the tile rows.
  const int per_part = parts > 1 ? tap_items : THREADS;
  const int part = tid / per_part;
  const int item = chunk * THREADS + tid % per_part;
  const int k_local = item % kt;
  const int r = (item / kt) % R;
  const int s0 = (item / (kt * R)) * RUN;
  const bool active = part < parts && item < tap_items && k_local < ct * multiplier;
  const int c_local = k_local / multiplier;

  // Staged tiles.
  const int x_rows = (tile_p - 1) * stride_h + (R - 1) * dil_h + 1;
  const int x_cols = max(tile_q + runs_s * RUN,
                         (tile_q - 1) * stride_w + (runs_s * RUN - 1) * dil_w + 1);
  const int x_row_pitch = odd_pitch(x_cols);
  const int x_channel_pitch = odd_pitch(x_rows * x_row_pitch);
  const int dy_row_pitch = odd_pitch(tile_q);
  const int dy_channel_pitch = odd_pitch(tile_p * dy_row_pitch);
  A* x_tile = smem;
  A* dy_tile = smem + ct * x_channel_pitch;
  const gc::Strides4 xs = gc::packed_strides<NHWC>(C, H, W);
  const gc::Strides4 ys = gc::packed_strides<NHWC>(K, P, Q);
  const bool unit_steps = stride_w == 1 && dil_w == 1;
  const TileIndex<NHWC> x_index(ct, x_rows, x_cols);
  const TileIndex<NHWC> dy_index(ct * multiplier, tile_p, tile_q);

  const int tiles_q = (Q + tile_q - 1) / tile_q;
  const int tiles_image = ((P + tile_p - 1) / tile_p) * tiles_q;
  const int tile_end = min((split + 1) * tiles_per_split, N * tiles_image);

  A acc[RUN];
#pragma unroll
  for (int i = 0; i < RUN; ++i) acc[i] = A(0);
  // main loop: the split's pixel tiles
  for (int tile = split * tiles_per_split; tile < tile_end; ++tile) {
    const int n = tile / tiles_image;
    const int p0 = ((tile % tiles_image) / tiles_q) * tile_p;
    const int q0 = (tile % tiles_q) * tile_q;
    __syncthreads();  // the previous tile's reads are done
    stage_input_tile<THREADS>(x_tile, x + n * xs.n + c0 * xs.c, xs, x_index,
                              p0 * stride_h - pad_h, q0 * stride_w - pad_w, H, W,
                              x_channel_pitch, x_row_pitch, 1, tid);
    stage_input_tile<THREADS>(dy_tile, dy + n * ys.n + c0 * multiplier * ys.c, ys, dy_index,
                              p0, q0, P, Q, dy_channel_pitch, dy_row_pitch, 1, tid);
    __syncthreads();
    if (!active) continue;
    const int rows = min(tile_p, P - p0);
    const int cols = min(tile_q, Q - q0);
    for (int p_local = part; p_local < rows; p_local += parts) {
      // Rows whose tap row r falls on the padding add nothing: skip them.
      const int h = (p0 + p_local) * stride_h - pad_h + r * dil_h;
      if (unsigned(h) >= unsigned(H)) continue;
      const A* x_row = x_tile + c_local * x_channel_pitch +
                       (p_local * stride_h + r * dil_h) * x_row_pitch + s0 * dil_w;
      const A* dy_row = dy_tile + k_local * dy_channel_pitch + p_local * dy_row_pitch;
      if (unit_steps) {
        slide_filter_row<RUN>(acc, x_row, 1, dy_row, cols);
      } else {
        for (int q = 0; q < cols; ++q) {
          const A d = dy_row[q];
#pragma unroll
          for (int i = 0; i < RUN; ++i) acc[i] += d * x_row[q * stride_w + i * dil_w];
        }
      }
    }
  }
  // epilogue: the parts' sums in part order, then one store per tap
  __syncthreads();  // done with the tiles: their memory holds the parts' sums now
  if (active && part > 0) {
#pragma unroll
    for (int i = 0; i < RUN; ++i) smem[tid * RUN + i] = acc[i];
  }
  __syncthreads();
  if (!active || part > 0) return;
  const gc::WgradEpilogue<T> epi{dw, ws, K * R * S, mode};
  const int k = c0 * multiplier + k_local;
#pragma unroll
  for (int i = 0; i < RUN; ++i) {
    A total = acc[i];
    for (int j = 1; j < parts; ++j) total += smem[(j * per_part + tid) * RUN + i];
    if (s0 + i < S) epi.store(split, (k * R + r) * S + s0 + i, total);
  }
}
