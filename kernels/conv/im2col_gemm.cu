// im2col + GEMM forward convolution: the input is unfolded into a column buffer, then one GEMM
// per group multiplies the weights by it (Chainer's and Caffe's forward_gpu).
//
// Column buffer (per batch chunk of `n_images` images, all groups): row k = (c * R + r) * S + s
// over all C channels, column j = n_local * P * Q + p * Q + q, row stride ldc >= n_images * P * Q
// (a multiple of 4, so every row starts 16-byte aligned and the GEMM loads it in vectors).
// Group g's GEMM rows are k in [g * C/g*R*S, (g + 1) * C/g*R*S): the KCRS weight rows of the
// same group, so C_g (K/g x cols) = W_g (K/g x C/g*R*S) * columns_g.
//
//   conv2d_im2col            one thread per (channel, column) writes that pixel's R*S taps
//                            (coalesced along j); columns j >= n_images*P*Q are zeroed.
//   conv2d_gemm_columns      the project's SIMT GEMM (simt_gemm.cuh) with the conv epilogue;
//                            grid (ceil(ldc / BLOCK_N), ceil(K/g / BLOCK_M), groups).
//   conv2d_columns_epilogue  the epilogue alone, for a GEMM done elsewhere (cuBLAS through
//                            cupy.matmul): y is (groups, K/g, ldc).
// x and out point at the chunk's first image; the epilogue's n is the image within the chunk.
// Dynamic shared memory of the GEMM kernels: Tile::STAGED_SMEM_ELEMENTS accumulator values.
#include "conv_operands.cuh"
#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "epilogue.cuh"
#include "fast_divmod.cuh"
#include "im2col.cuh"
#include "simt_gemm.cuh"

template <class T, bool NHWC>
__global__ void conv2d_im2col(const T* __restrict__ x, T* __restrict__ columns, int ldc,
                              int n_images,
                              GC_CONV_SHAPE_PARAMS) {
  GC_CONV_SHAPE_NAMES;
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= ldc) return;
  const gc::ConvShape shape = GC_CONV_SHAPE;
  gc::im2col_column<T, NHWC>(x, columns, ldc, n_images * P * Q, j, shape);
}

// The column buffer as the GEMM's B operand: BLOCK_K x BLOCK_N tiles, each thread VEC
// consecutive columns of one row as aligned vectors of up to 4 (ldc and the buffer base are
// multiples of 4 elements, so a vector is wholly inside or outside the buffer's columns).
template <class T, int BLOCK_N, int BLOCK_K, int THREADS>
struct ColumnTileLoader {
  using A = gc::acc_t<T>;
  static constexpr int VEC = BLOCK_N * BLOCK_K / THREADS;
  static constexpr int PACK = VEC < 4 ? VEC : 4;
  static_assert(VEC * THREADS == BLOCK_N * BLOCK_K && BLOCK_N % VEC == 0 && 4 % PACK == 0 &&
                    VEC % PACK == 0,
                "each thread loads 1, 2, or a multiple of 4 columns");
  static constexpr int LD = BLOCK_N + gc::SMEM_PAD<A>;

  const T* columns;  // the group's first row
  int ldc, rows, j, kk;
  A regs[VEC];

  __device__ __forceinline__ ColumnTileLoader(const T* columns_, int ldc_, int rows_, int n0, int tid)
      : columns(columns_), ldc(ldc_), rows(rows_) {
    j = n0 + (tid % (BLOCK_N / VEC)) * VEC;
    kk = tid / (BLOCK_N / VEC);
  }
  __device__ __forceinline__ void load(int k0) {
    const int k = k0 + kk;
#pragma unroll
    for (int v = 0; v < VEC; v += PACK) {
      if (k < rows && j + v < ldc) {
        const gc::Pack<T, PACK> p = gc::pack_at<PACK>(columns + k * ldc + j + v);
#pragma unroll
        for (int e = 0; e < PACK; ++e) regs[v + e] = gc::to_acc(p.v[e]);
      } else {
#pragma unroll
        for (int e = 0; e < PACK; ++e) regs[v + e] = A(0);
      }
    }
  }
  __device__ __forceinline__ void store(A* tile, int n0) const {
#pragma unroll
    for (int e = 0; e < VEC; ++e) tile[kk * LD + (j - n0) + e] = regs[e];
  }
};

// Adapts ColumnTileLoader to the mainloop's (loader, source) calling convention.
template <class T, int BLOCK_N, int BLOCK_K, int THREADS>
struct ColumnLoaderAdapter {
  static constexpr int LD = ColumnTileLoader<T, BLOCK_N, BLOCK_K, THREADS>::LD;
  ColumnTileLoader<T, BLOCK_N, BLOCK_K, THREADS> loader;
  int n0;
  template <class Unused>
  __device__ __forceinline__ void load(const Unused&, int k0) { loader.load(k0); }
  __device__ __forceinline__ void store(gc::acc_t<T>* tile) const { loader.store(tile, n0); }
};

template <class T, bool LANES_ALONG_M, int BLOCK_M, int BLOCK_N, int BLOCK_K, int THREAD_M,
          int THREAD_N>
__global__ void GC_SIMT_LAUNCH_BOUNDS(BLOCK_M, BLOCK_N, THREAD_M, THREAD_N)
conv2d_gemm_columns(const T* __restrict__ w, const T* __restrict__ columns, int ldc, int n_images,
                    GC_CONV_SHAPE_PARAMS, GC_EPILOGUE_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  using Tile = gc::SimtTile<BLOCK_M, BLOCK_N, BLOCK_K, THREAD_M, THREAD_N>;
  using WeightSource = gc::RowMajorSource<T>;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* smem = reinterpret_cast<A*>(smem_raw);

  const int group = blockIdx.z;
  const int k_per_group = K / groups;
  const int gemm_k = (C / groups) * R * S;
  // Column tiles along x (no 65535 limit there), filter tiles along y.
  const int m0 = blockIdx.y * BLOCK_M;
  const int n0 = blockIdx.x * BLOCK_N;
  const int tid = threadIdx.x;

  const WeightSource src_a{w, k_per_group, gemm_k, gemm_k, group * k_per_group};
  gc::KContiguousLoader<A, WeightSource, BLOCK_M, BLOCK_K, Tile::THREADS> loader_a(src_a, m0, tid);
  ColumnLoaderAdapter<T, BLOCK_N, BLOCK_K, Tile::THREADS> loader_b{
      {columns + group * gemm_k * ldc, ldc, gemm_k, n0, tid}, n0};
  gc::SimtMma<A, Tile, LANES_ALONG_M> mma(tid);

  gc::simt_gemm_mainloop<A, Tile>(mma, loader_a, src_a, loader_b, 0, gemm_k, smem);

  // epilogue
  const gc::Epilogue<T> epi = GC_EPILOGUE(T);
  const int PQ = P * Q;
  const int n_cols = n_images * PQ;
  const gc::FastDivmod div_pq(PQ);
  mma.epilogue(smem, [&](int row, int col, A v) {
    const int filter = m0 + row;
    const int column = n0 + col;
    if (filter >= k_per_group || column >= n_cols) return;
    int n, pq;
    div_pq.divmod(column, n, pq);
    epi.store(n, group * k_per_group + filter, pq, v);
  });
}

template <class T>
__global__ void conv2d_columns_epilogue(const T* __restrict__ y, int ldc, int n_images,
                                        GC_CONV_SHAPE_PARAMS, GC_EPILOGUE_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  const int col = blockIdx.x * blockDim.x + threadIdx.x;
  const int PQ = P * Q;
  if (col >= n_images * PQ) return;
  const gc::Epilogue<T> epi = GC_EPILOGUE(T);
  const int n = col / PQ;
  const int pq = col - n * PQ;
  // Output channels over the grid's y dimension (at most 65535 blocks there).
  for (int k = blockIdx.y; k < K; k += gridDim.y)
    epi.store(n, k, pq, gc::to_acc(y[k * ldc + col]));
}
