// A tensor-core GEMM block tile for 16-bit inputs (__half, __nv_bfloat16) with float
// accumulators: the middle piece of simt_gemm.cuh's split (tile loaders / multiply-accumulate /
// epilogue) replaced, the loaders and the main loop kept.
//
// The block's BLOCK_M x BLOCK_N tile is split among WARPS_M x WARPS_N warps of WARP_M x WARP_N;
// a warp's tile is (WARP_M / 16) x (WARP_N / 8) mma.m16n8k16 tiles. MmaTile keeps both operand
// tiles k-major in shared memory as the scalar loaders store them (tile[kk * LD + mn]), but in T
// rather than converted to float, and ldmatrix.trans turns 8 x 8 blocks of them into A and B
// fragments (ptx.cuh). Rows are padded by 8 elements (16 bytes): the 8 row addresses of
// one ldmatrix matrix then fall 4 banks apart (LD * 2 bytes = 4 words mod 32 for
// LD = 128 + 8), covering all 32 banks once. MmaTileK stores them along k instead, for the
// 8-element vector loader below, which copies asynchronously (cp.async) into a deeper
// pipeline of stages (async_gemm.cuh: async_gemm_mainloop); MmaTileAsync keeps the k-major
// layout for the vector loader along mn.
//
// Same interface as SimtMma: compute(smem_a, smem_b) per k-tile, then epilogue(stage, store)
// hands each accumulator with its block-tile (row, col) to the caller.
#pragma once

#include "dtypes.cuh"
#include "async_gemm.cuh"
#include "ptx.cuh"
#include "simt_gemm.cuh"

namespace gc {

template <class T, class Tile, bool LANES_ALONG_M>
struct TensorCoreMma;

template <int BLOCK_M_, int BLOCK_N_, int BLOCK_K_, int WARP_M_, int WARP_N_>
struct MmaTile {
  static constexpr int BLOCK_M = BLOCK_M_;
  static constexpr int BLOCK_N = BLOCK_N_;
  static constexpr int BLOCK_K = BLOCK_K_;
  static constexpr int WARP_M = WARP_M_;
  static constexpr int WARP_N = WARP_N_;
  static constexpr int WARPS_M = BLOCK_M / WARP_M;
  static constexpr int WARPS_N = BLOCK_N / WARP_N;
  static constexpr int THREADS = 32 * WARPS_M * WARPS_N;
  static constexpr int LDA = BLOCK_M + SMEM_PAD<__half>;  // the loaders' row length
  static constexpr int LDB = BLOCK_N + SMEM_PAD<__half>;
  static constexpr int STAGES = 2;
  // Operand tiles stored k-major (stored rows = k); MmaTileK stores them along k.
  static constexpr bool ROWS_ALONG_K = false;
  // Loaded through registers by simt_gemm_mainloop (MmaTileK: cp.async, async_gemm_mainloop).
  static constexpr bool ASYNC_COPY = false;
  // Warp-level mma.sync (wgmma_gemm.cuh's WgmmaTileK: warpgroup wgmma, wgmma_mainloop).
  static constexpr bool WARPGROUP_MMA = false;
  static constexpr int STAGE_A = BLOCK_K * LDA;
  static constexpr int STAGE_B = BLOCK_K * LDB;
  // Elements of T in dynamic shared memory for the main loop.
  static constexpr int SMEM_ELEMENTS = STAGES * (STAGE_A + STAGE_B);
  // The epilogue stages the warps' 16-row slices of one m16 fragment row at a time: WARPS_M *
  // 16 rows of the whole BLOCK_N, in float, rows of TensorCoreMma::STAGE_LD (at most
  // BLOCK_N + EPILOGUE_PAD; gpuconv/conv/gemm_tile.py: MmaTile.smem_bytes).
  static constexpr int STAGE_M = WARPS_M * 16;
  static constexpr int EPILOGUE_PAD = 8;
  static constexpr int EPILOGUE_FLOATS = STAGE_M * (BLOCK_N + EPILOGUE_PAD);

  template <class T> using Smem = T;
  template <class T, bool LANES_ALONG_M> using Mma = TensorCoreMma<T, MmaTile, LANES_ALONG_M>;

  static_assert(WARP_M % 16 == 0 && WARP_N % 16 == 0,
                "a warp tile is whole m16 rows and pairs of n8 columns (one ldmatrix.x4 each)");
  static_assert(BLOCK_M % WARP_M == 0 && BLOCK_N % WARP_N == 0, "warps must split the tile evenly");
  static_assert(BLOCK_K % 16 == 0, "the k-tile is whole k16 steps");
};

// Where the 16-byte chunks (8 consecutive k) of a row of a tile stored along k lie: rows of
// BLOCK_K elements, unpadded, chunk c of row r at chunk c ^ ((r / ROWS_PER_LINE) % CHUNKS) of
// its row (an XOR swizzle, as CUTLASS's shared-memory layouts). Two accesses touch such a tile,
// and each covers the 32 banks once: an ldmatrix matrix (8 consecutive rows, one chunk: the
// swizzle spreads them over the CHUNKS chunk positions of ROWS_PER_LINE rows) and a cp.async
// phase of KVectorLoader (8 threads: ROWS_PER_LINE whole rows, a permutation of their chunks).
// Rows padded to BLOCK_K + 8 (80 bytes) did the first only: two of each cp.async phase's eight
// 16-byte vectors fell on the same banks, a second wavefront for every copy.
template <int BLOCK_K>
struct KChunkSwizzle {
  static constexpr int CHUNKS = BLOCK_K / 8;          // per row
  static_assert(CHUNKS == 2 || CHUNKS == 4 || CHUNKS == 8, "rows of 32, 64 or 128 bytes");
  static constexpr int ROWS_PER_LINE = 8 / CHUNKS;    // rows per 128 bytes (32 banks)
  // Rows this far apart have the same swizzle.
  static constexpr int PERIOD = ROWS_PER_LINE * CHUNKS;
  // The element offset, within its row, of chunk `chunk` of row `row`.
  __device__ __forceinline__ static int offset(int row, int chunk) {
    return (chunk ^ ((row / ROWS_PER_LINE) % CHUNKS)) * 8;
  }
};

// The same block tile with its operand tiles stored along k: row mn of a stage at
// tile[mn * LD + ...], LD = BLOCK_K, its 8-element chunks placed by KChunkSwizzle, for loaders
// that move 8 consecutive k (16 bytes) at a time (KVectorLoader: channels-last activations,
// KRSC weights). ldmatrix without .trans reads the fragments. STAGES k-tiles of shared memory:
// the loader copies asynchronously, STAGES - 1 k-tiles ahead of the one being multiplied
// (async_gemm_mainloop).
template <int BLOCK_M_, int BLOCK_N_, int BLOCK_K_, int WARP_M_, int WARP_N_, int STAGES_>
struct MmaTileK : MmaTile<BLOCK_M_, BLOCK_N_, BLOCK_K_, WARP_M_, WARP_N_> {
  static_assert(STAGES_ >= 2, "one stage being read, at least one being filled");
  static constexpr bool ROWS_ALONG_K = true;
  static constexpr bool ASYNC_COPY = true;
  static constexpr int STAGES = STAGES_;
  static constexpr int LDA = BLOCK_K_;
  static constexpr int LDB = LDA;
  using Swizzle = KChunkSwizzle<BLOCK_K_>;
  static constexpr int STAGE_A = BLOCK_M_ * LDA;
  static constexpr int STAGE_B = BLOCK_N_ * LDB;
  static constexpr int SMEM_ELEMENTS = STAGES * (STAGE_A + STAGE_B);
  template <class T, bool LANES_ALONG_M> using Mma = TensorCoreMma<T, MmaTileK, LANES_ALONG_M>;
};

// Row kk of a k-major stage at tile[kk * LD]: where MmaTileAsync's MnVectorLoader puts vector
// (kk, mn .. mn + 7).
template <int LD_>
struct PaddedRows {
  static constexpr int LD = LD_;
  __device__ __forceinline__ static int offset(int kk, int mn) { return kk * LD + mn; }
};

// The k-major block tile (MmaTile's layout, ldmatrix.trans) filled by cp.async into STAGES
// stages instead of through registers: for loaders that copy 8 consecutive mn (16 bytes) at a
// time (MnVectorLoader: operands contiguous along M or N, the channels-last weight gradient).
template <int BLOCK_M_, int BLOCK_N_, int BLOCK_K_, int WARP_M_, int WARP_N_, int STAGES_>
struct MmaTileAsync : MmaTile<BLOCK_M_, BLOCK_N_, BLOCK_K_, WARP_M_, WARP_N_> {
  using Base = MmaTile<BLOCK_M_, BLOCK_N_, BLOCK_K_, WARP_M_, WARP_N_>;
  static_assert(STAGES_ >= 2, "one stage being read, at least one being filled");
  static constexpr bool ASYNC_COPY = true;
  static constexpr int STAGES = STAGES_;
  static constexpr int SMEM_ELEMENTS = STAGES * (Base::STAGE_A + Base::STAGE_B);
  // Where MnVectorLoader puts a vector of an operand BLOCK_MN wide: the padded k-major rows.
  template <class T, int BLOCK_MN> using MnPlacement = PaddedRows<BLOCK_MN + SMEM_PAD<T>>;
  template <class T, bool LANES_ALONG_M> using Mma = TensorCoreMma<T, MmaTileAsync, LANES_ALONG_M>;
};

// Copies a BLOCK_MN x BLOCK_K operand tile whose rows are contiguous along k in global memory
// into an MmaTileK stage (row mn at tile[mn * LD], chunks by KChunkSwizzle), 8 consecutive k
// (one 16-byte vector)
// per cp.async, straight from global to shared memory (ptx.cuh: cp_async_16): consecutive
// threads take consecutive vectors of a row, each thread ROWS rows. A tile of fewer vectors
// than threads (the 32-filter narrow tile's B) leaves the threads past its last row idle: they
// copy nothing. The Source's vector_at(row, at, from) says whether elements k .. k+7 exist
// (else the copy writes zeros) and sets `from` to them (to any valid address otherwise); the
// launcher guarantees the alignment (k a multiple of 8 within one contiguous run, 16-byte
// aligned rows). Same interface as KContiguousLoader (kk: the thread's first k), but load()
// writes the stage chosen by into() and there is no store(): async_gemm_mainloop drives it.
template <class T, class Source, int BLOCK_MN, int BLOCK_K, int THREADS>
struct KVectorLoader {
  static constexpr int VEC = 8;
  static constexpr int VECTORS = BLOCK_K / VEC;  // per row
  static_assert(BLOCK_K % VEC == 0 && THREADS % VECTORS == 0, "threads must cover whole rows");
  static constexpr int ROW_STEP = THREADS / VECTORS;
  static constexpr bool IDLE_THREADS = ROW_STEP > BLOCK_MN;
  static_assert(IDLE_THREADS || BLOCK_MN % ROW_STEP == 0, "threads must cover the tile evenly");
  static constexpr int ROWS = IDLE_THREADS ? 1 : BLOCK_MN / ROW_STEP;
  static constexpr int LD = BLOCK_K;
  using Swizzle = KChunkSwizzle<BLOCK_K>;
  static_assert(IDLE_THREADS || ROW_STEP % Swizzle::PERIOD == 0,
                "a thread's rows share one swizzle (store_at)");
  // A row index past every operand's last row (sources answer it with "outside": zeros, and
  // no live taps for the precomputed rows).
  static constexpr int NO_ROW = 1 << 30;

  typename Source::Row rows[ROWS];
  T* stage;  // the shared-memory stage the next load() copies into
  int kk, row0;
  int store_at;  // the thread's first vector in a stage (its row0, chunk kk / VEC)

  template <class Rows>
  __device__ __forceinline__ KVectorLoader(const Rows& rows_of, int mn0, int tid) {
    kk = (tid % VECTORS) * VEC;
    row0 = tid / VECTORS;
    store_at = row0 * LD + Swizzle::offset(row0, kk / VEC);
#pragma unroll
    for (int e = 0; e < ROWS; ++e)
      rows[e] = rows_of.row(active() ? mn0 + row0 + e * ROW_STEP : NO_ROW);
  }
  __device__ __forceinline__ bool active() const { return !IDLE_THREADS || row0 < BLOCK_MN; }
  __device__ __forceinline__ void into(T* tile) { stage = tile; }
  __device__ __forceinline__ void load(const Source& src, int k0) {
    const typename Source::Col col = src.column(k0 + kk);
#pragma unroll
    for (int e = 0; e < ROWS; ++e) load_row(e, src, col);
  }
  template <class Position>
  __device__ __forceinline__ void load_row(int e, const Source& src, const Position& at) {
    if (!active()) return;
    const T* from;
    const bool inside = src.vector_at(rows[e], at, from);
    cp_async_16(stage + store_at + e * ROW_STEP * LD, from, !inside);
  }
};

// KVectorLoader for a Source whose column steps by a k-tile without a division
// (Source::advance_by: the data gradient's tap cursor, kernels/conv/dgrad_operands.cuh): start()
// decodes the first k-tile's column; each load() copies at the cursor, then steps it by
// BLOCK_K. StageCopies asks for every k-tile once, in order, from the one started at.
template <class T, class Source, int BLOCK_MN, int BLOCK_K, int THREADS>
struct KVectorCursorLoader : KVectorLoader<T, Source, BLOCK_MN, BLOCK_K, THREADS> {
  using Base = KVectorLoader<T, Source, BLOCK_MN, BLOCK_K, THREADS>;
  typename Source::Col cursor;

  template <class Rows>
  __device__ __forceinline__ KVectorCursorLoader(const Rows& rows_of, int mn0, int tid)
      : Base(rows_of, mn0, tid) {}
  __device__ __forceinline__ void start(const Source& src, int k0) {
    cursor = src.column(k0 + this->kk);
  }
  __device__ __forceinline__ void load(const Source& src, int /*k0: the cursor's*/) {
#pragma unroll
    for (int e = 0; e < Base::ROWS; ++e) this->load_row(e, src, cursor);
    src.advance_by(cursor, BLOCK_K);
  }
};

// Copies a BLOCK_K x BLOCK_MN operand tile whose elements are contiguous along mn in global
// memory (8 consecutive filters of one dy pixel, 8 consecutive channels of one x pixel and tap)
// into a k-major stage (MmaTileAsync: tile[kk * LD + mn]), 8 mn (one 16-byte vector) per
// cp.async: consecutive threads take consecutive vectors of one k, each thread KS consecutive k
// of its vector, stepping the source's k state (Source::advance) as MnContiguousLoader does.
// The Source's row(mn) is the state of the vector's first mn, and vector_at(row, col, from)
// says whether mn .. mn+7 exist at that k (else zeros) and where; the launcher guarantees the
// alignment (vectors never straddle a group or a tap, 16-byte aligned addresses). Placement
// says where vector (kk, mn) goes in the stage: MmaTileAsync's padded k-major rows (PaddedRows)
// by default, a WgmmaTileMN's swizzled slabs (wgmma_gemm.cuh: MnSwizzledSlabs).
template <class T, class Source, int BLOCK_MN, int BLOCK_K, int THREADS,
          class Placement = PaddedRows<BLOCK_MN + SMEM_PAD<T>>>
struct MnVectorLoader {
  static constexpr int VEC = 8;
  static constexpr int VECTORS = BLOCK_MN / VEC;  // per k
  static_assert(BLOCK_MN % VEC == 0 && THREADS % VECTORS == 0, "threads must cover whole k rows");
  static constexpr int K_GROUPS = THREADS / VECTORS;
  static_assert(BLOCK_K % K_GROUPS == 0, "threads must cover the tile evenly");
  static constexpr int KS = BLOCK_K / K_GROUPS;
  static constexpr int LD = Placement::LD;

  typename Source::Row row_state;
  T* stage;  // the shared-memory stage the next load() copies into
  int mn, kk0;

  template <class Rows>
  __device__ __forceinline__ MnVectorLoader(const Rows& rows_of, int mn0, int tid) {
    mn = (tid % VECTORS) * VEC;
    kk0 = (tid / VECTORS) * KS;
    row_state = rows_of.row(mn0 + mn);
  }
  __device__ __forceinline__ void into(T* tile) { stage = tile; }
  __device__ __forceinline__ void load(const Source& src, int k0) {
    typename Source::Col col = src.column(k0 + kk0);
#pragma unroll
    for (int e = 0; e < KS; ++e) {
      const T* from;
      const bool inside = src.vector_at(row_state, col, from);
      cp_async_16(stage + Placement::offset(kk0 + e, mn), from, !inside);
      if (e + 1 < KS) src.advance(col);
    }
  }
};

// The loader of an operand BLOCK_MN wide whose elements are contiguous along mn: a cp.async
// tile's MnVectorLoader, placing vectors where the tile says (Tile::MnPlacement), or
// MnContiguousLoader through registers. A specialization, so that the register-staged tiles
// never name the placement they do not have.
template <bool ASYNC_COPY, class T, class Tile, class Source, int BLOCK_MN>
struct MnOperandLoader {
  using type = MnContiguousLoader<typename Tile::template Smem<T>, Source, BLOCK_MN,
                                  Tile::BLOCK_K, Tile::THREADS>;
};
template <class T, class Tile, class Source, int BLOCK_MN>
struct MnOperandLoader<true, T, Tile, Source, BLOCK_MN> {
  using type = MnVectorLoader<T, Source, BLOCK_MN, Tile::BLOCK_K, Tile::THREADS,
                              typename Tile::template MnPlacement<T, BLOCK_MN>>;
};

// __launch_bounds__ of a kernel that runs one MmaTile per block: its thread count and a
// minimum of 1 block per SM. Measured offline (CUDA 13.0, kernels/conv/NOTES.md "Tensor
// cores"): with no minimum ptxas held some kernels to 128 registers and spilled (16-20 bytes);
// with a minimum of 2 (128 registers at 256 threads) the 128 x 64 NHWC tile spilled 56-112.
#define GC_MMA_LAUNCH_BOUNDS(BLOCK_M, BLOCK_N, BLOCK_K, WARP_M, WARP_N)                      \
  __launch_bounds__(gc::MmaTile<BLOCK_M, BLOCK_N, BLOCK_K, WARP_M, WARP_N>::THREADS, 1)
// The same for a kernel on an MmaTileK (cp.async, no registers holding the next k-tile): a
// minimum of 2 blocks per SM. Measured offline (CUDA 13.0, sm_80 / sm_90): the 128 x 128 tile
// fits in 127 / 128 registers without spilling (139 / 146 with a minimum of 1), so two blocks
// (16 warps) share an H100 SM; the other tiles (70-96 registers) are unchanged.
#define GC_MMA_ASYNC_LAUNCH_BOUNDS(BLOCK_M, BLOCK_N, BLOCK_K, WARP_M, WARP_N)                \
  __launch_bounds__(gc::MmaTile<BLOCK_M, BLOCK_N, BLOCK_K, WARP_M, WARP_N>::THREADS,           \
                    gc::MMA_ASYNC_MIN_BLOCKS)
constexpr int MMA_ASYNC_MIN_BLOCKS = 2;

template <class T, class Tile, bool LANES_ALONG_M>
struct TensorCoreMma {
  static constexpr int FRAGMENTS_M = Tile::WARP_M / 16;
  static constexpr int FRAGMENTS_N = Tile::WARP_N / 8;

  float acc[FRAGMENTS_M][FRAGMENTS_N][4];
  int tid, lane, warp_m, warp_n;

  __device__ __forceinline__ explicit TensorCoreMma(int tid_) : tid(tid_), lane(tid_ % 32) {
    const int warp = tid_ / 32;
    warp_m = warp % Tile::WARPS_M;
    warp_n = warp / Tile::WARPS_M;
#pragma unroll
    for (int i = 0; i < FRAGMENTS_M; ++i)
#pragma unroll
      for (int j = 0; j < FRAGMENTS_N; ++j)
#pragma unroll
        for (int c = 0; c < 4; ++c) acc[i][j][c] = 0.0f;
  }

  // The A and B fragments of one k16 step of the warp's tile.
  struct Fragments {
    unsigned a[FRAGMENTS_M][4];
    unsigned b[FRAGMENTS_N][2];
  };
  static constexpr int K_STEPS = Tile::BLOCK_K / 16;
  // async_gemm_mainloop loads a step's fragments while the previous step multiplies
  // (stepped_mainloop: load_step / multiply_step) where the registers allow two fragment sets
  // beside the accumulators under GC_MMA_ASYNC_LAUNCH_BOUNDS's blocks per SM, with
  // STEP_SPARE_REGISTERS for the loaders and addresses (offline, sm_80 / sm_90: 40-49 more
  // than accumulators and fragments; the 128 x 128 tile's 8 warps of 64 x 32 would need 160
  // of 128 and spilled 128-160 bytes). SimtMma has no fragments.
  static constexpr int ACCUMULATOR_REGISTERS = FRAGMENTS_M * FRAGMENTS_N * 4;
  static constexpr int FRAGMENT_REGISTERS = FRAGMENTS_M * 4 + FRAGMENTS_N * 2;
  static constexpr int STEP_SPARE_REGISTERS = 48;
  static constexpr int REGISTER_CAP =
      65536 / (MMA_ASYNC_MIN_BLOCKS * Tile::THREADS) < 255
          ? 65536 / (MMA_ASYNC_MIN_BLOCKS * Tile::THREADS) : 255;
  static constexpr bool STEPPED = ACCUMULATOR_REGISTERS + 2 * FRAGMENT_REGISTERS +
                                  STEP_SPARE_REGISTERS <= REGISTER_CAP;
  // stepped_mainloop issues a k-tile's copies among its mma (async_gemm.cuh) for the 64 x 64
  // warp tiles: a 4-warp block holds one warp per scheduler, and where it runs alone on its SM
  // (ResNet-50's layer3/4: 98 blocks for 132 SMs) no other warp's mma covers the time that warp
  // spends setting the copies up (H100 ncu: a third of the main loop, kernels/conv/NOTES.md
  // "Session 48 on the H100"). The other tiles run 2-3 blocks to an SM
  // and keep the copies at the top of the k-tile: among the mma, their registers rise past an
  // occupancy step (offline, sm_90: the weight gradient's 64 x 128 tile 161 -> 170, 3 -> 2
  // blocks; the 8-warp 64 x 64 tile 80 -> 88, 3 -> 2).
  static constexpr bool COPIES_AMONG_MMA = ACCUMULATOR_REGISTERS >= 128;

  // acc += A_tile(BLOCK_M x BLOCK_K) * B_tile(BLOCK_K x BLOCK_N), both k-major in shared memory
  // (MmaTile) or both stored along k (MmaTileK).
  __device__ __forceinline__ void compute(const T* smem_a, const T* smem_b) {
#pragma unroll
    for (int k16 = 0; k16 < K_STEPS; ++k16) {
      Fragments f;
      load_step(f, smem_a, smem_b, k16);
      multiply_step(f);
    }
  }

  // The fragments of k16 step `k16` of the stage at smem_a / smem_b.
  __device__ __forceinline__ void load_step(Fragments& f, const T* smem_a, const T* smem_b,
                                            int k16) const {
    // ldmatrix.x4 row addresses: lane l names row l % 8 of matrix l / 8. For A the matrices are
    // (m 0-7, k 0-7), (m 8-15, k 0-7), (m 0-7, k 8-15), (m 8-15, k 8-15) = a[0..3]; for B,
    // (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15) = b[0..1] of two n8
    // fragments. A stored row is a k (k-major tiles) or an m / n (tiles along k).
    const int row = lane % 8;
    const int a_k = (lane / 16) * 8, a_m = ((lane / 8) % 2) * 8;
    const int b_k = ((lane / 8) % 2) * 8, b_n = (lane / 16) * 8;
    const int m = warp_m * Tile::WARP_M + a_m, n = warp_n * Tile::WARP_N + b_n;
    // Elements between the fragments of consecutive i / j pairs.
    constexpr int A_STEP = Tile::ROWS_ALONG_K ? 16 * Tile::LDA : 16;
    constexpr int B_STEP = Tile::ROWS_ALONG_K ? 16 * Tile::LDB : 16;
    const T* a_base = Tile::ROWS_ALONG_K ? smem_a + (m + row) * Tile::LDA
                                         : smem_a + (a_k + row) * Tile::LDA + m;
    const T* b_base = Tile::ROWS_ALONG_K ? smem_b + (n + row) * Tile::LDB
                                         : smem_b + (b_k + row) * Tile::LDB + n;
    const T* a_k16 = a_base + k16_offset(row, a_k, k16, Tile::LDA);
    const T* b_k16 = b_base + k16_offset(row, b_k, k16, Tile::LDB);
#pragma unroll
    for (int i = 0; i < FRAGMENTS_M; ++i) load(f.a[i], a_k16 + i * A_STEP);
#pragma unroll
    for (int j = 0; j < FRAGMENTS_N; j += 2) {
      unsigned pair[4];
      load(pair, b_k16 + (j / 2) * B_STEP);
      f.b[j][0] = pair[0];
      f.b[j][1] = pair[1];
      f.b[j + 1][0] = pair[2];
      f.b[j + 1][1] = pair[3];
    }
  }

  // acc += the step whose fragments `f` holds.
  __device__ __forceinline__ void multiply_step(const Fragments& f) {
#pragma unroll
    for (int i = 0; i < FRAGMENTS_M; ++i)
#pragma unroll
      for (int j = 0; j < FRAGMENTS_N; ++j) mma_m16n8k16<T>(acc[i][j], f.a[i], f.b[j]);
  }

  // Block-tile column of acc[i][j][c] (its row: warp_m * WARP_M + i * 16 + lane / 4 + (c / 2) * 8).
  __device__ __forceinline__ int col(int j, int c) const {
    return warp_n * Tile::WARP_N + j * 8 + 2 * (lane % 4) + c % 2;
  }

  // The epilogue stage's row length in floats. Lanes along M (NCHW: the output's pixels are
  // contiguous) read a column each: an odd length puts a warp's 32 rows on 32 banks. Lanes
  // along N read 4 consecutive columns of a row (one 16-byte load, epilogue_vectors): a length
  // that is a multiple of 4 keeps those loads aligned, and a quarter warp's 8 of them lie in
  // one row (BLOCK_N >= 32), on distinct banks. BLOCK_N + 8 (8 mod 32) also spreads a half
  // warp's fragment stores (4 rows x 8 floats, STS.64) over the 32 banks: 2 wavefronts for
  // the warp's 256 bytes, the least; + 4 would overlap neighbouring rows (4).
  static constexpr int STAGE_LD = LANES_ALONG_M ? Tile::BLOCK_N + 1 : Tile::BLOCK_N + 8;
  static_assert(STAGE_LD <= Tile::BLOCK_N + Tile::EPILOGUE_PAD, "the stage fits EPILOGUE_FLOATS");
  // Columns per epilogue_vectors call.
  static constexpr int EPILOGUE_VECTOR = 4;

  // epilogue: hands every accumulator to store(row, col, value) (block-tile coordinates), as
  // SimtMma::epilogue does: through shared memory, fragment row i of every warp per pass, read
  // back with consecutive threads along the output's contiguous dimension. `stage` holds
  // Tile::EPILOGUE_FLOATS floats; the caller's main loop must be done with it.
  template <class Store>
  __device__ __forceinline__ void epilogue(float* stage, const Store& store) const {
    if constexpr (!LANES_ALONG_M) {
      epilogue_vectors(stage, [&](int row, int col, const float (&v)[EPILOGUE_VECTOR]) {
#pragma unroll
        for (int j = 0; j < EPILOGUE_VECTOR; ++j) store(row, col + j, v[j]);
      });
    } else {
      constexpr int ELEMENTS = Tile::STAGE_M * Tile::BLOCK_N;
      for_each_staged_pass(stage, [&](int pass) {
        for (int e = tid; e < ELEMENTS; e += Tile::THREADS) {
          const int r = e % Tile::STAGE_M;
          const int c = e / Tile::STAGE_M;
          store(stage_row(r, pass), c, stage[r * STAGE_LD + c]);
        }
      });
    }
  }

  // The epilogue of tiles whose output is contiguous along N (lanes along N: channels-last
  // outputs): store(row, col, v) gets EPILOGUE_VECTOR consecutive columns col .. col + 3 of one
  // row at a time (col a multiple of 4), so a caller can finish them with one row's index
  // arithmetic and one vector store. Consecutive threads take consecutive vectors of a row.
  template <class StoreVector>
  __device__ __forceinline__ void epilogue_vectors(float* stage,
                                                   const StoreVector& store) const {
    static_assert(!LANES_ALONG_M, "vectors run along N");
    static_assert(STAGE_LD % EPILOGUE_VECTOR == 0 && Tile::BLOCK_N % EPILOGUE_VECTOR == 0,
                  "whole, 16-byte aligned vectors");
    constexpr int ROW_VECTORS = Tile::BLOCK_N / EPILOGUE_VECTOR;
    constexpr int VECTORS = Tile::STAGE_M * ROW_VECTORS;
    for_each_staged_pass(stage, [&](int pass) {
      for (int e = tid; e < VECTORS; e += Tile::THREADS) {
        const int r = e / ROW_VECTORS;
        const int c = (e % ROW_VECTORS) * EPILOGUE_VECTOR;
        float v[EPILOGUE_VECTOR];
        load_vector<float, EPILOGUE_VECTOR>(stage + r * STAGE_LD + c, v);
        store(stage_row(r, pass), c, v);
      }
    });
  }

 private:
  // read_pass(pass) for each fragment row of the warps, once that row of every warp is in
  // `stage` (rows of STAGE_LD floats: stage row r is block-tile row stage_row(r, pass)).
  template <class ReadPass>
  __device__ __forceinline__ void for_each_staged_pass(float* stage,
                                                       const ReadPass& read_pass) const {
#pragma unroll 1
    for (int pass = 0; pass < FRAGMENTS_M; ++pass) {
      __syncthreads();  // every thread is done with the main loop's tiles / the last pass
      stage_fragment_row(stage, pass);
      __syncthreads();
      read_pass(pass);
    }
  }

  // Elements from a lane's row of the base to its matrix of k16 step `k16` (k: the lane's first
  // k within the step). Tiles along k: the swizzled chunk, which depends on the row only through
  // row % 8, since the warp's and the fragments' first rows are multiples of 8
  // (KChunkSwizzle::PERIOD divides 8). k-major tiles: 16 rows per step.
  __device__ __forceinline__ static int k16_offset(int row, int k, int k16, int ld) {
    if constexpr (Tile::ROWS_ALONG_K) {
      static_assert(8 % Tile::Swizzle::PERIOD == 0, "a matrix's rows start a swizzle period");
      return Tile::Swizzle::offset(row, (k + 16 * k16) / 8);
    } else {
      return k16 * 16 * ld;
    }
  }

  // Four 8 x 8 matrices as fragments: transposed from k-major tiles, as stored otherwise.
  __device__ __forceinline__ static void load(unsigned (&frag)[4], const T* row) {
    ldmatrix_x4<!Tile::ROWS_ALONG_K>(frag, row);
  }

  // The block-tile row of stage row r in pass `pass`: warp row r / 16, row r % 16 of that
  // warp's fragment row `pass`.
  __device__ __forceinline__ static int stage_row(int r, int pass) {
    return (r / 16) * Tile::WARP_M + pass * 16 + r % 16;
  }

  // The branch per pass keeps every accumulator index a compile-time constant.
  __device__ __forceinline__ void stage_fragment_row(float* stage, int pass) const {
#pragma unroll
    for (int i = 0; i < FRAGMENTS_M; ++i) {
      if (i != pass) continue;
#pragma unroll
      for (int j = 0; j < FRAGMENTS_N; ++j)
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          const int r = warp_m * 16 + lane / 4 + (c / 2) * 8;
          stage[r * STAGE_LD + col(j, c)] = acc[i][j][c];
        }
    }
  }
};

}  // namespace gc
