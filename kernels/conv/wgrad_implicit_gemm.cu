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
#include "../conv/wgrad_implicit_gemm.cuh"

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
