// Implicit-GEMM forward convolution on Hopper's warpgroup tensor cores (wgmma, sm_90a): the
// channels-last 8-channel kernel of implicit_gemm.cu (conv2d_implicit_gemm_precomputed_mma_vec:
// precomputed gather, both operands copied 8 channels at a time with cp.async into tiles stored
// along k) with its mma.sync warps replaced by warpgroups multiplying from shared memory
// (kernels/common/wgmma_gemm.cuh). Same GEMM view, gathers, split-K and epilogue
// (implicit_gemm.cuh); __half and __nv_bfloat16, float accumulators.
//
// A family of its own because wgmma exists only on sm_90a: NVRTC builds it for that target
// (gpuconv/conv/launch_implicit_gemm.py registers it with arch="sm_90a"), and the launcher runs
// it only on a compute capability 9.0 GPU or in the simulator.
#include "../conv/implicit_gemm.cuh"
#include "wgmma_gemm.cuh"

// 128 threads per warpgroup, BLOCK_M / 64 warpgroups. Two blocks per SM: at most 128 registers
// a thread at 256 threads (the 64 x 128 wgmma's 64 accumulators, the loaders' rows and masks).
template <class T, int BLOCK_M, int BLOCK_N, int STAGES>
__global__ void __launch_bounds__(2 * BLOCK_M, 2)
conv2d_implicit_gemm_precomputed_wgmma(const T* __restrict__ x, const T* __restrict__ w,
                                       GC_CONV_SHAPE_PARAMS, GC_EPILOGUE_PARAMS(T),
                                       GC_SPLIT_K_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ gc::LiveTaps live;
  using Tile = gc::WgmmaTileK<BLOCK_M, BLOCK_N, STAGES>;
  implicit_gemm_precomputed<T, true, Tile>(x, w, GC_CONV_SHAPE, GC_EPILOGUE(T), splits, partial,
                                            live, gc::align_stages<Tile>(smem_raw));
}
