// Implicit-GEMM forward convolution, with CUTLASS's two activation iterators, on CUDA cores
// (every dtype) and on tensor cores (__half, __nv_bfloat16).
//
// GEMM view per group g: C(M x N) = A(M x K) * B(K x N) with M = N*P*Q output pixels,
// N = K/groups filters, K = C/groups * R * S taps. A is gathered from the input on the fly
// (no column buffer). B is the weights, one contiguous row per filter.
//   NCHW: k = (c, r, s); neighbouring pixels are neighbouring addresses, so A is loaded
//         pixel-fast (mn-contiguous loader) and lanes run along M in the epilogue (pixels are
//         the output's contiguous dimension).
//   NHWC: k = (r, s, c); channels are contiguous, so A is loaded k-fast (k-contiguous loader)
//         and the weights must be KRSC (the launcher transposes them); lanes run along N
//         (output channels are contiguous).
// Two gathers of A:
//   analytic     (conv_operands.cuh): each thread keeps the (image, h0, w0) of its rows and
//                turns k into (c, r, s) with FastDivmod once per k-tile; the readable statement.
//   precomputed  (conv_tap_table.cuh, CUTLASS's "optimized"): row offsets and tap-validity
//                masks computed before the main loop, a shared table of the block's live taps
//                (taps that read only padding for every row of the tile are skipped), and a k
//                cursor stepped without division. Needs R*S <= 32.
// Both keep the same k order (the precomputed one's restricted to live taps), so they compute
// the same sums in the same order for finite weights.
// Two multiply-accumulates of the block tile, the loaders and the main loop shared:
//   SimtTile  (simt_gemm.cuh): per-thread outer products on CUDA cores; operand tiles converted
//             to the accumulator type as they enter shared memory.
//   MmaTile   (mma_gemm.cuh): warp-level mma.m16n8k16 on tensor cores; operand tiles kept in T.
// Kernels: conv2d_implicit_gemm[_precomputed] (SimtTile), conv2d_implicit_gemm_precomputed_async
// (SimtTileAsync: float and double, one element per cp.async, several k-tiles in flight),
// conv2d_implicit_gemm[_precomputed]_mma (MmaTile), conv2d_implicit_gemm_precomputed_mma_vec
// (MmaTileK: NHWC, C/groups % 8 == 0, both operands copied 8 channels at a time with cp.async).
// Grid: (ceil(M / BLOCK_M), ceil(N / BLOCK_N), groups * splits): split-K (split_k.cuh) cuts
// the k-tiles into `splits` shares when the output tiles alone would leave SMs idle;
// dynamic shared memory for the main loop, then the staged epilogue (gpuconv/conv/gemm_tile.py:
// smem_bytes). Accumulation is in float for the half types.
#include "../conv/implicit_gemm.cuh"

// ---------------------------------------------------------------- CUDA cores (every dtype)

// The analytic NCHW gather's large tile spills at 128 registers (8 bytes on sm_90): no
// 2-blocks-per-SM budget there (by default it runs only filters of more than 32 taps).
template <class T, bool NHWC, int BLOCK_M, int BLOCK_N, int BLOCK_K, int THREAD_M, int THREAD_N>
__global__ void GC_SIMT_LAUNCH_BOUNDS_IF(BLOCK_M, BLOCK_N, THREAD_M, THREAD_N, NHWC)
conv2d_implicit_gemm(const T* __restrict__ x, const T* __restrict__ w, GC_CONV_SHAPE_PARAMS,
                     GC_EPILOGUE_PARAMS(T), GC_SPLIT_K_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  using Tile = gc::SimtTile<BLOCK_M, BLOCK_N, BLOCK_K, THREAD_M, THREAD_N>;
  implicit_gemm_analytic<T, NHWC, Tile>(x, w, GC_CONV_SHAPE, GC_EPILOGUE(T), splits, partial,
                                         smem_raw);
}

template <class T, bool NHWC, int BLOCK_M, int BLOCK_N, int BLOCK_K, int THREAD_M, int THREAD_N>
__global__ void GC_SIMT_LAUNCH_BOUNDS(BLOCK_M, BLOCK_N, THREAD_M, THREAD_N)
conv2d_implicit_gemm_precomputed(const T* __restrict__ x, const T* __restrict__ w,
                                 GC_CONV_SHAPE_PARAMS, GC_EPILOGUE_PARAMS(T), GC_SPLIT_K_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ gc::LiveTaps live;
  using Tile = gc::SimtTile<BLOCK_M, BLOCK_N, BLOCK_K, THREAD_M, THREAD_N>;
  implicit_gemm_precomputed<T, NHWC, Tile>(x, w, GC_CONV_SHAPE, GC_EPILOGUE(T), splits, partial,
                                            live, smem_raw);
}

// float and double with cp.async (sm_80+): both operands copied one element at a time into
// STAGES stages, STAGES - 1 k-tiles in flight (async_gemm.cuh); launcher option loads="cp_async".
template <class T, bool NHWC, int BLOCK_M, int BLOCK_N, int BLOCK_K, int THREAD_M, int THREAD_N,
          int STAGES>
__global__ void GC_SIMT_LAUNCH_BOUNDS(BLOCK_M, BLOCK_N, THREAD_M, THREAD_N)
conv2d_implicit_gemm_precomputed_async(const T* __restrict__ x, const T* __restrict__ w,
                                       GC_CONV_SHAPE_PARAMS, GC_EPILOGUE_PARAMS(T),
                                       GC_SPLIT_K_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ gc::LiveTaps live;
  using Tile = gc::SimtTileAsync<BLOCK_M, BLOCK_N, BLOCK_K, THREAD_M, THREAD_N, STAGES>;
  implicit_gemm_precomputed<T, NHWC, Tile>(x, w, GC_CONV_SHAPE, GC_EPILOGUE(T), splits, partial,
                                            live, smem_raw);
}

// ---------------------------------------------------------------- tensor cores (__half, bf16)

template <class T, bool NHWC, int BLOCK_M, int BLOCK_N, int BLOCK_K, int WARP_M, int WARP_N>
__global__ void GC_MMA_LAUNCH_BOUNDS(BLOCK_M, BLOCK_N, BLOCK_K, WARP_M, WARP_N)
conv2d_implicit_gemm_mma(const T* __restrict__ x, const T* __restrict__ w, GC_CONV_SHAPE_PARAMS,
                         GC_EPILOGUE_PARAMS(T), GC_SPLIT_K_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  using Tile = gc::MmaTile<BLOCK_M, BLOCK_N, BLOCK_K, WARP_M, WARP_N>;
  implicit_gemm_analytic<T, NHWC, Tile>(x, w, GC_CONV_SHAPE, GC_EPILOGUE(T), splits, partial,
                                         smem_raw);
}

template <class T, bool NHWC, int BLOCK_M, int BLOCK_N, int BLOCK_K, int WARP_M, int WARP_N>
__global__ void GC_MMA_LAUNCH_BOUNDS(BLOCK_M, BLOCK_N, BLOCK_K, WARP_M, WARP_N)
conv2d_implicit_gemm_precomputed_mma(const T* __restrict__ x, const T* __restrict__ w,
                                     GC_CONV_SHAPE_PARAMS, GC_EPILOGUE_PARAMS(T), GC_SPLIT_K_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ gc::LiveTaps live;
  using Tile = gc::MmaTile<BLOCK_M, BLOCK_N, BLOCK_K, WARP_M, WARP_N>;
  implicit_gemm_precomputed<T, NHWC, Tile>(x, w, GC_CONV_SHAPE, GC_EPILOGUE(T), splits, partial,
                                            live, smem_raw);
}

// Channels-last with C/groups a multiple of 8: both operands move 8 channels (16 bytes) per
// cp.async into STAGES stages of tiles stored along k (MmaTileK); the launcher checks the
// alignment and raises the kernel's dynamic shared memory limit.
template <class T, int BLOCK_M, int BLOCK_N, int BLOCK_K, int WARP_M, int WARP_N, int STAGES>
__global__ void GC_MMA_ASYNC_LAUNCH_BOUNDS(BLOCK_M, BLOCK_N, BLOCK_K, WARP_M, WARP_N)
conv2d_implicit_gemm_precomputed_mma_vec(const T* __restrict__ x, const T* __restrict__ w,
                                         GC_CONV_SHAPE_PARAMS, GC_EPILOGUE_PARAMS(T), GC_SPLIT_K_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ gc::LiveTaps live;
  using Tile = gc::MmaTileK<BLOCK_M, BLOCK_N, BLOCK_K, WARP_M, WARP_N, STAGES>;
  implicit_gemm_precomputed<T, true, Tile>(x, w, GC_CONV_SHAPE, GC_EPILOGUE(T), splits, partial,
                                            live, smem_raw);
}
