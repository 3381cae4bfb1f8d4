// Direct forward convolution: any R x S, stride, dilation, groups and asymmetric padding.
//
// conv2d_direct_v1     one thread per output element, summing C/g * R * S products straight
//                      from global memory: the readable statement of what the tiled kernel
//                      computes (and its fallback when an input tile does not fit in shared
//                      memory).
// conv2d_direct_tiled  a block computes a TILE_P x TILE_Q output tile of one image for BLOCK_K
//                      filters of one group. Per chunk of `channel_tile` input channels it
//                      stages the input tile with its halo and the chunk's weights in shared
//                      memory; each thread then accumulates THREAD_K filters x THREAD_Q pixels
//                      in registers (THREAD_K * 4 FMAs per 4 input loads and THREAD_K / 4 vector
//                      weight loads). The tile is a template (DirectTile): BLOCK_K 16 / 8 / 4
//                      filters so that a group of few filters (ResNeXt: 4 or 8) does not leave
//                      most of the block idle, and a 16x16 pixel tile beside the 8x32 one for
//                      small planes (14x14 fills 196 of 512 outputs of 8x32 tiles, 196 of 256
//                      of one 16x16 tile); launch_direct.py picks the variant.
//                      Grid (ceil(P / TILE_P) * ceil(Q / TILE_Q), groups * ceil(K/g / BLOCK_K), N),
//                      DirectTile::THREADS threads, dynamic shared memory (launch_direct.py): the
//                      larger of the main loop's
//                        (round_up(channel_tile * IN_H * IN_W, 4) + channel_tile*R*S*BLOCK_K)
//                      with IN_H = (TILE_P - 1) * stride_h + (R - 1) * dil_h + 1 (IN_W likewise)
//                      and the epilogue's BLOCK_K * STAGE_LD, times sizeof(acc).
#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "epilogue.cuh"
#include "flat_index.cuh"
#include "simt_gemm.cuh"

template <class T, bool NHWC>
__global__ void conv2d_direct_v1(const T* __restrict__ x, const T* __restrict__ w,
                                 GC_CONV_SHAPE_PARAMS, const gc::FlatDecoder output_index,
                                 GC_EPILOGUE_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  const gc::Epilogue<T> epi = GC_EPILOGUE(T);
  const gc::Strides4 xs = gc::packed_strides<NHWC>(C, H, W);
  const int c_per_group = C / groups;
  const int k_per_group = K / groups;
  // One output per thread and no grid-stride loop: the launcher covers all N*K*P*Q outputs
  // (fewer than 2^31 - 2^20 per launch), so idx never overflows.
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= N * K * P * Q) return;
  // Consecutive threads take the output's contiguous dimension: q (NCHW) or k (NHWC).
  const gc::Coord4 o = gc::unflatten<NHWC>(idx, output_index);
  const int n = o.n, k = o.c, p = o.h, q = o.w;
  const int c0 = (k / k_per_group) * c_per_group;
  const int h0 = p * stride_h - pad_h;
  const int w0 = q * stride_w - pad_w;
  A acc = 0;
  // main loop
  for (int c = 0; c < c_per_group; ++c) {
    const T* xc = x + n * xs.n + (c0 + c) * xs.c;
    const T* wc = w + (k * c_per_group + c) * R * S;
    gc::accumulate_window<0, 0>(acc, xc, wc, h0, w0, R, S, H, W, dil_h, dil_w, xs);
  }
  // epilogue
  epi.store(n, k, p * Q + q, acc);
}

// Tile of conv2d_direct_tiled (mirrored in gpuconv/conv/launch_direct.py: DirectTile).
template <int BLOCK_K_, int TILE_P_, int TILE_Q_>
struct DirectTile {
  static constexpr int BLOCK_K = BLOCK_K_;  // filters per block
  static constexpr int TILE_P = TILE_P_;
  static constexpr int TILE_Q = TILE_Q_;
  static constexpr int THREAD_Q = 4;  // pixels per thread, Q_GROUPS apart along q
  static constexpr int THREAD_K = BLOCK_K < 8 ? BLOCK_K : 8;  // filters per thread
  static constexpr int Q_GROUPS = TILE_Q / THREAD_Q;
  static constexpr int PIXEL_GROUPS = TILE_P * Q_GROUPS;
  static constexpr int THREADS = PIXEL_GROUPS * (BLOCK_K / THREAD_K);
  static constexpr int TILE_PIXELS = TILE_P * TILE_Q;
  static constexpr int STAGE_LD = TILE_PIXELS + 1;  // epilogue stage row, odd: no conflicts
  static_assert(TILE_Q % THREAD_Q == 0 && BLOCK_K % THREAD_K == 0, "tile must split evenly");
  static_assert(THREAD_K % 4 == 0, "a thread's filters of one tap are whole 4-wide vectors");
};

template <class T, bool NHWC, int BLOCK_K, int TILE_P, int TILE_Q>
__global__ void __launch_bounds__(DirectTile<BLOCK_K, TILE_P, TILE_Q>::THREADS)
conv2d_direct_tiled(const T* __restrict__ x, const T* __restrict__ w, int channel_tile,
                    GC_CONV_SHAPE_PARAMS, GC_EPILOGUE_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  using Tile = DirectTile<BLOCK_K, TILE_P, TILE_Q>;
  using A = gc::acc_t<T>;
  extern __shared__ __align__(16) unsigned char smem_raw[];

  const int c_per_group = C / groups;
  const int k_per_group = K / groups;
  const int RS = R * S;
  const int tiles_q = (Q + Tile::TILE_Q - 1) / Tile::TILE_Q;
  const int p0 = (blockIdx.x / tiles_q) * Tile::TILE_P;
  const int q0 = (blockIdx.x % tiles_q) * Tile::TILE_Q;
  const int k_blocks = (k_per_group + Tile::BLOCK_K - 1) / Tile::BLOCK_K;
  const int group = blockIdx.y / k_blocks;
  const int k0 = (blockIdx.y % k_blocks) * Tile::BLOCK_K;
  const int n = blockIdx.z;

  const int in_h = (Tile::TILE_P - 1) * stride_h + (R - 1) * dil_h + 1;
  const int in_w = (Tile::TILE_Q - 1) * stride_w + (S - 1) * dil_w + 1;
  const int in_hw = in_h * in_w;
  const int h_origin = p0 * stride_h - pad_h;
  const int w_origin = q0 * stride_w - pad_w;
  // [channel][in_h][in_w], then the weights as [channel][r*S+s][BLOCK_K] (16-byte aligned) so
  // that a thread's THREAD_K filters of one tap are two vector loads.
  A* in_tile = reinterpret_cast<A*>(smem_raw);
  A* w_tile = in_tile + ((channel_tile * in_hw + 3) & ~3);

  const gc::Strides4 xs = gc::packed_strides<NHWC>(C, H, W);
  const T* x_image = x + n * xs.n + group * c_per_group * xs.c;
  const T* w_group = w + (group * k_per_group + k0) * c_per_group * RS;

  const int tid = threadIdx.x;
  const int pixel_group = tid % Tile::PIXEL_GROUPS;
  const int k_group = tid / Tile::PIXEL_GROUPS;
  const int p_local = pixel_group / Tile::Q_GROUPS;
  const int q_group = pixel_group % Tile::Q_GROUPS;

  A acc[Tile::THREAD_K][Tile::THREAD_Q];
#pragma unroll
  for (int kk = 0; kk < Tile::THREAD_K; ++kk)
#pragma unroll
    for (int i = 0; i < Tile::THREAD_Q; ++i) acc[kk][i] = A(0);

  for (int c0 = 0; c0 < c_per_group; c0 += channel_tile) {
    const int ct = min(channel_tile, c_per_group - c0);
    // Input tile with halo; zeros stand for the padding.
    for (int idx = tid; idx < ct * in_hw; idx += Tile::THREADS) {
      int c, hh, ww;
      if (NHWC) {  // channel-fast: neighbouring threads read neighbouring addresses
        c = idx % ct;
        const int pixel = idx / ct;
        hh = pixel / in_w;
        ww = pixel % in_w;
      } else {
        c = idx / in_hw;
        const int pixel = idx % in_hw;
        hh = pixel / in_w;
        ww = pixel % in_w;
      }
      const int h = h_origin + hh;
      const int wx = w_origin + ww;
      A v = A(0);
      if (unsigned(h) < unsigned(H) && unsigned(wx) < unsigned(W))
        v = gc::to_acc(x_image[(c0 + c) * xs.c + h * xs.h + wx * xs.w]);
      in_tile[c * in_hw + hh * in_w + ww] = v;
    }
    // Weights of the chunk, read along each filter's contiguous (c, r, s) run.
    for (int idx = tid; idx < Tile::BLOCK_K * ct * RS; idx += Tile::THREADS) {
      const int kk = idx / (ct * RS);
      const int tap = idx % (ct * RS);  // c * RS + r * S + s within the chunk
      A v = A(0);
      if (k0 + kk < k_per_group) v = gc::to_acc(w_group[kk * c_per_group * RS + c0 * RS + tap]);
      w_tile[tap * Tile::BLOCK_K + kk] = v;
    }
    __syncthreads();

    // main loop
    for (int c = 0; c < ct; ++c) {
      for (int r = 0; r < R; ++r) {
        const A* in_row = in_tile + c * in_hw + (p_local * stride_h + r * dil_h) * in_w;
        for (int s = 0; s < S; ++s) {
          A wv[Tile::THREAD_K];
          const A* w_tap =
              w_tile + ((c * R + r) * S + s) * Tile::BLOCK_K + k_group * Tile::THREAD_K;
#pragma unroll
          for (int v = 0; v < Tile::THREAD_K; v += 4) gc::load_fragment4(wv + v, w_tap + v);
          A in[Tile::THREAD_Q];
#pragma unroll
          for (int i = 0; i < Tile::THREAD_Q; ++i)
            in[i] = in_row[(q_group + i * Tile::Q_GROUPS) * stride_w + s * dil_w];
#pragma unroll
          for (int kk = 0; kk < Tile::THREAD_K; ++kk)
#pragma unroll
            for (int i = 0; i < Tile::THREAD_Q; ++i) acc[kk][i] += wv[kk] * in[i];
        }
      }
    }
    __syncthreads();
  }

  // epilogue, through shared memory (as SimtMma::epilogue): consecutive threads store
  // consecutive elements of the output's contiguous dimension, and the store code (bias,
  // residual, tanh/sigmoid) is compiled once instead of for each of the 32 accumulators. The
  // channel loop's last __syncthreads() freed the tiles.
  A* stage = reinterpret_cast<A*>(smem_raw);  // [BLOCK_K][STAGE_LD]
#pragma unroll
  for (int kk = 0; kk < Tile::THREAD_K; ++kk)
#pragma unroll
    for (int i = 0; i < Tile::THREAD_Q; ++i)
      stage[(k_group * Tile::THREAD_K + kk) * Tile::STAGE_LD + p_local * Tile::TILE_Q +
            q_group + i * Tile::Q_GROUPS] = acc[kk][i];
  __syncthreads();
  const gc::Epilogue<T> epi = GC_EPILOGUE(T);
  for (int e = tid; e < Tile::BLOCK_K * Tile::TILE_PIXELS; e += Tile::THREADS) {
    const int k_local = NHWC ? e % Tile::BLOCK_K : e / Tile::TILE_PIXELS;
    const int pixel = NHWC ? e / Tile::BLOCK_K : e % Tile::TILE_PIXELS;
    const int p = p0 + pixel / Tile::TILE_Q;
    const int q = q0 + pixel % Tile::TILE_Q;
    const int filter = k0 + k_local;
    if (p < P && q < Q && filter < k_per_group)
      epi.store(n, group * k_per_group + filter, p * Q + q,
                stage[k_local * Tile::STAGE_LD + pixel]);
  }
}
