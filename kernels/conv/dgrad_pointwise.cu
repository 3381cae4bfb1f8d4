// Pointwise (1x1) data gradient as a batched GEMM straight on the tensors: dx = W^T * dy at the
// input pixels the stride grid reaches, h = p * stride_h - pad_h, w = q * stride_w - pad_w (a
// 1x1 filter reaches no other pixel: with a stride > 1 the launcher fills dx with zeros, or the
// bias, beforehand, and the GEMM runs over dy's P*Q pixels only, never over inserted zeros).
//
// NCHW (conv2d_dgrad_pointwise_nchw): one GEMM per group over all images,
//   dx[:, g] (C/g x N*P*Q) = W_g^T (C/g x K/g) * dy[:, g] (K/g x N*P*Q), the pixel columns
//   spanning the images (NchwPixelSource) so that small planes (7x7) still fill a tile;
//   grid (ceil(N*P*Q / BLOCK_N), ceil(C/g / BLOCK_M), groups) (pixel tiles along x, which has
//   no 65535 limit). W^T is read column-major
//   straight from the (K, C/g) weights, dy pixel-fast; lanes run along the pixels.
// NHWC (conv2d_dgrad_pointwise_nhwc): one GEMM per group over all images,
//   dx (N*P*Q x C/g) = dy (N*P*Q x K/g) * W_g (K/g x C/g); grid (ceil(N*P*Q / BLOCK_M),
//   ceil(C/g / BLOCK_N), groups); dy rows and W rows are channel-contiguous.
// Both run the SIMT main loop of simt_gemm.cuh. Each dx element is written once (deterministic).
// Split-K (split_k.cuh), for grids too small for the GPU (batch 1, K = 1024-2048 filters): grid
// z = groups * splits, each split a share of the group's filters (whole k-tiles), its operands
// offset to its first filter; the splits' sums go to `partial` over dy's pixel grid in dx's
// layout, (n, c, pq), and conv2d_dgrad_pointwise_split_epilogue adds them in split order and
// stores them at the pixels they reach.
#include "conv_operands.cuh"
#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "epilogue.cuh"
#include "fast_divmod.cuh"
#include "simt_gemm.cuh"
#include "split_k.cuh"
#include "../conv/dgrad_operands.cuh"

// 4 blocks per SM for the float accumulators: the split-K operands moved ptxas from 63-75 to
// 79-80 registers (3 blocks of 256 threads); asked for 4, it fits 64 with no spill (sm_80,
// sm_90). double keeps no minimum (at 64 it spills 2 KiB).
#define GC_DGRAD_POINTWISE_LAUNCH_BOUNDS(T, BLOCK_M, BLOCK_N, THREAD_M, THREAD_N)       \
  __launch_bounds__(((BLOCK_M) / (THREAD_M)) * ((BLOCK_N) / (THREAD_N)),              \
                    sizeof(gc::acc_t<T>) == 4 ? 4 : 0)

namespace {

// The dx pixel h * W + w that output pixel (p, q) of a 1x1 filter reads, or -1 where it reads
// the padding.
__device__ __forceinline__ int reached_pixel(int p, int q, int stride_h, int stride_w, int pad_h,
                                             int pad_w, int H, int W) {
  const int h = p * stride_h - pad_h;
  const int x_w = q * stride_w - pad_w;
  if (unsigned(h) >= unsigned(H) || unsigned(x_w) >= unsigned(W)) return -1;
  return h * W + x_w;
}

// Where a block's sum for dy pixel pq of image n and input channel c goes: dx through the
// epilogue with one split, else the partial sums over dy's pixel grid (in dx's layout).
template <class T, bool NHWC>
__device__ __forceinline__ void store_dx(const gc::Epilogue<T>& epi, gc::acc_t<T>* partial,
                                         int splits, int split, int n, int c, int pq, int hw,
                                         int C, int PQ, int N, gc::acc_t<T> v) {
  if (splits == 1) {
    epi.store(n, c, hw, v);
    return;
  }
  const int at = NHWC ? (n * PQ + pq) * C + c : (n * C + c) * PQ + pq;
  partial[(long long)split * N * C * PQ + at] = v;
}

}  // namespace

template <class T, int BLOCK_M, int BLOCK_N, int BLOCK_K, int THREAD_M, int THREAD_N>
__global__ void GC_DGRAD_POINTWISE_LAUNCH_BOUNDS(T, BLOCK_M, BLOCK_N, THREAD_M, THREAD_N)
conv2d_dgrad_pointwise_nchw(const T* __restrict__ dy, const T* __restrict__ w,
                            GC_CONV_SHAPE_PARAMS,
                            T* dx, const T* bias, int epilogue, GC_SPLIT_K_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  using Tile = gc::SimtTile<BLOCK_M, BLOCK_N, BLOCK_K, THREAD_M, THREAD_N>;
  using WeightSource = gc::ColumnMajorSource<T>;
  using DySource = gc::NchwPixelSource<T>;
  using LoaderA = gc::MnContiguousLoader<A, WeightSource, BLOCK_M, BLOCK_K, Tile::THREADS>;
  using LoaderB = gc::MnContiguousLoader<A, DySource, BLOCK_N, BLOCK_K, Tile::THREADS>;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* smem = reinterpret_cast<A*>(smem_raw);

  const gc::GemmSlice slice(splits);
  const int group = slice.group;
  const int split = slice.split;
  const int c_per_group = C / groups;
  const int k_per_group = K / groups;
  const int PQ = P * Q;
  const int pixels = N * PQ;
  const int m0 = blockIdx.y * BLOCK_M;
  const int n0 = blockIdx.x * BLOCK_N;
  const int tid = threadIdx.x;

  // A (c, k) = w[group*K/g + k][c]; B (k, j) = dy[n][group*K/g + k][pq] with j = n*P*Q + pq;
  // k over this split's filters.
  const gc::KSlice filters = gc::split_k_slice(k_per_group, BLOCK_K, split, splits);
  const int k0 = group * k_per_group + filters.first;
  const WeightSource src_a{w + k0 * c_per_group, c_per_group, filters.count, c_per_group};
  const DySource src_b(dy + k0 * PQ, N, P, Q, K * PQ, Q, 1, PQ, filters.count);
  LoaderA loader_a(src_a, m0, tid);
  LoaderB loader_b(src_b, n0, tid);
  gc::SimtMma<A, Tile, false> mma(tid);

  // main loop (simt_gemm.cuh)
  gc::simt_gemm_mainloop<A, Tile>(mma, loader_a, src_a, loader_b, src_b, filters.count, smem);

  // epilogue
  const gc::Epilogue<T> epi{dx, C * H * W, H * W, 1, bias, nullptr, 0, 0, 0, epilogue};
  const gc::FastDivmod div_pq(PQ);
  const gc::FastDivmod div_q(Q);
#pragma unroll
  for (int j = 0; j < THREAD_N; ++j) {
    const int pixel = n0 + mma.col(j);
    if (pixel >= pixels) continue;
    int n, pq, p, q;
    div_pq.divmod(pixel, n, pq);
    div_q.divmod(pq, p, q);
    const int hw = reached_pixel(p, q, stride_h, stride_w, pad_h, pad_w, H, W);
    if (hw < 0) continue;
#pragma unroll
    for (int i = 0; i < THREAD_M; ++i) {
      const int c = m0 + mma.row(i);
      if (c < c_per_group)
        store_dx<T, false>(epi, partial, splits, split, n, group * c_per_group + c, pq, hw, C,
                           PQ, N, mma.acc[i][j]);
    }
  }
}

template <class T, int BLOCK_M, int BLOCK_N, int BLOCK_K, int THREAD_M, int THREAD_N>
__global__ void GC_DGRAD_POINTWISE_LAUNCH_BOUNDS(T, BLOCK_M, BLOCK_N, THREAD_M, THREAD_N)
conv2d_dgrad_pointwise_nhwc(const T* __restrict__ dy, const T* __restrict__ w,
                            GC_CONV_SHAPE_PARAMS,
                            T* dx, const T* bias, int epilogue, GC_SPLIT_K_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  using Tile = gc::SimtTile<BLOCK_M, BLOCK_N, BLOCK_K, THREAD_M, THREAD_N>;
  using DySource = gc::RowMajorSource<T>;
  using WeightSource = gc::ColumnMajorSource<T>;
  using LoaderA = gc::KContiguousLoader<A, DySource, BLOCK_M, BLOCK_K, Tile::THREADS>;
  using LoaderB = gc::MnContiguousLoader<A, WeightSource, BLOCK_N, BLOCK_K, Tile::THREADS>;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* smem = reinterpret_cast<A*>(smem_raw);

  const gc::GemmSlice slice(splits);
  const int group = slice.group;
  const int split = slice.split;
  const int c_per_group = C / groups;
  const int k_per_group = K / groups;
  const int PQ = P * Q;
  const int gemm_m = N * PQ;
  const int m0 = blockIdx.x * BLOCK_M;
  const int n0 = blockIdx.y * BLOCK_N;
  const int tid = threadIdx.x;

  // A (m, k) = dy[m][group*K/g + k]; B (k, c) = w[group*K/g + k][c]; k over this split's
  // filters.
  const gc::KSlice filters = gc::split_k_slice(k_per_group, BLOCK_K, split, splits);
  const int k0 = group * k_per_group + filters.first;
  const DySource src_a{dy + k0, gemm_m, filters.count, K, 0};
  const WeightSource src_b{w + k0 * c_per_group, c_per_group, filters.count, c_per_group};
  LoaderA loader_a(src_a, m0, tid);
  LoaderB loader_b(src_b, n0, tid);
  gc::SimtMma<A, Tile, false> mma(tid);

  // main loop (simt_gemm.cuh)
  gc::simt_gemm_mainloop<A, Tile>(mma, loader_a, src_a, loader_b, src_b, filters.count, smem);

  // epilogue
  const gc::Epilogue<T> epi{dx, H * W * C, 1, C, bias, nullptr, 0, 0, 0, epilogue};
  const gc::FastDivmod div_pq(PQ);
  const gc::FastDivmod div_q(Q);
#pragma unroll
  for (int i = 0; i < THREAD_M; ++i) {
    const int m = m0 + mma.row(i);
    if (m >= gemm_m) continue;
    int n, pq, p, q;
    div_pq.divmod(m, n, pq);
    div_q.divmod(pq, p, q);
    const int hw = reached_pixel(p, q, stride_h, stride_w, pad_h, pad_w, H, W);
    if (hw < 0) continue;
#pragma unroll
    for (int j = 0; j < THREAD_N; ++j) {
      const int c = n0 + mma.col(j);
      if (c < c_per_group)
        store_dx<T, true>(epi, partial, splits, split, n, group * c_per_group + c, pq, hw, C,
                          PQ, N, mma.acc[i][j]);
    }
  }
}

// The second pass of a split launch: dy pixel (n, c, pq) of dx's layout = the sum over the
// splits in index order, stored (with the bias) at the dx pixel it reaches (a pixel that reaches
// only padding has no partial sums). One thread each.
template <class T, bool NHWC>
__global__ void conv2d_dgrad_pointwise_split_epilogue(const gc::acc_t<T>* __restrict__ partial,
                                                      int splits, GC_CONV_SHAPE_PARAMS, T* dx,
                                                      const T* bias, int epilogue) {
  GC_CONV_SHAPE_NAMES;
  const int PQ = P * Q;
  const int elements = N * C * PQ;
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= elements) return;
  int n, c, pq;
  gc::split_k_element<NHWC>(i, C, PQ, n, c, pq);
  const int p = pq / Q;
  const int hw = reached_pixel(p, pq - p * Q, stride_h, stride_w, pad_h, pad_w, H, W);
  if (hw < 0) return;  // the GEMM wrote no partial sum there either
  const gc::acc_t<T> total = gc::sum_of_splits(partial, i, elements, splits);
  const gc::Epilogue<T> epi = NHWC ? gc::Epilogue<T>{dx, H * W * C, 1, C, bias, nullptr, 0, 0, 0,
                                                     epilogue}
                                   : gc::Epilogue<T>{dx, C * H * W, H * W, 1, bias, nullptr, 0,
                                                     0, 0, epilogue};
  epi.store(n, c, hw, total);
}
