// A CUDA-core (SIMT) GEMM block tile: the main loop shared by the implicit-GEMM, pointwise and
// im2col GEMM kernels of kernels/conv/.
//
// The block computes a BLOCK_M x BLOCK_N tile of C = A * B, stepping over the GEMM's k dimension
// BLOCK_K at a time. The pieces follow CUTLASS's split so that a tensor-core variant replaces
// only the middle one:
//   - tile loaders (global -> registers -> shared memory), one per operand, parameterized by a
//     Source that knows how the operand is addressed (a conv gather, weights, a column buffer);
//   - SimtMma: each thread owns THREAD_M x THREAD_N accumulators and does outer products from
//     shared memory (mma_gemm.cuh's TensorCoreMma, warp-level mma.sync tiles, takes its place);
//   - the caller's epilogue, which gets every accumulator with its (row, col) in the block tile.
// Both operand tiles are stored k-major in shared memory, tile[kk * LD + mn] with
// LD = BLOCK_MN + SMEM_PAD<A>, in the tile's shared-memory type Tile::Smem<T>: for SimtTile the
// accumulator type (halves become float once, not at every use), for the tensor-core MmaTile
// T itself; the loaders' A is that type. Two shared-memory stages: while the block computes on
// one, each thread holds the next k-tile in registers and stores it to the other stage
// afterwards, so one __syncthreads per k-tile suffices.
#pragma once

#include "dtypes.cuh"

namespace gc {

// std::conditional without <type_traits> (NVRTC ships no standard library headers).
template <bool COND, class IfTrue, class IfFalse> struct Select { using type = IfTrue; };
template <class IfTrue, class IfFalse> struct Select<false, IfTrue, IfFalse> { using type = IfFalse; };

// __launch_bounds__ of a kernel that runs one SimtTile per block: its thread count, and a
// 128-register budget (the min-blocks argument) for
//   - the narrow tiles of at most 32 accumulators on 128 threads: 4 blocks per SM. Without a
//     min-blocks argument ptxas gave the 8x4 tile of conv2d_pointwise_nhwc 96 registers on sm_80
//     and spilled; with one it does not.
//   - the large tile, 64 accumulators (8x8) on 256 threads, when LARGE_BUDGET: 2 blocks per
//     SM, 16 warps instead of the 8 that its 137-153 registers allowed. The H100 profile of the
//     fp32 128 x 128 implicit GEMM issued one instruction per 3 cycles per warp with 2 warps per
//     scheduler: latency-bound (kernels/conv/NOTES.md "A 128-register budget for the large SIMT
//     tile"). A kernel that would spill at 128 registers passes LARGE_BUDGET false. (The 8x8
//     tile on 128 threads, 128 x 64, spills 120-228 bytes at 128 registers: it keeps 3 blocks.)
// Every other tile passes 0, the same as no argument (no .minnctapersm): a min-blocks of 1 on
// all tiles moved the register counts of most kernels (up to +28).
#define GC_SIMT_LAUNCH_BOUNDS(BLOCK_M, BLOCK_N, THREAD_M, THREAD_N)                      \
  GC_SIMT_LAUNCH_BOUNDS_IF(BLOCK_M, BLOCK_N, THREAD_M, THREAD_N, true)
#define GC_SIMT_LAUNCH_BOUNDS_IF(BLOCK_M, BLOCK_N, THREAD_M, THREAD_N, LARGE_BUDGET)          \
  __launch_bounds__(GC_SIMT_THREADS(BLOCK_M, BLOCK_N, THREAD_M, THREAD_N),                \
                    ((THREAD_M) * (THREAD_N) <= 32 &&                                     \
                     GC_SIMT_THREADS(BLOCK_M, BLOCK_N, THREAD_M, THREAD_N) == 128)        \
                        ? 4                                                               \
                        : ((THREAD_M) * (THREAD_N) == 64 &&                               \
                           GC_SIMT_THREADS(BLOCK_M, BLOCK_N, THREAD_M, THREAD_N) == 256 &&  \
                           (LARGE_BUDGET))                                                \
                              ? 2                                                         \
                              : 0)
#define GC_SIMT_THREADS(BLOCK_M, BLOCK_N, THREAD_M, THREAD_N)                            \
  (((BLOCK_M) / (THREAD_M)) * ((BLOCK_N) / (THREAD_N)))

// Padding of each shared-memory tile row, in elements of the tile's type A: breaks the bank
// pattern of the k-major stores of the k-contiguous loaders (lanes with consecutive kk land LD
// words apart) and keeps rows 16-byte aligned for the vector fragment loads. 4 floats or
// doubles; 8 16-bit elements (the tensor-core tiles, whose ldmatrix rows are 16 bytes).
template <class A>
constexpr int SMEM_PAD = sizeof(A) == 2 ? 8 : 4;

template <class A, class Tile, bool LANES_ALONG_M>
struct SimtMma;

template <int BLOCK_M_, int BLOCK_N_, int BLOCK_K_, int THREAD_M_, int THREAD_N_>
struct SimtTile {
  static constexpr int BLOCK_M = BLOCK_M_;
  static constexpr int BLOCK_N = BLOCK_N_;
  static constexpr int BLOCK_K = BLOCK_K_;
  static constexpr int THREAD_M = THREAD_M_;
  static constexpr int THREAD_N = THREAD_N_;
  static constexpr int THREADS_M = BLOCK_M / THREAD_M;
  static constexpr int THREADS_N = BLOCK_N / THREAD_N;
  static constexpr int THREADS = THREADS_M * THREADS_N;
  static constexpr int LDA = BLOCK_M + SMEM_PAD<float>;  // 4 for float and double alike
  static constexpr int LDB = BLOCK_N + SMEM_PAD<float>;
  static constexpr int STAGES = 2;
  static constexpr bool ASYNC_COPY = false;  // loaded through registers (simt_gemm_mainloop)
  static constexpr bool WARPGROUP_MMA = false;  // wgmma_gemm.cuh's tiles only
  static constexpr bool ROWS_ALONG_K = false;  // k-major tiles (mma_gemm.cuh: MmaTileK)
  // Elements of one stage of each operand tile (k-major: BLOCK_K rows of LDA / LDB).
  static constexpr int STAGE_A = BLOCK_K * LDA;
  static constexpr int STAGE_B = BLOCK_K * LDB;
  // Accumulator-typed elements of dynamic shared memory the main loop needs.
  static constexpr int SMEM_ELEMENTS = STAGES * (STAGE_A + STAGE_B);
  // The epilogue stages one (THREADS_M*4) x (THREADS_N*4) segment of the block tile at a time;
  // rows padded by one element so that column-wise reads are conflict-free.
  static constexpr int STAGE_M = THREADS_M * 4;
  static constexpr int STAGE_N = THREADS_N * 4;
  static constexpr int STAGE_LD = STAGE_N + 1;
  static constexpr int EPILOGUE_ELEMENTS = STAGE_M * STAGE_LD;
  // ... and a kernel that also runs SimtMma::epilogue in it
  // (gpuconv/conv/gemm_tile.py: GemmTile.smem_bytes; mainloop_smem_bytes is SMEM_ELEMENTS).
  static constexpr int STAGED_SMEM_ELEMENTS =
      SMEM_ELEMENTS > EPILOGUE_ELEMENTS ? SMEM_ELEMENTS : EPILOGUE_ELEMENTS;

  // What a kernel written for any block tile (this or mma_gemm.cuh's MmaTile) asks of it: the
  // shared-memory element type of T's operand tiles, and the multiply-accumulate.
  template <class T> using Smem = acc_t<T>;
  template <class T, bool LANES_ALONG_M> using Mma = SimtMma<acc_t<T>, SimtTile, LANES_ALONG_M>;
  static_assert(THREAD_M % 4 == 0 && THREAD_N % 4 == 0, "thread tiles are made of 4-wide vectors");
  static_assert(BLOCK_M % THREAD_M == 0 && BLOCK_N % THREAD_N == 0, "tile must split evenly");
};

// Four consecutive accumulator values from 16-byte-aligned shared memory into dst[0..3].
template <class A>
__device__ __forceinline__ void load_fragment4(A* dst, const A* src) {
  constexpr int VEC = 16 / sizeof(A);  // 4 floats or 2 doubles per 16-byte load
#pragma unroll
  for (int i = 0; i < 4; i += VEC) {
    const Pack<A, VEC> p = pack_at<VEC>(src + i);
#pragma unroll
    for (int j = 0; j < VEC; ++j) dst[i + j] = p.v[j];
  }
}

// The thread-level multiply-accumulate of one block tile.
//
// Each thread's THREAD_M rows are THREAD_M / 4 segments of 4 consecutive rows, segment s at
// s * (BLOCK_M / (THREAD_M / 4)) + tm * 4 (likewise for columns): every fragment is a 16-byte
// vector load and a warp's loads of one segment touch consecutive addresses. LANES_ALONG_M
// puts consecutive threads along M (tm fastest) instead of N: the epilogue's stores are then
// contiguous when M is the output's contiguous dimension (NCHW pixels).
template <class A, class Tile, bool LANES_ALONG_M>
struct SimtMma {
  static constexpr int EPILOGUE_VECTOR = 1;  // epilogue() only (mma_gemm.cuh: epilogue_vectors)
  static constexpr int SEGMENTS_M = Tile::THREAD_M / 4;
  static constexpr int SEGMENTS_N = Tile::THREAD_N / 4;
  static constexpr int SEGMENT_STRIDE_M = Tile::BLOCK_M / SEGMENTS_M;
  static constexpr int SEGMENT_STRIDE_N = Tile::BLOCK_N / SEGMENTS_N;

  static constexpr int PASSES = SEGMENTS_M * SEGMENTS_N;
  // compute() only (mma_gemm.cuh's TensorCoreMma also multiplies k16 step by step).
  static constexpr bool STEPPED = false;

  A acc[Tile::THREAD_M][Tile::THREAD_N];
  int tid, tm, tn;

  __device__ __forceinline__ explicit SimtMma(int tid_) : tid(tid_) {
    tm = LANES_ALONG_M ? tid % Tile::THREADS_M : tid / Tile::THREADS_N;
    tn = LANES_ALONG_M ? tid / Tile::THREADS_M : tid % Tile::THREADS_N;
#pragma unroll
    for (int i = 0; i < Tile::THREAD_M; ++i)
#pragma unroll
      for (int j = 0; j < Tile::THREAD_N; ++j) acc[i][j] = A(0);
  }

  // Block-tile row / column of accumulator acc[i][j].
  __device__ __forceinline__ int row(int i) const {
    return (i / 4) * SEGMENT_STRIDE_M + tm * 4 + (i % 4);
  }
  __device__ __forceinline__ int col(int j) const {
    return (j / 4) * SEGMENT_STRIDE_N + tn * 4 + (j % 4);
  }

  // acc += A_tile(BLOCK_M x BLOCK_K) * B_tile(BLOCK_K x BLOCK_N), both k-major in shared memory.
  __device__ __forceinline__ void compute(const A* smem_a, const A* smem_b) {
#pragma unroll
    for (int kk = 0; kk < Tile::BLOCK_K; ++kk) {
      A a[Tile::THREAD_M];
      A b[Tile::THREAD_N];
#pragma unroll
      for (int s = 0; s < SEGMENTS_M; ++s)
        load_fragment4(a + 4 * s, smem_a + kk * Tile::LDA + s * SEGMENT_STRIDE_M + tm * 4);
#pragma unroll
      for (int s = 0; s < SEGMENTS_N; ++s)
        load_fragment4(b + 4 * s, smem_b + kk * Tile::LDB + s * SEGMENT_STRIDE_N + tn * 4);
#pragma unroll
      for (int i = 0; i < Tile::THREAD_M; ++i)
#pragma unroll
        for (int j = 0; j < Tile::THREAD_N; ++j) acc[i][j] += a[i] * b[j];
    }
  }

  // epilogue: hands every accumulator to store(row, col, value) (block-tile coordinates).
  //
  // The accumulators go through shared memory one segment pair at a time, and a runtime loop
  // reads them back with consecutive threads on consecutive elements of the output's
  // contiguous dimension (M when LANES_ALONG_M). Two gains: the stores are coalesced, and the
  // store code (bias, residual, tanh/sigmoid) is compiled once instead of being inlined for
  // each of the THREAD_M * THREAD_N accumulators (which quadrupled ptxas time).
  // `stage` holds Tile::EPILOGUE_ELEMENTS values; the caller's main loop must be done with it.
  template <class Store>
  __device__ __forceinline__ void epilogue(A* stage, const Store& store) const {
    constexpr int ELEMENTS = Tile::STAGE_M * Tile::STAGE_N;
#pragma unroll 1
    for (int pass = 0; pass < PASSES; ++pass) {
      __syncthreads();  // every thread is done with the main loop's tiles / the last pass
      stage_segment(stage, pass);
      __syncthreads();
      const int row0 = (pass / SEGMENTS_N) * SEGMENT_STRIDE_M;
      const int col0 = (pass % SEGMENTS_N) * SEGMENT_STRIDE_N;
      for (int e = tid; e < ELEMENTS; e += Tile::THREADS) {
        const int r = LANES_ALONG_M ? e % Tile::STAGE_M : e / Tile::STAGE_N;
        const int c = LANES_ALONG_M ? e / Tile::STAGE_M : e % Tile::STAGE_N;
        store(row0 + r, col0 + c, stage[r * Tile::STAGE_LD + c]);
      }
    }
  }

 private:
  // Segment pair `pass` of this thread's accumulators into the stage. The branch per pass
  // keeps every accumulator index a compile-time constant (no local-memory array).
  __device__ __forceinline__ void stage_segment(A* stage, int pass) const {
#pragma unroll
    for (int p = 0; p < PASSES; ++p) {
      if (p != pass) continue;
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
          stage[(tm * 4 + i) * Tile::STAGE_LD + tn * 4 + j] =
              acc[(p / SEGMENTS_N) * 4 + i][(p % SEGMENTS_N) * 4 + j];
    }
  }
};

// Loads a BLOCK_MN x BLOCK_K operand tile whose rows are contiguous along k in global memory
// (weights; NHWC activations): consecutive threads take consecutive k of one row, so a warp
// reads BLOCK_K-element runs; each thread loads one k column of ROWS rows.
//
// Source interface: Row row(int mn) (per-row state, computed once), Col column(int k)
// (per-k state, once per k-tile), T load(const Row&, const Col&) (T{} outside the
// operand; the loader converts it to the tile's type A with to_tile).
// The thread-to-element map of a k-contiguous operand tile (shared by KContiguousLoader and
// async_gemm.cuh's KElementAsyncLoader): consecutive threads on consecutive k of one row, each
// thread one k column of ROWS rows, the rows' Source state computed once.
template <class Source, int BLOCK_MN, int BLOCK_K, int THREADS>
struct KContiguousMap {
  static_assert(THREADS % BLOCK_K == 0, "threads must cover whole k rows");
  static constexpr int ROW_STEP = THREADS / BLOCK_K;
  static_assert(BLOCK_MN % ROW_STEP == 0, "threads must cover the tile evenly");
  static constexpr int ROWS = BLOCK_MN / ROW_STEP;

  typename Source::Row rows[ROWS];
  int kk, row0;

  // `rows`: anything with Source's row(mn) (the source itself, or a row-only part of it).
  template <class Rows>
  __device__ __forceinline__ KContiguousMap(const Rows& rows_of, int mn0, int tid) {
    kk = tid % BLOCK_K;
    row0 = tid / BLOCK_K;
#pragma unroll
    for (int e = 0; e < ROWS; ++e) rows[e] = rows_of.row(mn0 + row0 + e * ROW_STEP);
  }
};

template <class A, class Source, int BLOCK_MN, int BLOCK_K, int THREADS>
struct KContiguousLoader : KContiguousMap<Source, BLOCK_MN, BLOCK_K, THREADS> {
  using Map = KContiguousMap<Source, BLOCK_MN, BLOCK_K, THREADS>;
  using Map::ROW_STEP;
  using Map::ROWS;
  static constexpr int LD = BLOCK_MN + SMEM_PAD<A>;

  A regs[ROWS];

  template <class Rows>
  __device__ __forceinline__ KContiguousLoader(const Rows& rows_of, int mn0, int tid)
      : Map(rows_of, mn0, tid) {}
  __device__ __forceinline__ void load(const Source& src, int k0) {
    const typename Source::Col col = src.column(k0 + this->kk);
#pragma unroll
    for (int e = 0; e < ROWS; ++e) load_row(e, src, col);
  }
  // Row e's element at k position `at` (any position type the source takes; the
  // precomputed-offset loaders of conv_tap_table.cuh pass their own).
  template <class Position>
  __device__ __forceinline__ void load_row(int e, const Source& src, const Position& at) {
    regs[e] = to_tile<A>(src.load(this->rows[e], at));
  }
  __device__ __forceinline__ void store(A* tile) const {
#pragma unroll
    for (int e = 0; e < ROWS; ++e) tile[this->kk * LD + this->row0 + e * ROW_STEP] = regs[e];
  }
};

// Loads a BLOCK_K x BLOCK_MN operand tile whose columns are contiguous along mn in global
// memory (NCHW activations, whose output pixels are neighbours): consecutive threads take
// consecutive mn, and each thread loads KS consecutive k of its one column, stepping the
// source's k state incrementally (Source::advance) instead of dividing again.
// The thread-to-element map of an mn-contiguous operand tile (shared by MnContiguousLoader and
// async_gemm.cuh's MnElementAsyncLoader): consecutive threads on consecutive mn, each thread KS
// consecutive k of its one column.
template <class Source, int BLOCK_MN, int BLOCK_K, int THREADS>
struct MnContiguousMap {
  static_assert(THREADS % BLOCK_MN == 0, "threads must cover whole mn rows");
  static constexpr int K_GROUPS = THREADS / BLOCK_MN;
  static_assert(BLOCK_K % K_GROUPS == 0, "threads must cover the tile evenly");
  static constexpr int KS = BLOCK_K / K_GROUPS;

  typename Source::Row row_state;
  int mn, kk0;

  template <class Rows>
  __device__ __forceinline__ MnContiguousMap(const Rows& rows_of, int mn0, int tid) {
    mn = tid % BLOCK_MN;
    kk0 = (tid / BLOCK_MN) * KS;
    row_state = rows_of.row(mn0 + mn);
  }
};

template <class A, class Source, int BLOCK_MN, int BLOCK_K, int THREADS>
struct MnContiguousLoader : MnContiguousMap<Source, BLOCK_MN, BLOCK_K, THREADS> {
  using Map = MnContiguousMap<Source, BLOCK_MN, BLOCK_K, THREADS>;
  using Map::KS;
  static constexpr int LD = BLOCK_MN + SMEM_PAD<A>;

  A regs[KS];

  template <class Rows>
  __device__ __forceinline__ MnContiguousLoader(const Rows& rows_of, int mn0, int tid)
      : Map(rows_of, mn0, tid) {}
  __device__ __forceinline__ void load(const Source& src, int k0) {
    typename Source::Col col = src.column(k0 + this->kk0);
#pragma unroll
    for (int e = 0; e < KS; ++e) {
      load_k(e, src, col);
      src.advance(col);
    }
  }
  // The thread's e-th k at `at` (any position type the source takes, as load_row above).
  template <class Position>
  __device__ __forceinline__ void load_k(int e, const Source& src, const Position& at) {
    regs[e] = to_tile<A>(src.load(this->row_state, at));
  }
  __device__ __forceinline__ void store(A* tile) const {
#pragma unroll
    for (int e = 0; e < KS; ++e) tile[(this->kk0 + e) * LD + this->mn] = regs[e];
  }
};

// The k-tiles [begin, end) of a GEMM that one block multiplies: all of them, or one split's
// share when the k dimension is split across blocks (split_k.cuh).
struct KTileRange {
  int begin, end;
};

__device__ __forceinline__ KTileRange all_k_tiles(int gemm_k, int block_k) {
  return KTileRange{0, (gemm_k + block_k - 1) / block_k};
}

// The main loop: acc += A(BLOCK_M x k) * B(k x BLOCK_N) for one block tile, over the k of the
// k-tiles in `tiles` (an empty range leaves acc at zero). smem: at least Tile::SMEM_ELEMENTS
// elements of the tile's shared-memory type A (the A operand's stages, then B's).
template <class A, class Tile, class Mma, class LoaderA, class SourceA, class LoaderB, class SourceB>
__device__ __forceinline__ void simt_gemm_mainloop(Mma& mma, LoaderA& loader_a, const SourceA& src_a,
                                                   LoaderB& loader_b, const SourceB& src_b,
                                                   KTileRange tiles, A* smem) {
  static_assert(LoaderA::LD == Tile::LDA && LoaderB::LD == Tile::LDB,
                "the loaders store rows of the tile's padded length");
  A* smem_a = smem;
  A* smem_b = smem + Tile::STAGES * Tile::STAGE_A;
  constexpr int STAGE_A = Tile::STAGE_A;
  constexpr int STAGE_B = Tile::STAGE_B;

  const int k_tiles = tiles.end - tiles.begin;
  const int k_begin = tiles.begin * Tile::BLOCK_K;
  // An empty range (a split left without k-tiles, a block without live taps) loads nothing: its
  // first k-tile would lie past the operands' last one. The same for the whole block.
  if (k_tiles <= 0) return;

  loader_a.load(src_a, k_begin);
  loader_b.load(src_b, k_begin);
  loader_a.store(smem_a);
  loader_b.store(smem_b);
  __syncthreads();

  // main loop
  for (int t = 0; t < k_tiles; ++t) {
    const int stage = t & 1;
    const bool more = t + 1 < k_tiles;
    if (more) {  // next k-tile into registers; its latency hides behind the compute below
      loader_a.load(src_a, k_begin + (t + 1) * Tile::BLOCK_K);
      loader_b.load(src_b, k_begin + (t + 1) * Tile::BLOCK_K);
    }
    mma.compute(smem_a + stage * STAGE_A, smem_b + stage * STAGE_B);
    if (more) {
      loader_a.store(smem_a + (stage ^ 1) * STAGE_A);
      loader_b.store(smem_b + (stage ^ 1) * STAGE_B);
    }
    __syncthreads();
  }
}

// ... over every k-tile of a GEMM of depth gemm_k.
template <class A, class Tile, class Mma, class LoaderA, class SourceA, class LoaderB, class SourceB>
__device__ __forceinline__ void simt_gemm_mainloop(Mma& mma, LoaderA& loader_a, const SourceA& src_a,
                                                   LoaderB& loader_b, const SourceB& src_b,
                                                   int gemm_k, A* smem) {
  simt_gemm_mainloop<A, Tile>(mma, loader_a, src_a, loader_b, src_b,
                              all_k_tiles(gemm_k, Tile::BLOCK_K), smem);
}

}  // namespace gc
