// The implicit-GEMM data gradient's block tile, shared by its kernel families
// (dgrad_implicit_gemm.cu: CUDA cores and mma.sync tensor cores; dgrad_implicit_gemm_wgmma.cu:
// Hopper's warpgroup tensor cores): the stride-phase GEMM's gathers, main loop and epilogue.
// dgrad_implicit_gemm.cu's header comment says how it works.
#pragma once

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
// MmaTile (w: RSKC), or a tile stored along k (MmaTileK, WgmmaTileK; w: RSCK); `epi` writes dx
// (no residual).
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
  // registers or copied (SimtTileAsync: gc::KLoaderFor / MnLoaderFor). The warpgroup tile keeps
  // its k state from one k-tile to the next (the tap cursor: no division per k-tile); the
  // mma.sync tile decodes it afresh, as its 8 warps' 121 of 128 registers leave no room for the
  // cursors (with them ptxas recomputes the fragments' shared addresses in every k-tile: 118 ->
  // 158 instructions; kernels/conv/NOTES_backward.md "Fewer instructions per k-tile ...").
  constexpr bool CURSOR = VECTORS && Tile::WARPGROUP_MMA;
  using VectorLoaderA = typename gc::Select<
      CURSOR, gc::KVectorCursorLoader<T, DySource, Tile::BLOCK_M, Tile::BLOCK_K, Tile::THREADS>,
      gc::KVectorLoader<T, DySource, Tile::BLOCK_M, Tile::BLOCK_K, Tile::THREADS>>::type;
  using VectorLoaderB = typename gc::Select<
      CURSOR,
      gc::KVectorCursorLoader<T, WeightSource, Tile::BLOCK_N, Tile::BLOCK_K, Tile::THREADS>,
      gc::KVectorLoader<T, WeightSource, Tile::BLOCK_N, Tile::BLOCK_K, Tile::THREADS>>::type;
  using LoaderA = typename gc::Select<
      VECTORS, VectorLoaderA,
      typename gc::Select<NHWC, gc::KLoaderFor<Tile, Smem, DySource, Tile::BLOCK_M>,
                          gc::MnLoaderFor<Tile, Smem, DySource, Tile::BLOCK_M>>::type>::type;
  using LoaderB = typename gc::Select<
      VECTORS, VectorLoaderB,
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
  if constexpr (CURSOR) {  // the cursors at the first k-tile (the loop runs from k-tile 0)
    loader_a.start(src_a, 0);
    loader_b.start(src_b, 0);
  }
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
