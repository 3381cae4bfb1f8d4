// Depthwise forward convolution: groups == C, output channel k = c * multiplier + j reads input
// channel c only (weight (K, 1, R, S)); stride, dilation, asymmetric padding; NCHW and NHWC.
//
// conv2d_depthwise_direct  one thread per output element, taps straight from global memory (L1
//                          serves the R*S-fold reuse between neighbouring threads). FR/FS > 0
//                          unroll the common square filters (3, 5, 7); 0 means runtime R, S.
//                          Consecutive threads take the contiguous dimension (q for NCHW, k for
//                          NHWC). Grid-stride 1-D launch.
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
#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "epilogue.cuh"
#include "flat_index.cuh"

template <class T, bool NHWC, int FR, int FS>
__global__ void conv2d_depthwise_direct(const T* __restrict__ x, const T* __restrict__ w,
                                        int N, int C, int H, int W, int K, int R, int S, int P,
                                        int Q, int pad_h, int pad_w, int stride_h, int stride_w,
                                        int dil_h, int dil_w, int groups,
                                        T* out, int out_sN, int out_sK, int out_sPQ,
                                        const T* bias, const T* residual, int res_sN, int res_sK,
                                        int res_sPQ, int epilogue) {
  using A = gc::acc_t<T>;
  const gc::Epilogue<T> epi{out, out_sN, out_sK, out_sPQ, bias, residual,
                            res_sN, res_sK, res_sPQ, epilogue};
  const gc::Strides4 xs = gc::packed_strides<NHWC>(C, H, W);
  const int taps_r = FR > 0 ? FR : R;
  const int taps_s = FS > 0 ? FS : S;
  const int multiplier = K / C;
  // One output per thread and no grid-stride loop: the launcher covers all N*K*P*Q outputs
  // (fewer than 2^31 - 2^20 per launch), so idx never overflows.
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= N * K * P * Q) return;
  const gc::Coord4 o = gc::unflatten<NHWC>(idx, K, P, Q);
  const int n = o.n, k = o.c, p = o.h, q = o.w;
  const T* xc = x + n * xs.n + (k / multiplier) * xs.c;
  const T* wk = w + k * taps_r * taps_s;
  const int h0 = p * stride_h - pad_h;
  const int w0 = q * stride_w - pad_w;
  A acc = 0;
  // main loop
  gc::accumulate_window<FR, FS>(acc, xc, wk, h0, w0, R, S, H, W, dil_h, dil_w, xs);
  // epilogue
  epi.store(n, k, p * Q + q, acc);
}

constexpr int DEPTHWISE_THREADS = 256;
constexpr int DEPTHWISE_OUT_Q = 4;

template <class T, bool NHWC>
__global__ void __launch_bounds__(DEPTHWISE_THREADS)
conv2d_depthwise_tiled(const T* __restrict__ x, const T* __restrict__ w, int tile_p, int tile_q,
                       int channel_tile,
                       int N, int C, int H, int W, int K, int R, int S, int P, int Q,
                       int pad_h, int pad_w, int stride_h, int stride_w, int dil_h, int dil_w,
                       int groups,
                       T* out, int out_sN, int out_sK, int out_sPQ, const T* bias,
                       const T* residual, int res_sN, int res_sK, int res_sPQ, int epilogue) {
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

  for (int idx = tid; idx < ct * in_hw; idx += DEPTHWISE_THREADS) {
    int c, pixel;
    if (NHWC) {
      c = idx % ct;
      pixel = idx / ct;
    } else {
      c = idx / in_hw;
      pixel = idx % in_hw;
    }
    const int hh = pixel / in_w;
    const int ww = pixel % in_w;
    const int h = h_origin + hh;
    const int wx = w_origin + ww;
    A v = A(0);
    if (unsigned(h) < unsigned(H) && unsigned(wx) < unsigned(W))
      v = gc::to_acc(x_image[c * xs.c + h * xs.h + wx * xs.w]);
    in_tile[c * sc + hh * sr + ww * sq] = v;
  }
  // The block's filters are one contiguous run of the (K, 1, R, S) weight.
  const T* w_block = w + c0 * multiplier * RS;
  for (int idx = tid; idx < kt * RS; idx += DEPTHWISE_THREADS) w_tile[idx] = gc::to_acc(w_block[idx]);
  __syncthreads();

  const gc::Epilogue<T> epi{out, out_sN, out_sK, out_sPQ, bias, residual,
                            res_sN, res_sK, res_sPQ, epilogue};
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
