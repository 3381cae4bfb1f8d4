// Implicit-GEMM weight gradient on Hopper's warpgroup tensor cores (wgmma, sm_90a): the
// channels-last 8-channel kernel of wgrad_implicit_gemm.cu (conv2d_wgrad_implicit_gemm_mma_vec:
// dy and the gathered x copied 8 filters / channels at a time with cp.async, split-K over the
// pixels) with its mma.sync warps replaced by warpgroups multiplying from shared memory
// (kernels/common/wgmma_gemm.cuh). Both operands are contiguous along M and N (filters,
// channels), not along the pixels the GEMM sums over, so the stages are MN-major
// (WgmmaTileMN: 64-wide slabs in the 128-byte swizzle, read with wgmma's imm-trans) where the
// forward's and the data gradient's are K-major. Same gathers and split-K epilogue
// (wgrad_implicit_gemm.cuh); __half and __nv_bfloat16, float accumulators.
//
// A family of its own because wgmma exists only on sm_90a (as implicit_gemm_wgmma.cu, the
// forward's): gpuconv/conv/launch_bwd_weight.py registers it with arch="sm_90a" and runs it
// only on a compute capability 9.0 GPU or in the simulator.
#include "../conv/wgrad_implicit_gemm.cuh"
#include "wgmma_gemm.cuh"

// 128 threads per warpgroup, BLOCK_M / 64 warpgroups; two blocks per SM, as the forward's.
template <class T, int BLOCK_M, int BLOCK_N, int STAGES>
__global__ void __launch_bounds__(2 * BLOCK_M, 2)
conv2d_wgrad_implicit_gemm_wgmma(const T* __restrict__ x, const T* __restrict__ dy,
                                 GC_CONV_SHAPE_PARAMS, GC_WGRAD_OUTPUT_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  using Tile = gc::WgmmaTileMN<BLOCK_M, BLOCK_N, STAGES>;
  const gc::WgradEpilogue<T> epi{dw, ws, K * (C / groups) * R * S, mode};
  wgrad_implicit_gemm<T, true, Tile>(x, dy, GC_CONV_SHAPE, splits, pixels_per_split, epi,
                                     gc::align_stages<Tile>(smem_raw));
}
