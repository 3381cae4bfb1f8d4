// Implicit-GEMM data gradient (dgrad), decomposed over stride phases, on CUDA cores (every
// dtype: conv2d_dgrad_implicit_gemm; float and double filled by cp.async:
// conv2d_dgrad_implicit_gemm_async) and on tensor cores (__half, __nv_bfloat16:
// conv2d_dgrad_implicit_gemm_mma; the same loaders and main loop, implicit_gemm.cu's split).
//
// Channels-last dy with K/groups a multiple of 8 on tensor cores takes
// conv2d_dgrad_implicit_gemm_mma_vec: both operands copied 8 channels at a time with cp.async
// (the filter then RSCK, w.transpose(2, 3, 1, 0)), several k-tiles in flight.
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
#include "async_gemm.cuh"
#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "epilogue.cuh"
#include "mma_gemm.cuh"
#include "simt_gemm.cuh"
#include "../conv/dgrad_operands.cuh"

// Parameters after the shape: dx, its (n, c, pixel) strides, bias, epilogue flags.
#define GC_DGRAD_OUTPUT_PARAMS(T) \
  T *dx, int dx_sN, int dx_sC, int dx_sHW, const T *bias, int epilogue

// The block tile (blockIdx.x, blockIdx.y) of group and phase blockIdx.z. Tile: a SimtTile or an
// MmaTile (w: RSKC), or an MmaTileK (w: RSCK); `epi` writes dx (no residual).
template <class T, bool NHWC, class Tile>
__device__ __forceinline__ void dgrad_implicit_gemm(const T* dy, const T* w,
                                                    const gc::ConvShape& shape,
                                                    const gc::Epilogue<T>& epi,
                                                    unsigned char* smem) {
  using A = gc::acc_t<T>;
  using Smem = typename Tile::template Smem<T>;
  constexpr bool VECTORS = Tile::ROWS_ALONG_K;  // MmaTileK: 8 channels per cp.async
  static_assert(NHWC || !VECTORS, "vector copies need channels-last dy");
  using DySource = typename gc::Select<NHWC, gc::DgradDyNhwcSource<T>, gc::DgradDyNchwSource<T>>::type;
  using WeightSource = typename gc::Select<VECTORS, gc::DgradWeightRsckSource<T>,
                                           gc::DgradWeightSource<T>>::type;
  // 8 channels per copy for a tile stored along k; else one element per thread and k, through
  // registers or copied (SimtTileAsync: gc::KLoaderFor / MnLoaderFor).
  using LoaderA = typename gc::Select<
      VECTORS, gc::KVectorLoader<T, DySource, Tile::BLOCK_M, Tile::BLOCK_K, Tile::THREADS>,
      typename gc::Select<NHWC, gc::KLoaderFor<Tile, Smem, DySource, Tile::BLOCK_M>,
                          gc::MnLoaderFor<Tile, Smem, DySource, Tile::BLOCK_M>>::type>::type;
  using LoaderB = typename gc::Select<
      VECTORS, gc::KVectorLoader<T, WeightSource, Tile::BLOCK_N, Tile::BLOCK_K, Tile::THREADS>,
      gc::MnLoaderFor<Tile, Smem, WeightSource, Tile::BLOCK_N>>::type;

  const int phases = shape.stride_h * shape.stride_w;
  const int group = blockIdx.z / phases;
  const int phase = blockIdx.z - group * phases;
  const gc::DgradPhaseProblem prob(shape, group, phase / shape.stride_w, phase % shape.stride_w);
  const int m0 = blockIdx.x * Tile::BLOCK_M;
  const int n0 = blockIdx.y * Tile::BLOCK_N;
  if (m0 >= prob.gemm_m) return;  // uniform over the block, before any barrier
  const int tid = threadIdx.x;

  const DySource src_a(dy, prob, shape);
  const WeightSource src_b(w, prob, shape.S);
  LoaderA loader_a(src_a, m0, tid);
  LoaderB loader_b(src_b, n0, tid);
  using Mma = typename Tile::template Mma<T, !NHWC>;
  Mma mma(tid);

  // main loop (simt_gemm.cuh; async_gemm.cuh's async_gemm_mainloop for MmaTileK)
  gc::gemm_mainloop<Smem, Tile>(mma, loader_a, src_a, loader_b, src_b, prob.gemm_k,
                                reinterpret_cast<Smem*>(smem));

  // epilogue: dx's pixel (n, hw) of tile element (row, col), false outside the GEMM
  auto pixel = [&](int row, int col, int& n, int& hw) {
    if (m0 + row >= prob.gemm_m || n0 + col >= prob.c_per_group) return false;
    int pi, pj;
    prob.split_pixel(m0 + row, n, pi, pj);
    hw = (prob.ph.first + pi * shape.stride_h) * shape.W + prob.pw.first + pj * shape.stride_w;
    return true;
  };
  if constexpr (NHWC && Mma::EPILOGUE_VECTOR > 1) {
    // Channels-last tensor-core tiles: a row's EPILOGUE_VECTOR consecutive channels at a time
    // (implicit_gemm.cu's forward epilogue).
    constexpr int L = Mma::EPILOGUE_VECTOR;
    const bool packed = prob.c_per_group % L == 0 && epi.template vectors_fit<L>();
    mma.epilogue_vectors(reinterpret_cast<A*>(smem), [&](int row, int col, const A (&v)[L]) {
      int n, hw;
      if (!pixel(row, col, n, hw)) return;
      const int c = n0 + col;
      gc::store_channels(epi, packed, n, group * prob.c_per_group + c, hw, prob.c_per_group - c,
                         v);
    });
  } else {
    mma.epilogue(reinterpret_cast<A*>(smem), [&](int row, int col, A v) {
      int n, hw;
      if (pixel(row, col, n, hw)) epi.store(n, group * prob.c_per_group + n0 + col, hw, v);
    });
  }
}

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
