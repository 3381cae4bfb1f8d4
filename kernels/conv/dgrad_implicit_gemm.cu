// Implicit-GEMM data gradient (dgrad), decomposed over stride phases, on CUDA cores (every
// dtype: conv2d_dgrad_implicit_gemm; float and double filled by cp.async:
// conv2d_dgrad_implicit_gemm_async) and on tensor cores (__half, __nv_bfloat16:
// conv2d_dgrad_implicit_gemm_mma; the same loaders and main loop, implicit_gemm.cu's split).
//
// Channels-last dy with K/groups a multiple of 8 on tensor cores takes
// conv2d_dgrad_implicit_gemm_mma_vec: both operands copied 8 channels at a time with cp.async
// (the filter then RSCK, w.transpose(2, 3, 1, 0)), several k-tiles in flight; the same on
// Hopper's warpgroup tensor cores is dgrad_implicit_gemm_wgmma.cu (math="wgmma"). The block
// tile itself is dgrad_implicit_gemm.cuh's, shared by both families.
//
// dx = conv2d_input(w, dy): per group and stride phase (dgrad_operands.cuh), the GEMM
//   dx_phase (M x N) = A (M x K) * B (K x N),
//   M = N * |phase rows| * |phase columns| input pixels, N = C/groups input channels,
//   K = K/groups * |phase taps|, ordered (tap_r, tap_s, k),
// with A gathered from dy on the fly and B the RSKC-transposed filter (w.transpose(2, 3, 0, 1),
// done by the launcher: weights are small). Every MAC multiplies a real dy value by a real tap:
// no work is spent on the zeros a strided transposed convolution inserts.
//   NCHW: dy is loaded pixel-fast (neighbouring phase pixels read neighbouring dy columns) and
//         epilogue lanes run along M (pixels are dx's contiguous dimension).
//   NHWC: dy is loaded channel-fast (KContiguousLoader) and lanes run along N (channels).
// Grid: (ceil(max phase M / BLOCK_M), ceil(C/groups / BLOCK_N), groups * stride_h * stride_w);
// blocks past their phase's M exit at once. Dynamic shared memory: the main loop's tiles, then
// the staged epilogue (gpuconv/conv/gemm_tile.py: smem_bytes). No atomics: each dx element is
// written once, so the result is the same bits whatever the schedule (deterministic mode needs
// nothing more).
// The epilogue adds the bias when `epilogue` has EPILOGUE_BIAS (conv_transpose2d).
#include "../conv/dgrad_implicit_gemm.cuh"

template <class T, bool NHWC, int BLOCK_M, int BLOCK_N, int BLOCK_K, int THREAD_M, int THREAD_N>
__global__ void GC_SIMT_LAUNCH_BOUNDS(BLOCK_M, BLOCK_N, THREAD_M, THREAD_N)
conv2d_dgrad_implicit_gemm(const T* __restrict__ dy, const T* __restrict__ w_rskc,
                           GC_CONV_SHAPE_PARAMS, GC_DGRAD_OUTPUT_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  using Tile = gc::SimtTile<BLOCK_M, BLOCK_N, BLOCK_K, THREAD_M, THREAD_N>;
  const gc::Epilogue<T> epi{dx, dx_sN, dx_sC, dx_sHW, bias, nullptr, 0, 0, 0, epilogue};
  dgrad_implicit_gemm<T, NHWC, Tile>(dy, w_rskc, GC_CONV_SHAPE, epi, smem_raw);
}

// float and double with cp.async (sm_80+): one element per copy into STAGES stages
// (async_gemm.cuh); the launcher's choice for NCHW, whose register-staged loop waits out its
// loads' latency (launch_bwd_data.pick_loads).
template <class T, bool NHWC, int BLOCK_M, int BLOCK_N, int BLOCK_K, int THREAD_M, int THREAD_N,
          int STAGES>
__global__ void GC_SIMT_LAUNCH_BOUNDS(BLOCK_M, BLOCK_N, THREAD_M, THREAD_N)
conv2d_dgrad_implicit_gemm_async(const T* __restrict__ dy, const T* __restrict__ w_rskc,
                                 GC_CONV_SHAPE_PARAMS, GC_DGRAD_OUTPUT_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  using Tile = gc::SimtTileAsync<BLOCK_M, BLOCK_N, BLOCK_K, THREAD_M, THREAD_N, STAGES>;
  const gc::Epilogue<T> epi{dx, dx_sN, dx_sC, dx_sHW, bias, nullptr, 0, 0, 0, epilogue};
  dgrad_implicit_gemm<T, NHWC, Tile>(dy, w_rskc, GC_CONV_SHAPE, epi, smem_raw);
}

template <class T, bool NHWC, int BLOCK_M, int BLOCK_N, int BLOCK_K, int WARP_M, int WARP_N>
__global__ void GC_MMA_LAUNCH_BOUNDS(BLOCK_M, BLOCK_N, BLOCK_K, WARP_M, WARP_N)
conv2d_dgrad_implicit_gemm_mma(const T* __restrict__ dy, const T* __restrict__ w_rskc,
                               GC_CONV_SHAPE_PARAMS, GC_DGRAD_OUTPUT_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  using Tile = gc::MmaTile<BLOCK_M, BLOCK_N, BLOCK_K, WARP_M, WARP_N>;
  const gc::Epilogue<T> epi{dx, dx_sN, dx_sC, dx_sHW, bias, nullptr, 0, 0, 0, epilogue};
  dgrad_implicit_gemm<T, NHWC, Tile>(dy, w_rskc, GC_CONV_SHAPE, epi, smem_raw);
}

// Channels-last with K/groups a multiple of 8: dy and the RSCK filter move 8 channels (16 bytes)
// per cp.async into STAGES stages of tiles stored along k (MmaTileK); the launcher checks the
// alignment and raises the kernel's dynamic shared memory limit.
template <class T, int BLOCK_M, int BLOCK_N, int BLOCK_K, int WARP_M, int WARP_N, int STAGES>
__global__ void GC_MMA_ASYNC_LAUNCH_BOUNDS(BLOCK_M, BLOCK_N, BLOCK_K, WARP_M, WARP_N)
conv2d_dgrad_implicit_gemm_mma_vec(const T* __restrict__ dy, const T* __restrict__ w_rsck,
                                   GC_CONV_SHAPE_PARAMS, GC_DGRAD_OUTPUT_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  using Tile = gc::MmaTileK<BLOCK_M, BLOCK_N, BLOCK_K, WARP_M, WARP_N, STAGES>;
  const gc::Epilogue<T> epi{dx, dx_sN, dx_sC, dx_sHW, bias, nullptr, 0, 0, 0, epilogue};
  dgrad_implicit_gemm<T, true, Tile>(dy, w_rsck, GC_CONV_SHAPE, epi, smem_raw);
}
