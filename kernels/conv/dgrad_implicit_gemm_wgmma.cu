// Implicit-GEMM data gradient on Hopper's warpgroup tensor cores (wgmma, sm_90a): the
// channels-last 8-channel kernel of dgrad_implicit_gemm.cu (conv2d_dgrad_implicit_gemm_mma_vec:
// per group and stride phase, dy gathered and the RSCK filter read 8 channels at a time with
// cp.async into tiles stored along k) with its mma.sync warps replaced by warpgroups multiplying
// from shared memory (kernels/common/wgmma_gemm.cuh). Same phases, gathers and epilogue
// (dgrad_implicit_gemm.cuh); __half and __nv_bfloat16, float accumulators. No atomics: every dx
// element is written once, as in the other data-gradient kernels.
//
// A family of its own because wgmma exists only on sm_90a (as implicit_gemm_wgmma.cu, the
// forward's): gpuconv/conv/launch_bwd_data.py registers it with arch="sm_90a" and runs it only
// on a compute capability 9.0 GPU or in the simulator.
#include "../conv/dgrad_implicit_gemm.cuh"
#include "wgmma_gemm.cuh"

// 128 threads per warpgroup, BLOCK_M / 64 warpgroups; two blocks per SM, as the forward's.
template <class T, int BLOCK_M, int BLOCK_N, int STAGES>
__global__ void __launch_bounds__(2 * BLOCK_M, 2)
conv2d_dgrad_implicit_gemm_wgmma(const T* __restrict__ dy, const T* __restrict__ w_rsck,
                                 GC_CONV_SHAPE_PARAMS, GC_DGRAD_OUTPUT_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  using Tile = gc::WgmmaTileK<BLOCK_M, BLOCK_N, STAGES>;
  const gc::Epilogue<T> epi{dx, dx_sN, dx_sC, dx_sHW, bias, nullptr, 0, 0, 0, epilogue};
  dgrad_implicit_gemm<T, true, Tile>(dy, w_rsck, GC_CONV_SHAPE, epi,
                                     gc::align_stages<Tile>(smem_raw));
}
