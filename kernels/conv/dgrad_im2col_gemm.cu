// GEMM + col2im data gradient (Caffe's and Chainer's backward_gpu), in two kernels per batch
// chunk of `n_images` images:
//
//   conv2d_dgrad_gemm_columns  columns_g (C/g*R*S x n_images*P*Q) = W_g^T (C/g*R*S x K/g) * dy_g
//                              (K/g x n_images*P*Q), one GEMM per group on the SIMT main loop of
//                              simt_gemm.cuh; W^T is read straight from the KCRS weights
//                              (column-major view). The column buffer holds accumulator values
//                              (float for halves), so the taps of one pixel are summed at full
//                              precision. Row k = (c * R + r) * S + s over all C channels, column
//                              j = n_local * P * Q + p * Q + q, row stride ldc.
//                              Grid (ceil(C/g*R*S / BLOCK_M), ceil(n_images*P*Q / BLOCK_N), groups).
//   conv2d_dgrad_col2im        one thread per dx element gathers its taps from the columns (a
//                              gather, not a scatter: no atomics, and only the taps that reach
//                              the pixel are visited, so strides cost no wasted reads), adds the
//                              bias when asked, and writes dx once.
// dy and dx point at the chunk's first image; shapes are the whole call's, except N, which the
// kernels do not use (n_images bounds the chunk).
#include "conv_operands.cuh"
#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "epilogue.cuh"
#include "fast_divmod.cuh"
#include "flat_index.cuh"
#include "simt_gemm.cuh"
#include "../conv/dgrad_operands.cuh"

// dy of a chunk as (channel x column) for NCHW: element (k, j) = dy[n][group*K/g + k][pq] with
// j = n * P*Q + pq; consecutive j are neighbours within an image: an MnContiguousLoader source.
template <class T>
struct DgradColumnsDyNchwSource {
  struct Row { int offset; };  // -1: past the chunk's columns
  struct Col { int k, offset; };

  const T* dy;  // at the group's first channel
  gc::FastDivmod div_pq;
  int n_cols, k_per_group, PQ, KPQ;

  __device__ __forceinline__ Row row(int j) const {
    if (j >= n_cols) return Row{-1};
    int n, pq;
    div_pq.divmod(j, n, pq);
    return Row{n * KPQ + pq};
  }
  __device__ __forceinline__ Col column(int k) const { return Col{k, k * PQ}; }
  __device__ __forceinline__ void advance(Col& col) const {
    ++col.k;
    col.offset += PQ;
  }
  __device__ __forceinline__ T load(const Row& row, const Col& col) const {
    if (row.offset >= 0 && col.k < k_per_group) return dy[row.offset + col.offset];
    return T{};
  }
};

// The GEMM's B operand for either layout. NHWC: element (j, k) = dy[j][group*K/g + k], rows
// contiguous along k (a KContiguousLoader source).
template <class T, bool NHWC>
__device__ __forceinline__ auto make_columns_dy_source(const T* dy, int group, int n_cols,
                                                       int k_per_group, int K, int PQ) {
  if constexpr (NHWC) {
    return gc::RowMajorSource<T>{dy + group * k_per_group, n_cols, k_per_group, K, 0};
  } else {
    return DgradColumnsDyNchwSource<T>{dy + group * k_per_group * PQ, gc::FastDivmod(PQ), n_cols,
                                       k_per_group, PQ, K * PQ};
  }
}

template <class T, bool NHWC, int BLOCK_M, int BLOCK_N, int BLOCK_K, int THREAD_M, int THREAD_N>
__global__ void GC_SIMT_LAUNCH_BOUNDS(BLOCK_M, BLOCK_N, THREAD_M, THREAD_N)
conv2d_dgrad_gemm_columns(const T* __restrict__ w, const T* __restrict__ dy,
                          gc::acc_t<T>* __restrict__ columns, int ldc, int n_images,
                          GC_CONV_SHAPE_PARAMS) {
  GC_CONV_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  using Tile = gc::SimtTile<BLOCK_M, BLOCK_N, BLOCK_K, THREAD_M, THREAD_N>;
  using WeightSource = gc::ColumnMajorSource<T>;
  using DySource = typename gc::Select<NHWC, gc::RowMajorSource<T>, DgradColumnsDyNchwSource<T>>::type;
  using LoaderA = gc::MnContiguousLoader<A, WeightSource, BLOCK_M, BLOCK_K, Tile::THREADS>;
  using LoaderB = typename gc::Select<
      NHWC, gc::KContiguousLoader<A, DySource, BLOCK_N, BLOCK_K, Tile::THREADS>,
      gc::MnContiguousLoader<A, DySource, BLOCK_N, BLOCK_K, Tile::THREADS>>::type;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* smem = reinterpret_cast<A*>(smem_raw);

  const int group = blockIdx.z;
  const int k_per_group = K / groups;
  const int rows = (C / groups) * R * S;  // GEMM M: this group's (c, r, s)
  const int PQ = P * Q;
  const int n_cols = n_images * PQ;
  const int m0 = blockIdx.x * BLOCK_M;
  const int n0 = blockIdx.y * BLOCK_N;
  const int tid = threadIdx.x;

  // W^T: element (t, k) = w[group*K/g + k][t], t = (c, r, s) of the group.
  const WeightSource src_a{w + group * k_per_group * rows, rows, k_per_group, rows};
  const DySource src_b = make_columns_dy_source<T, NHWC>(dy, group, n_cols, k_per_group, K, PQ);
  LoaderA loader_a(src_a, m0, tid);
  LoaderB loader_b(src_b, n0, tid);
  gc::SimtMma<A, Tile, false> mma(tid);

  // main loop (simt_gemm.cuh)
  gc::simt_gemm_mainloop<A, Tile>(mma, loader_a, src_a, loader_b, src_b, k_per_group, smem);

  // epilogue
  A* out = columns + group * rows * ldc;
#pragma unroll
  for (int i = 0; i < THREAD_M; ++i) {
    const int t = m0 + mma.row(i);
    if (t >= rows) continue;
#pragma unroll
    for (int j = 0; j < THREAD_N; ++j) {
      const int col = n0 + mma.col(j);
      if (col < n_cols) out[t * ldc + col] = mma.acc[i][j];
    }
  }
}

template <class T, bool NHWC>
__global__ void conv2d_dgrad_col2im(const gc::acc_t<T>* __restrict__ columns, int ldc,
                                    int n_images,
                                    GC_CONV_SHAPE_PARAMS, const gc::FlatDecoder input_index,
                                    T* dx, const T* bias, int epilogue) {
  GC_CONV_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  const int HW = H * W;
  const int e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= n_images * C * HW) return;
  // Element e in dx's own order, so that neighbouring threads write neighbouring addresses.
  const gc::Coord4 o = gc::unflatten<NHWC>(e, input_index);
  const int n = o.n, c = o.c, h = o.h, w = o.w;
  const gc::PositionTaps th = gc::position_taps(h, pad_h, stride_h, dil_h, R);
  const gc::PositionTaps tw = gc::position_taps(w, pad_w, stride_w, dil_w, S);
  // main loop
  const A* col = columns + n * P * Q;
  A acc = A(0);
  gc::for_each_reaching_tap(th, tw, P, Q, [&](int p, int q, int r, int s) {
    acc += col[((c * R + r) * S + s) * ldc + p * Q + q];
  });
  // epilogue
  const gc::Epilogue<T> epi{dx, C * HW, NHWC ? 1 : HW, NHWC ? C : 1, bias, nullptr, 0, 0, 0, epilogue};
  epi.store(n, c, h * W + w, acc);
}
