// GEMM-based weight gradient (Caffe's and Chainer's backward_gpu): per batch chunk of `n_images`
// images, x is unfolded into a column buffer, then one GEMM per group with split-K over the
// chunk's pixels:
//   conv2d_wgrad_im2col         columns[(c * R + r) * S + s][j] = x at tap (r, s) of output pixel
//                               j = n_local * P*Q + pq (0 in the padding); one thread per column,
//                               channels over the grid's y dimension; row stride ldc.
//   conv2d_wgrad_gemm_columns   dW_g (K/g x C/g*R*S) = dy_g (K/g x cols) * columns_g^T, both
//                               operands walked along the pixels; blockIdx.z = group * splits +
//                               split. Sums go through WgradEpilogue (wgrad_operands.cuh): the
//                               launcher makes every chunk after the first accumulate into the
//                               same partials (WGRAD_PARTIAL_ACCUMULATE, launches are ordered on
//                               the stream) or add atomically.
// x and dy point at the chunk's first image.
#include "conv_operands.cuh"
#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "im2col.cuh"
#include "simt_gemm.cuh"
#include "../conv/wgrad_operands.cuh"

template <class T, bool NHWC>
__global__ void conv2d_wgrad_im2col(const T* __restrict__ x, T* __restrict__ columns, int ldc,
                                    int n_images,
                                    GC_CONV_SHAPE_PARAMS) {
  GC_CONV_SHAPE_NAMES;
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  const int n_cols = n_images * P * Q;
  if (j >= n_cols) return;
  const gc::ConvShape shape = GC_CONV_SHAPE;
  gc::im2col_column<T, NHWC>(x, columns, ldc, n_cols, j, shape);
}

template <class T, bool NHWC, int BLOCK_M, int BLOCK_N, int BLOCK_K, int THREAD_M, int THREAD_N>
__global__ void GC_SIMT_LAUNCH_BOUNDS(BLOCK_M, BLOCK_N, THREAD_M, THREAD_N)
conv2d_wgrad_gemm_columns(const T* __restrict__ dy, const T* __restrict__ columns, int ldc,
                          int n_images,
                          GC_CONV_SHAPE_PARAMS,
                          int splits, int pixels_per_split, T* dw, gc::acc_t<T>* ws, int mode) {
  GC_CONV_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  using Tile = gc::SimtTile<BLOCK_M, BLOCK_N, BLOCK_K, THREAD_M, THREAD_N>;
  using DySource = typename gc::Select<NHWC, gc::WgradDyNhwcSource<T>, gc::WgradDyNchwSource<T>>::type;
  using ColumnSource = gc::RowMajorSource<T>;
  using LoaderA = typename gc::Select<
      NHWC, gc::MnContiguousLoader<A, DySource, BLOCK_M, BLOCK_K, Tile::THREADS>,
      gc::KContiguousLoader<A, DySource, BLOCK_M, BLOCK_K, Tile::THREADS>>::type;
  using LoaderB = gc::KContiguousLoader<A, ColumnSource, BLOCK_N, BLOCK_K, Tile::THREADS>;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* smem = reinterpret_cast<A*>(smem_raw);

  // The chunk as a convolution of n_images images.
  const gc::ConvShape shape{n_images, C, H, W, K, R, S, P, Q, pad_h, pad_w,
                            stride_h, stride_w, dil_h, dil_w, groups};
  const int group = blockIdx.z / splits;
  const int split = blockIdx.z - group * splits;
  const gc::PixelRange range = gc::split_range(split, pixels_per_split, n_images * P * Q);
  const int k_per_group = shape.k_per_group();
  const int taps = shape.c_per_group() * R * S;
  const int m0 = blockIdx.x * BLOCK_M;
  const int n0 = blockIdx.y * BLOCK_N;
  const int tid = threadIdx.x;

  const DySource src_a(dy, shape, group, range);
  // element (t, kk) = columns[group*taps + t][range.begin + kk]
  const ColumnSource src_b{columns + group * taps * ldc + range.begin, taps,
                           range.end - range.begin, ldc, 0};
  LoaderA loader_a(src_a, m0, tid);
  LoaderB loader_b(src_b, n0, tid);
  gc::SimtMma<A, Tile, false> mma(tid);

  // main loop (simt_gemm.cuh)
  gc::simt_gemm_mainloop<A, Tile>(mma, loader_a, src_a, loader_b, src_b, range.end - range.begin,
                                  smem);

  // epilogue
  const gc::WgradEpilogue<T> epi{dw, ws, K * taps, mode};
  // The columns' rows are (c, r, s) taps in either layout.
  gc::store_wgrad_tile<false>(epi, mma, smem, m0, n0, split, group, k_per_group,
                              shape.c_per_group(), R * S);
}
