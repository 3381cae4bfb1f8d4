// Implicit-GEMM weight gradient on CUDA cores, split-K over the N*P*Q output pixels.
//
// Per group: dW_g (K/g x C/g*R*S) = dy_g (K/g x N*P*Q) * X_g (N*P*Q x C/g*R*S), X gathered from
// x on the fly (no column buffer). blockIdx.z = group * splits + split; split s sums the pixels
// [s * pixels_per_split, (s + 1) * pixels_per_split) and hands its tile to WgradEpilogue
// (wgrad_operands.cuh): a direct store when there is one split, partial sums reduced in a fixed
// order (deterministic) or float atomics (the default mode) otherwise.
//   NCHW: taps t = (c, r, s); dy rows and x tap rows are walked along the pixels
//         (KContiguousLoader for both operands).
//   NHWC: taps t = (r, s, c); dy and x are channel-contiguous, so both operands are loaded
//         along M / N (MnContiguousLoader) and each thread steps its pixels incrementally. The
//         epilogue maps t back to the KCRS position of dw.
// Grid: (ceil(K/g / BLOCK_M), ceil(C/g*R*S / BLOCK_N), groups * splits); dynamic shared memory
// Tile::SMEM_ELEMENTS accumulator values.
#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "simt_gemm.cuh"
#include "../conv/wgrad_operands.cuh"

template <class T, bool NHWC, int BLOCK_M, int BLOCK_N, int BLOCK_K, int THREAD_M, int THREAD_N>
__global__ void GC_SIMT_LAUNCH_BOUNDS(BLOCK_M, BLOCK_N, THREAD_M, THREAD_N)
conv2d_wgrad_implicit_gemm(const T* __restrict__ x, const T* __restrict__ dy,
                           GC_CONV_SHAPE_PARAMS,
                           int splits, int pixels_per_split, T* dw, gc::acc_t<T>* ws, int mode) {
  using A = gc::acc_t<T>;
  using Tile = gc::SimtTile<BLOCK_M, BLOCK_N, BLOCK_K, THREAD_M, THREAD_N>;
  using DySource = typename gc::Select<NHWC, gc::WgradDyNhwcSource<T>, gc::WgradDyNchwSource<T>>::type;
  using XSource = typename gc::Select<NHWC, gc::WgradXNhwcSource<T>, gc::WgradXNchwSource<T>>::type;
  using LoaderA = typename gc::Select<
      NHWC, gc::MnContiguousLoader<A, DySource, BLOCK_M, BLOCK_K, Tile::THREADS>,
      gc::KContiguousLoader<A, DySource, BLOCK_M, BLOCK_K, Tile::THREADS>>::type;
  using LoaderB = typename gc::Select<
      NHWC, gc::MnContiguousLoader<A, XSource, BLOCK_N, BLOCK_K, Tile::THREADS>,
      gc::KContiguousLoader<A, XSource, BLOCK_N, BLOCK_K, Tile::THREADS>>::type;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* smem = reinterpret_cast<A*>(smem_raw);

  const gc::ConvShape shape{N, C, H, W, K, R, S, P, Q, pad_h, pad_w,
                            stride_h, stride_w, dil_h, dil_w, groups};
  const int group = blockIdx.z / splits;
  const int split = blockIdx.z - group * splits;
  const gc::PixelRange range = gc::split_range(split, pixels_per_split, N * P * Q);
  const int k_per_group = shape.k_per_group();
  const int c_per_group = shape.c_per_group();
  const int RS = R * S;
  const int taps = c_per_group * RS;
  const int m0 = blockIdx.x * BLOCK_M;
  const int n0 = blockIdx.y * BLOCK_N;
  const int tid = threadIdx.x;

  const DySource src_a(dy, shape, group, range);
  const XSource src_b(x, shape, group, range);
  LoaderA loader_a(src_a, m0, tid);
  LoaderB loader_b(src_b, n0, tid);
  gc::SimtMma<A, Tile, false> mma(tid);

  // main loop (simt_gemm.cuh)
  gc::simt_gemm_mainloop<A, Tile>(mma, loader_a, src_a, loader_b, src_b, range.end - range.begin,
                                  smem);

  // epilogue
  const gc::WgradEpilogue<T> epi{dw, ws, K * taps, mode};
  // NHWC taps are (r, s, c) (WgradXNhwcSource).
  gc::store_wgrad_tile<Tile, NHWC>(epi, mma, m0, n0, split, group, k_per_group, c_per_group, RS);
}
