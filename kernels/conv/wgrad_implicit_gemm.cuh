// The implicit-GEMM weight gradient's block tile, shared by its kernel families
// (wgrad_implicit_gemm.cu: CUDA cores and mma.sync tensor cores; wgrad_implicit_gemm_wgmma.cu:
// Hopper's warpgroup tensor cores): the gathers, main loop and split-K epilogue of one block.
// wgrad_implicit_gemm.cu's header comment says how it works.
#pragma once

#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "mma_gemm.cuh"
#include "simt_gemm.cuh"
#include "../conv/wgrad_operands.cuh"

// Parameters after the shape: the split-K layout and where the sums go (WgradEpilogue).
#define GC_WGRAD_OUTPUT_PARAMS(T) \
  int splits, int pixels_per_split, T *dw, gc::acc_t<T> *ws, int mode

// The block tile (blockIdx.x, blockIdx.y) of group and split blockIdx.z. Tile: a SimtTile, an
// MmaTile, or (NHWC only) an MmaTileAsync or a WgmmaTileMN; smem: the dynamic shared memory
// (aligned to the tile's SMEM_ALIGN for a WgmmaTileMN: gc::align_stages).
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
  // NHWC: along M / N, 8 at a time with cp.async on an MmaTileAsync or a WgmmaTileMN.
  using MnLoaderA =
      typename gc::MnOperandLoader<Tile::ASYNC_COPY, T, Tile, DySource, Tile::BLOCK_M>::type;
  using MnLoaderB =
      typename gc::MnOperandLoader<Tile::ASYNC_COPY, T, Tile, XSource, Tile::BLOCK_N>::type;
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
