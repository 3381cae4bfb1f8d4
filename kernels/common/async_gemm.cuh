// The cp.async main loop of the GEMM block tiles (async_gemm_mainloop, and gemm_mainloop, which
// picks it or simt_gemm.cuh's register-staged loop by the tile), and the CUDA-core block tile
// it fills one element per copy (sm_80+): the SimtTile of simt_gemm.cuh with STAGES
// shared-memory stages, STAGES - 1 k-tiles in flight while one is multiplied, for float and
// double operands (a copy cannot convert halves to the float tile type; the half types run on
// tensor cores, whose tiles mma_gemm.cuh fills 8 elements per copy).
//
// Why the CUDA-core tile: in the register-staged loop the next k-tile's global loads must land
// in registers before the thread stores them to shared memory at the end of the same k-tile;
// where ptxas sinks those loads to just before their stores (kernels/conv/NOTES.md, "Where
// ptxas already sinks the loads"), every k-tile waits out a full global-load latency. A
// cp.async has no destination register to wait for: the copy of k-tile t + STAGES - 1 is waited
// for only STAGES - 1 k-tiles later. CUTLASS builds its Ampere SIMT sgemm the same way (one
// 4-byte cp.async per element, 128 x 128 x 8 tiles, 4-5 stages). The loaders also drop the
// registers that held the next k-tile.
//
// The element loaders copy one element per cp.async (4 or 8 bytes: the gathers have no aligned
// 16-byte runs), in the thread-to-element maps and k-major stage layout of simt_gemm.cuh's
// KContiguousLoader / MnContiguousLoader, so the stage a SimtMma reads is the same. A Source
// answers vector_at(row, at, from) about the one element (row, at), as for mma_gemm.cuh's
// 8-element loaders: whether it exists (else the copy writes a zero) and where (any valid
// address otherwise).
#pragma once

#include "dtypes.cuh"
#include "ptx.cuh"
#include "simt_gemm.cuh"

namespace gc {

template <int BLOCK_M_, int BLOCK_N_, int BLOCK_K_, int THREAD_M_, int THREAD_N_, int STAGES_>
struct SimtTileAsync : SimtTile<BLOCK_M_, BLOCK_N_, BLOCK_K_, THREAD_M_, THREAD_N_> {
  using Base = SimtTile<BLOCK_M_, BLOCK_N_, BLOCK_K_, THREAD_M_, THREAD_N_>;
  static_assert(STAGES_ >= 2, "one stage being read, at least one being filled");
  static constexpr bool ASYNC_COPY = true;
  static constexpr int STAGES = STAGES_;
  static constexpr int SMEM_ELEMENTS = STAGES * (Base::STAGE_A + Base::STAGE_B);
  static constexpr int STAGED_SMEM_ELEMENTS =
      SMEM_ELEMENTS > Base::EPILOGUE_ELEMENTS ? SMEM_ELEMENTS : Base::EPILOGUE_ELEMENTS;
};

// Starts copying the element `from` points to (or a zero) into the shared-memory slot `to`.
template <class T>
__device__ __forceinline__ void copy_element(T* to, const T* from, bool inside) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "float or double tiles (halves are converted)");
  cp_async_element<sizeof(T)>(to, from, !inside);
}

// KContiguousLoader's map (simt_gemm.cuh: KContiguousMap), copying into the stage chosen by
// into(). load_row(e, src, at) is the hook the precomputed loaders (conv_tap_table.cuh) call
// with their own positions.
template <class T, class Source, int BLOCK_MN, int BLOCK_K, int THREADS>
struct KElementAsyncLoader : KContiguousMap<Source, BLOCK_MN, BLOCK_K, THREADS> {
  using Map = KContiguousMap<Source, BLOCK_MN, BLOCK_K, THREADS>;
  using Map::ROW_STEP;
  using Map::ROWS;
  static constexpr int LD = BLOCK_MN + SMEM_PAD<T>;

  T* stage;  // the shared-memory stage the next load() copies into

  template <class Rows>
  __device__ __forceinline__ KElementAsyncLoader(const Rows& rows_of, int mn0, int tid)
      : Map(rows_of, mn0, tid) {}
  __device__ __forceinline__ void into(T* tile) { stage = tile; }
  __device__ __forceinline__ void load(const Source& src, int k0) {
    const typename Source::Col col = src.column(k0 + this->kk);
#pragma unroll
    for (int e = 0; e < ROWS; ++e) load_row(e, src, col);
  }
  template <class Position>
  __device__ __forceinline__ void load_row(int e, const Source& src, const Position& at) {
    const T* from;
    const bool inside = src.vector_at(this->rows[e], at, from);
    copy_element(stage + this->kk * LD + this->row0 + e * ROW_STEP, from, inside);
  }
};

// MnContiguousLoader's map (simt_gemm.cuh: MnContiguousMap), copying into the stage chosen by
// into(). load_k(e, src, at): the thread's e-th k at `at`.
template <class T, class Source, int BLOCK_MN, int BLOCK_K, int THREADS>
struct MnElementAsyncLoader : MnContiguousMap<Source, BLOCK_MN, BLOCK_K, THREADS> {
  using Map = MnContiguousMap<Source, BLOCK_MN, BLOCK_K, THREADS>;
  using Map::KS;
  static constexpr int LD = BLOCK_MN + SMEM_PAD<T>;

  T* stage;  // the shared-memory stage the next load() copies into

  template <class Rows>
  __device__ __forceinline__ MnElementAsyncLoader(const Rows& rows_of, int mn0, int tid)
      : Map(rows_of, mn0, tid) {}
  __device__ __forceinline__ void into(T* tile) { stage = tile; }
  __device__ __forceinline__ void load(const Source& src, int k0) {
    typename Source::Col col = src.column(k0 + this->kk0);
#pragma unroll
    for (int e = 0; e < KS; ++e) {
      load_k(e, src, col);
      if (e + 1 < KS) src.advance(col);
    }
  }
  template <class Position>
  __device__ __forceinline__ void load_k(int e, const Source& src, const Position& at) {
    const T* from;
    const bool inside = src.vector_at(this->row_state, at, from);
    copy_element(stage + (this->kk0 + e) * LD + this->mn, from, inside);
  }
};

// The loader of a tile's operand for a Source: KContiguousLoader / MnContiguousLoader for a
// register-staged SimtTile (or MmaTile), their element-copying twins for a SimtTileAsync.
template <class Tile, class A, class Source, int BLOCK_MN>
using KLoaderFor = typename Select<
    Tile::ASYNC_COPY, KElementAsyncLoader<A, Source, BLOCK_MN, Tile::BLOCK_K, Tile::THREADS>,
    KContiguousLoader<A, Source, BLOCK_MN, Tile::BLOCK_K, Tile::THREADS>>::type;
template <class Tile, class A, class Source, int BLOCK_MN>
using MnLoaderFor = typename Select<
    Tile::ASYNC_COPY, MnElementAsyncLoader<A, Source, BLOCK_MN, Tile::BLOCK_K, Tile::THREADS>,
    MnContiguousLoader<A, Source, BLOCK_MN, Tile::BLOCK_K, Tile::THREADS>>::type;

// async_gemm_mainloop's loop for a tensor-core Mma, in CUTLASS's MmaMultistage order: the
// fragments of each k16 step are loaded from shared memory one step ahead, in registers
// (two sets, alternating), and the k-tile's barrier comes before its last step is
// multiplied, so that the next k-tile's first fragments load right after the barrier while
// that step's mma run. A warp then has mma to issue while its ldmatrix reads are in flight,
// also across the barrier, where async_gemm_mainloop's plain loop (below) leaves every warp
// waiting for its first fragments of each k-tile. Same sums in the same order (same bits).
// The copies: at the top of k-tile t, k-tile t + STAGES - 1 goes into k-tile t - 1's stage,
// which every warp finished reading before the barrier of k-tile t - 1 (its last step was in
// registers): copy_next copies it if it exists, copy_tile copies it (it exists), skip_tile
// only commits the empty group that keeps the wait count. With Mma::COPIES_AMONG_MMA the
// k-tiles that copy run in a loop of their own, which calls copy_tile with no test, after the
// first step's ldmatrix reads: the copies' address arithmetic and the first step's mma then
// share one block of code, which ptxas interleaves (offline SASS), so the tensor cores keep
// working while the copies are set up. (ptxas keeps shared-memory reads behind the copies'
// writes before them: it cannot tell the stages apart.)
template <class T, class Tile, class Mma, class CopyNext, class CopyTile, class SkipTile>
__device__ __forceinline__ void stepped_mainloop(Mma& mma, KTileRange tiles, const T* smem_a,
                                                 const T* smem_b, CopyNext& copy_next,
                                                 CopyTile& copy_tile, SkipTile& skip_tile) {
  constexpr int STAGES = Tile::STAGES;
  constexpr int STEPS = Mma::K_STEPS;
  static_assert(STEPS % 2 == 0, "the two fragment sets alternate by step within a k-tile");
  typename Mma::Fragments fragments[2];
  int read = 0;                  // the stage k-tile t is in
  cp_async_wait<STAGES - 2>();   // this thread's copies of the first k-tile have landed
  __syncthreads();               // everyone's have
  if (tiles.begin < tiles.end) mma.load_step(fragments[0], smem_a, smem_b, 0);
  auto k_tile = [&](int t, auto& copy) {
    if constexpr (!Mma::COPIES_AMONG_MMA) copy();
#pragma unroll
    for (int k16 = 0; k16 < STEPS; ++k16) {
      if (k16 + 1 < STEPS) {
        mma.load_step(fragments[(k16 + 1) % 2], smem_a + read * Tile::STAGE_A,
                      smem_b + read * Tile::STAGE_B, k16 + 1);
      } else {
        cp_async_wait<STAGES - 2>();  // this thread's copies of k-tile t + 1 have landed
        __syncthreads();              // everyone's have; everyone has read k-tile t
        read = read + 1 == STAGES ? 0 : read + 1;
        if (t + 1 < tiles.end)
          mma.load_step(fragments[0], smem_a + read * Tile::STAGE_A,
                        smem_b + read * Tile::STAGE_B, 0);
      }
      if constexpr (Mma::COPIES_AMONG_MMA) {
        if (k16 == 0) copy();
      }
      mma.multiply_step(fragments[k16 % 2]);
    }
  };
  int t = tiles.begin;
  if constexpr (Mma::COPIES_AMONG_MMA) {
    // k-tile t copies k-tile t + STAGES - 1: those before copy_end do, the last STAGES - 1 not
    for (const int copy_end = tiles.end - (STAGES - 1); t < copy_end; ++t) k_tile(t, copy_tile);
    for (; t < tiles.end; ++t) k_tile(t, skip_tile);
  } else {
    for (; t < tiles.end; ++t) k_tile(t, copy_next);
  }
}

// The copies of a main loop's k-tiles into Tile::STAGES shared-memory stages (A's STAGES tiles
// at smem_a, then B's), in order: copy_next copies k-tile `next` into stage `fill` if it exists
// (copy_tile: it exists) and commits the thread's copies as one group; past the last k-tile
// skip_tile commits an empty group, which keeps the wait count of the loops the same. The
// loaders see load(k0) for the k0 of tiles.begin, tiles.begin + 1, ... once each, in order
// (conv_tap_table.cuh's cursors rely on it).
template <class T, class Tile, class LoaderA, class SourceA, class LoaderB, class SourceB>
struct StageCopies {
  LoaderA& loader_a;
  const SourceA& src_a;
  LoaderB& loader_b;
  const SourceB& src_b;
  T* smem_a;
  T* smem_b;
  int end;   // the k-tiles' end
  int fill;  // the stage the next copies go to
  int next;  // the k-tile they copy

  __device__ __forceinline__ StageCopies(LoaderA& la, const SourceA& sa, LoaderB& lb,
                                         const SourceB& sb, KTileRange tiles, T* smem)
      : loader_a(la), src_a(sa), loader_b(lb), src_b(sb), smem_a(smem),
        smem_b(smem + Tile::STAGES * Tile::STAGE_A), end(tiles.end), fill(0),
        next(tiles.begin) {}

  __device__ __forceinline__ void skip_tile() {
    cp_async_commit();
    ++next;
    fill = fill + 1 == Tile::STAGES ? 0 : fill + 1;
  }
  __device__ __forceinline__ void copy_tile() {
    loader_a.into(smem_a + fill * Tile::STAGE_A);
    loader_b.into(smem_b + fill * Tile::STAGE_B);
    loader_a.load(src_a, next * Tile::BLOCK_K);
    loader_b.load(src_b, next * Tile::BLOCK_K);
    skip_tile();
  }
  __device__ __forceinline__ void copy_next() {
    if (next < end)
      copy_tile();
    else
      skip_tile();
  }
};

// The main loop for loaders that copy asynchronously (mma_gemm.cuh's KVectorLoader and
// MnVectorLoader, the element loaders above) into Tile::STAGES stages: acc += A(BLOCK_M x k) *
// B(k x BLOCK_N) over the k-tiles of `tiles`, as simt_gemm_mainloop computes it, with
// STAGES - 1 k-tiles in flight while one is multiplied. Each iteration waits
// for its k-tile's copies (this thread's with cp_async_wait, everyone's with the barrier), then
// starts the copies of the k-tile STAGES - 1 ahead into the stage the previous iteration
// multiplied (the barrier also says every warp is done with it), then multiplies. Every
// iteration commits a group, empty past the last k-tile (StageCopies), so that the wait count
// stays STAGES - 2. smem: Tile::SMEM_ELEMENTS elements of T. A tensor-core Mma (Mma::STEPPED)
// runs the same waits, copies and sums in stepped_mainloop's order instead.
template <class T, class Tile, class Mma, class LoaderA, class SourceA, class LoaderB, class SourceB>
__device__ __forceinline__ void async_gemm_mainloop(Mma& mma, LoaderA& loader_a, const SourceA& src_a,
                                                    LoaderB& loader_b, const SourceB& src_b,
                                                    KTileRange tiles, T* smem) {
  static_assert(LoaderA::LD == Tile::LDA && LoaderB::LD == Tile::LDB,
                "the loaders store rows of the tile's padded length");
  constexpr int STAGES = Tile::STAGES;
  StageCopies<T, Tile, LoaderA, SourceA, LoaderB, SourceB> copies(loader_a, src_a, loader_b,
                                                                  src_b, tiles, smem);
  auto skip_tile = [&]() { copies.skip_tile(); };
  auto copy_tile = [&]() { copies.copy_tile(); };
  auto copy_next = [&]() { copies.copy_next(); };

#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) copy_next();

  if constexpr (Mma::STEPPED) {
    stepped_mainloop<T, Tile>(mma, tiles, copies.smem_a, copies.smem_b, copy_next, copy_tile,
                              skip_tile);
  } else {
    int read = 0;  // the stage k-tile t is in
    for (int t = tiles.begin; t < tiles.end; ++t) {
      cp_async_wait<STAGES - 2>();  // this thread's copies of k-tile t have landed
      __syncthreads();              // everyone's have; everyone is done with k-tile t - 1
      copy_next();                  // k-tile t + STAGES - 1, into k-tile t - 1's stage
      mma.compute(copies.smem_a + read * Tile::STAGE_A, copies.smem_b + read * Tile::STAGE_B);
      read = read + 1 == STAGES ? 0 : read + 1;
    }
  }
  cp_async_wait<0>();  // only empty groups remain; the epilogue reuses the shared memory
}

// wgmma_gemm.cuh's main loop (Hopper warpgroup tiles), declared here for gemm_mainloop.
template <class T, class Tile, class Mma, class LoaderA, class SourceA, class LoaderB, class SourceB>
__device__ __forceinline__ void wgmma_mainloop(Mma& mma, LoaderA& loader_a, const SourceA& src_a,
                                               LoaderB& loader_b, const SourceB& src_b,
                                               KTileRange tiles, T* smem);

// The main loop the tile's loaders need: cp.async stages for MmaTileK / MmaTileAsync /
// SimtTileAsync (with warpgroup multiply-adds for wgmma_gemm.cuh's WgmmaTileK), registers
// otherwise.
template <class T, class Tile, class Mma, class LoaderA, class SourceA, class LoaderB, class SourceB>
__device__ __forceinline__ void gemm_mainloop(Mma& mma, LoaderA& loader_a, const SourceA& src_a,
                                              LoaderB& loader_b, const SourceB& src_b,
                                              KTileRange tiles, T* smem) {
  if constexpr (Tile::WARPGROUP_MMA)
    wgmma_mainloop<T, Tile>(mma, loader_a, src_a, loader_b, src_b, tiles, smem);
  else if constexpr (Tile::ASYNC_COPY)
    async_gemm_mainloop<T, Tile>(mma, loader_a, src_a, loader_b, src_b, tiles, smem);
  else
    simt_gemm_mainloop<T, Tile>(mma, loader_a, src_a, loader_b, src_b, tiles, smem);
}

// ... over every k-tile of a GEMM of depth gemm_k.
template <class T, class Tile, class Mma, class LoaderA, class SourceA, class LoaderB, class SourceB>
__device__ __forceinline__ void gemm_mainloop(Mma& mma, LoaderA& loader_a, const SourceA& src_a,
                                              LoaderB& loader_b, const SourceB& src_b, int gemm_k,
                                              T* smem) {
  gemm_mainloop<T, Tile>(mma, loader_a, src_a, loader_b, src_b, all_k_tiles(gemm_k, Tile::BLOCK_K),
                         smem);
}

}  // namespace gc
