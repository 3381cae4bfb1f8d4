// Implicit-GEMM weight gradient, split-K over the N*P*Q output pixels, on CUDA cores (every
// dtype: conv2d_wgrad_implicit_gemm) and on tensor cores (__half, __nv_bfloat16:
// conv2d_wgrad_implicit_gemm_mma; the same loaders and main loop, implicit_gemm.cu's split).
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
// Channels-last with K/groups and C/groups multiples of 8 on tensor cores takes
// conv2d_wgrad_implicit_gemm_mma_vec: both operands copied 8 filters / channels at a time with
// cp.async into k-major stages, several k-tiles (pixels) in flight.
// Grid: (ceil(K/g / BLOCK_M), ceil(C/g*R*S / BLOCK_N), groups * splits); dynamic shared memory:
// the main loop's tiles, then the staged epilogue (gpuconv/conv/gemm_tile.py: smem_bytes).
#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "mma_gemm.cuh"
#include "simt_gemm.cuh"
#include "../conv/wgrad_operands.cuh"

// Parameters after the shape: the split-K layout and where the sums go (WgradEpilogue).
#define GC_WGRAD_OUTPUT_PARAMS(T) \
  int splits, int pixels_per_split, T *dw, gc::acc_t<T> *ws, int mode

// The block tile (blockIdx.x, blockIdx.y) of group and split blockIdx.z. Tile: a SimtTile, an
// MmaTile, or an MmaTileAsync (NHWC only).
template <class T, bool NHWC, class Tile>
__device__ __forceinline__ void wgrad_implicit_gemm(const T* x, const T* dy,
                                                    const gc::ConvShape& shape, int splits,
                                                    int pixels_per_split,
                                                    const gc::WgradEpilogue<T>& epi,
                                                    unsigned char* smem) {
  using A = gc::acc_t<T>;
  using Smem = typename Tile::template Smem<T>;
  using DySource = typename gc::Select<NHWC, gc::WgradDyNhwcSource<T>, gc::WgradDyNchwSource<T>>::type;
  using XSource = typename gc::Select<NHWC, gc::WgradXNhwcSource<T>, gc::WgradXNchwSource<T>>::type;
  static_assert(NHWC || !Tile::ASYNC_COPY, "vector copies need channels-last x and dy");
  // NHWC: along M / N, 8 at a time with cp.async on an MmaTileAsync.
  using MnLoaderA = typename gc::Select<
      Tile::ASYNC_COPY, gc::MnVectorLoader<T, DySource, Tile::BLOCK_M, Tile::BLOCK_K, Tile::THREADS>,
      gc::MnContiguousLoader<Smem, DySource, Tile::BLOCK_M, Tile::BLOCK_K, Tile::THREADS>>::type;
  using MnLoaderB = typename gc::Select<
      Tile::ASYNC_COPY, gc::MnVectorLoader<T, XSource, Tile::BLOCK_N, Tile::BLOCK_K, Tile::THREADS>,
      gc::MnContiguousLoader<Smem, XSource, Tile::BLOCK_N, Tile::BLOCK_K, Tile::THREADS>>::type;
  using LoaderA = typename gc::Select<
      NHWC, MnLoaderA,
      gc::KContiguousLoader<Smem, DySource, Tile::BLOCK_M, Tile::BLOCK_K, Tile::THREADS>>::type;
  using LoaderB = typename gc::Select<
      NHWC, MnLoaderB,
      gc::KContiguousLoader<Smem, XSource, Tile::BLOCK_N, Tile::BLOCK_K, Tile::THREADS>>::type;

  const int group = blockIdx.z / splits;
  const int split = blockIdx.z - group * splits;
  const gc::PixelRange range =
      gc::split_range(split, pixels_per_split, shape.N * shape.P * shape.Q);
  const int m0 = blockIdx.x * Tile::BLOCK_M;
  const int n0 = blockIdx.y * Tile::BLOCK_N;
  const int tid = threadIdx.x;

  const DySource src_a(dy, shape, group, range);
  const XSource src_b(x, shape, group, range);
  LoaderA loader_a(src_a, m0, tid);
  LoaderB loader_b(src_b, n0, tid);
  typename Tile::template Mma<T, false> mma(tid);

  // main loop (simt_gemm.cuh; async_gemm.cuh's async_gemm_mainloop for MmaTileAsync)
  gc::gemm_mainloop<Smem, Tile>(mma, loader_a, src_a, loader_b, src_b, range.end - range.begin,
                                reinterpret_cast<Smem*>(smem));

  // epilogue: NHWC taps are (r, s, c) (WgradXNhwcSource).
  gc::store_wgrad_tile<NHWC>(epi, mma, reinterpret_cast<A*>(smem), m0, n0, split, group,
                             shape.k_per_group(), shape.c_per_group(), shape.R * shape.S);
}

// NCHW's large tile spills 104-136 bytes at 128 registers: 2 blocks per SM for NHWC only.
template <class T, bool NHWC, int BLOCK_M, int BLOCK_N, int BLOCK_K, int THREAD_M, int THREAD_N>
__global__ void GC_SIMT_LAUNCH_BOUNDS_IF(BLOCK_M, BLOCK_N, THREAD_M, THREAD_N, NHWC)
conv2d_wgrad_implicit_gemm(const T* __restrict__ x, const T* __restrict__ dy,
                           GC_CONV_SHAPE_PARAMS, GC_WGRAD_OUTPUT_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  using Tile = gc::SimtTile<BLOCK_M, BLOCK_N, BLOCK_K, THREAD_M, THREAD_N>;
  const gc::WgradEpilogue<T> epi{dw, ws, K * (C / groups) * R * S, mode};
  wgrad_implicit_gemm<T, NHWC, Tile>(x, dy, GC_CONV_SHAPE, splits, pixels_per_split, epi,
                                     smem_raw);
}

template <class T, bool NHWC, int BLOCK_M, int BLOCK_N, int BLOCK_K, int WARP_M, int WARP_N>
__global__ void GC_MMA_LAUNCH_BOUNDS(BLOCK_M, BLOCK_N, BLOCK_K, WARP_M, WARP_N)
conv2d_wgrad_implicit_gemm_mma(const T* __restrict__ x, const T* __restrict__ dy,
                               GC_CONV_SHAPE_PARAMS, GC_WGRAD_OUTPUT_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  using Tile = gc::MmaTile<BLOCK_M, BLOCK_N, BLOCK_K, WARP_M, WARP_N>;
  const gc::WgradEpilogue<T> epi{dw, ws, K * (C / groups) * R * S, mode};
  wgrad_implicit_gemm<T, NHWC, Tile>(x, dy, GC_CONV_SHAPE, splits, pixels_per_split, epi,
                                     smem_raw);
}

// Channels-last with K/groups and C/groups multiples of 8: dy and x move 8 filters / channels
// (16 bytes) per cp.async into STAGES k-major stages (MmaTileAsync); the launcher checks the
// alignment and raises the kernel's dynamic shared memory limit.
template <class T, int BLOCK_M, int BLOCK_N, int BLOCK_K, int WARP_M, int WARP_N, int STAGES>
__global__ void GC_MMA_ASYNC_LAUNCH_BOUNDS(BLOCK_M, BLOCK_N, BLOCK_K, WARP_M, WARP_N)
conv2d_wgrad_implicit_gemm_mma_vec(const T* __restrict__ x, const T* __restrict__ dy,
                                   GC_CONV_SHAPE_PARAMS, GC_WGRAD_OUTPUT_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  using Tile = gc::MmaTileAsync<BLOCK_M, BLOCK_N, BLOCK_K, WARP_M, WARP_N, STAGES>;
  const gc::WgradEpilogue<T> epi{dw, ws, K * (C / groups) * R * S, mode};
  wgrad_implicit_gemm<T, true, Tile>(x, dy, GC_CONV_SHAPE, splits, pixels_per_split, epi,
                                     smem_raw);
}
