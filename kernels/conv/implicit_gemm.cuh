// The implicit-GEMM forward convolution's block tile, shared by its kernel families
// (implicit_gemm.cu: CUDA cores and mma.sync tensor cores; implicit_gemm_wgmma.cu: Hopper's
// warpgroup tensor cores): the two gathers of the activations (analytic, precomputed), the
// weights as the B operand, the main loop and the epilogue. implicit_gemm.cu's header comment
// says what each is.
#pragma once

#include "async_gemm.cuh"
#include "conv_operands.cuh"
#include "conv_shape.cuh"
#include "conv_tap_table.cuh"
#include "dtypes.cuh"
#include "epilogue.cuh"
#include "mma_gemm.cuh"
#include "simt_gemm.cuh"
#include "split_k.cuh"

// The main loop over the split's k-tiles and the epilogue of the block tile (blockIdx.x,
// blockIdx.y) of `group`, given both operands' loaders, started at the split's first k-tile.
// Tile: a SimtTile (CUDA cores) or an MmaTile (tensor cores); `smem` holds the main loop's
// operand tiles, then the epilogue's stage.
template <class T, bool NHWC, class Tile, class LoaderA, class SourceA, class LoaderB, class SourceB>
__device__ __forceinline__ void implicit_gemm_block(LoaderA& loader_a, const SourceA& src_a,
                                                    LoaderB& loader_b, const SourceB& src_b,
                                                    gc::KTileRange k_tiles, int group,
                                                    const gc::ConvShape& shape,
                                                    const gc::SplitKOutput<T>& out,
                                                    unsigned char* smem) {
  using A = gc::acc_t<T>;
  using Smem = typename Tile::template Smem<T>;
  const int k_per_group = shape.k_per_group();
  const int m0 = blockIdx.x * Tile::BLOCK_M;
  const int n0 = blockIdx.y * Tile::BLOCK_N;

  using Mma = typename Tile::template Mma<T, !NHWC>;
  Mma mma(threadIdx.x);
  gc::gemm_mainloop<Smem, Tile>(mma, loader_a, src_a, loader_b, src_b, k_tiles,
                                reinterpret_cast<Smem*>(smem));

  // epilogue (the scalar path as written: with a shared (row, col) -> pixel helper, ptxas
  // spills the 128-register SIMT 128x128 tile)
  const gc::FastDivmod div_pq(shape.P * shape.Q);
  const int gemm_m = shape.N * shape.P * shape.Q;
  if constexpr (NHWC && Mma::EPILOGUE_VECTOR > 1) {
    // Channels-last tensor-core tiles: a row's EPILOGUE_VECTOR consecutive filters at a time,
    // one division and (where the strides allow) one vector store for all of them.
    constexpr int L = Mma::EPILOGUE_VECTOR;
    const bool packed = out.template vectors_fit<L>(k_per_group);
    mma.epilogue_vectors(reinterpret_cast<A*>(smem), [&](int row, int col, const A (&v)[L]) {
      const int m = m0 + row;
      const int filter = n0 + col;
      if (m >= gemm_m || filter >= k_per_group) return;
      int n, pq;
      div_pq.divmod(m, n, pq);
      gc::store_channels(out, packed, n, group * k_per_group + filter, pq, k_per_group - filter,
                         v);
    });
  } else {
    mma.epilogue(reinterpret_cast<A*>(smem), [&](int row, int col, A v) {
      const int m = m0 + row;
      const int filter = n0 + col;
      if (m >= gemm_m || filter >= k_per_group) return;
      int n, pq;
      div_pq.divmod(m, n, pq);
      out.store(n, group * k_per_group + filter, pq, v);
    });
  }
}

// The weights as the B operand: one row of C/groups * R * S values per filter of this group.
template <class T>
__device__ __forceinline__ gc::RowMajorSource<T> weight_rows(const T* w, const gc::ConvShape& s,
                                                             int group) {
  const int gemm_k = s.c_per_group() * s.R * s.S;
  return gc::RowMajorSource<T>{w, s.k_per_group(), gemm_k, gemm_k, group * s.k_per_group()};
}

// The analytic gather (conv_operands.cuh).
template <class T, bool NHWC, class Tile>
__device__ __forceinline__ void implicit_gemm_analytic(const T* x, const T* w,
                                                       const gc::ConvShape& shape,
                                                       const gc::Epilogue<T>& epi, int splits,
                                                       gc::acc_t<T>* partial,
                                                       unsigned char* smem) {
  using Smem = typename Tile::template Smem<T>;
  using Source = typename gc::Select<NHWC, gc::NhwcActivationSource<T>,
                                     gc::NchwActivationSource<T>>::type;
  using Loader = typename gc::Select<
      NHWC, gc::KContiguousLoader<Smem, Source, Tile::BLOCK_M, Tile::BLOCK_K, Tile::THREADS>,
      gc::MnContiguousLoader<Smem, Source, Tile::BLOCK_M, Tile::BLOCK_K, Tile::THREADS>>::type;

  const gc::GemmSlice slice(splits);
  const Source src_a(x, shape, slice.group);
  Loader loader_a(src_a, blockIdx.x * Tile::BLOCK_M, threadIdx.x);
  const gc::RowMajorSource<T> src_b = weight_rows(w, shape, slice.group);
  gc::KContiguousLoader<Smem, gc::RowMajorSource<T>, Tile::BLOCK_N, Tile::BLOCK_K, Tile::THREADS>
      loader_b(src_b, blockIdx.y * Tile::BLOCK_N, threadIdx.x);
  implicit_gemm_block<T, NHWC, Tile>(
      loader_a, src_a, loader_b, src_b,
      gc::split_k_tiles(src_b.cols, Tile::BLOCK_K, slice.split, splits), slice.group, shape,
      gc::SplitKOutput<T>(epi, partial, splits, slice.split, shape), smem);
}

// The precomputed-offsets gather (conv_tap_table.cuh); `live`: the block's live-tap table.
// A tile stored along k (MmaTileK, NHWC only) takes both operands 8 channels at a time.
template <class T, bool NHWC, class Tile>
__device__ __forceinline__ void implicit_gemm_precomputed(const T* x, const T* w,
                                                          const gc::ConvShape& shape,
                                                          const gc::Epilogue<T>& epi, int splits,
                                                          gc::acc_t<T>* partial,
                                                          gc::LiveTaps& live,
                                                          unsigned char* smem) {
  using Smem = typename Tile::template Smem<T>;
  using Source = typename gc::Select<NHWC, gc::PrecomputedNhwcSource<T>,
                                     gc::PrecomputedNchwSource<T>>::type;
  using Weights = gc::RowMajorSource<T>;
  static_assert(NHWC || !Tile::ROWS_ALONG_K, "vector loads need channels-last activations");
  // The maps of the operand tiles' elements to threads: 8 k per copy for a tile stored along
  // k, else one element per thread and k (through registers, or copied: gc::KLoaderFor).
  using RowsA = typename gc::Select<
      Tile::ROWS_ALONG_K, gc::KVectorLoader<T, Source, Tile::BLOCK_M, Tile::BLOCK_K, Tile::THREADS>,
      gc::KLoaderFor<Tile, Smem, Source, Tile::BLOCK_M>>::type;
  using RowsB = typename gc::Select<
      Tile::ROWS_ALONG_K, gc::KVectorLoader<T, Weights, Tile::BLOCK_N, Tile::BLOCK_K, Tile::THREADS>,
      gc::KLoaderFor<Tile, Smem, Weights, Tile::BLOCK_N>>::type;
  using Loader = typename gc::Select<
      NHWC, gc::PrecomputedKLoader<Smem, Source, Tile::BLOCK_M, Tile::BLOCK_K, Tile::THREADS, RowsA>,
      gc::PrecomputedMnLoader<Smem, Source, Tile::BLOCK_M, Tile::BLOCK_K, Tile::THREADS,
                              gc::MnLoaderFor<Tile, Smem, Source, Tile::BLOCK_M>>>::type;

  // The rows first: their tap masks decide which taps the block's k runs over (the same for
  // every split of the tile: the splits share out the same k-tiles).
  const gc::GemmSlice slice(splits);
  Loader loader_a(gc::PrecomputedRows<NHWC>(shape, slice.group), blockIdx.x * Tile::BLOCK_M,
                  threadIdx.x);
  const int live_taps = gc::collect_live_taps<Tile::THREADS>(
      live, loader_a.taps(), shape, NHWC ? shape.C : 1, NHWC ? shape.c_per_group() : 1,
      threadIdx.x);
  const gc::KTileRange k_tiles = gc::split_k_tiles(shape.c_per_group() * live_taps,
                                                   Tile::BLOCK_K, slice.split, splits);
  const Source src_a(x, live, live_taps, shape);
  loader_a.start(src_a, k_tiles.begin * Tile::BLOCK_K);
  const Weights src_b = weight_rows(w, shape, slice.group);
  gc::LiveTapWeightLoader<Smem, T, NHWC, Tile::BLOCK_N, Tile::BLOCK_K, Tile::THREADS, RowsB>
      loader_b(src_b, live, live_taps, shape, blockIdx.y * Tile::BLOCK_N, threadIdx.x,
               k_tiles.begin * Tile::BLOCK_K);
  implicit_gemm_block<T, NHWC, Tile>(loader_a, src_a, loader_b, src_b, k_tiles, slice.group,
                                     shape,
                                     gc::SplitKOutput<T>(epi, partial, splits, slice.split, shape),
                                     smem);
}
