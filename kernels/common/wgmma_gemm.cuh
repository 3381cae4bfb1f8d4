// A tensor-core GEMM block tile for Hopper (sm_90a): warpgroup multiply-adds (wgmma) that read
// both operand tiles straight from shared memory, asynchronously, in place of mma_gemm.cuh's
// warp-level mma.sync fed by ldmatrix.
//
// Why: on an H100 the mma.sync tile of the channels-last forward issues three times the
// instructions of cuDNN's wgmma kernel and keeps the tensor pipe 23 % busy against 39 %
// (kernels/conv/NOTES.md, "Session 48 on the H100"): every warp loads its fragments with
// ldmatrix and issues 16-32 HMMA per k16 step, and with one warp per scheduler nothing covers
// the copies' setup. A wgmma takes a warpgroup's whole 64 x N x 16 product from shared memory in
// one instruction and runs while the threads go on (the next k-tile's copies), so the tensor
// cores are fed without registers or instructions per fragment.
//
// The block tile: BLOCK_M / 64 warpgroups, warpgroup g computing rows 64 g .. 64 g + 63 of the
// block's BLOCK_M x BLOCK_N by wgmma m64nBLOCK_Nk16 (so warp w owns rows 16 w .. 16 w + 15: the
// layout of an MmaTile of 16 x BLOCK_N warp tiles, whose epilogue it reuses). Two tiles:
//  - WgmmaTileK (the forward, the data gradient): MmaTileK's operand tiles, rows along k of
//    BLOCK_K = 32 halves (64 bytes), 16-byte chunks swizzled by KChunkSwizzle<32>, chunk c of
//    row r at c ^ (r / 2) % 4, which is wgmma's K-major 64-byte swizzle mode when a stage starts
//    on a 512-byte boundary (ptx.cuh: WgmmaLayout): the 8-channel cp.async loaders
//    (KVectorLoader) fill them unchanged.
//  - WgmmaTileMN (the weight gradient, whose operands are contiguous along M and N): MN-major
//    tiles in the 128-byte swizzle, slabs of 64 m or n by BLOCK_K rows of k (MnSwizzledSlabs),
//    filled by MnVectorLoader, read with wgmma's imm-trans.
// The kernel aligns its dynamic shared memory to SMEM_ALIGN (align_stages).
//
// The main loop (wgmma_mainloop) keeps one k-tile's wgmma running while the next is issued: a
// stage is refilled only once every warpgroup has waited for the wgmma that read it, so the
// copies run AHEAD = STAGES - 2 k-tiles ahead (async_gemm_mainloop's run STAGES - 1 ahead).
#pragma once

#include "async_gemm.cuh"
#include "mma_gemm.cuh"
#include "ptx.cuh"

namespace gc {

template <class T, class Tile>
struct WarpgroupMma;

// What a warpgroup tile adds to the mma.sync tile it derives from (MmaBase: 16 x BLOCK_N warp
// tiles, whose epilogue it runs); its WARPGROUP_MMA hides MmaBase's.
template <class MmaBase>
struct WarpgroupTile : MmaBase {
  static_assert(MmaBase::BLOCK_M % 64 == 0, "whole warpgroups of 64 rows");
  static_assert(MmaBase::BLOCK_N == 32 || MmaBase::BLOCK_N == 64 || MmaBase::BLOCK_N == 128,
                "the wgmma widths built");
  static_assert(MmaBase::STAGES >= 3,
                "one stage read by the running wgmma, one by the next, one filled");
  static constexpr bool WARPGROUP_MMA = true;
  // Where the stages start: a boundary of the swizzle pattern (8 rows, at most 1024 bytes),
  // taken at 1024 so that the descriptors' base offset is 0 under either reading of the PTX
  // ISA's alignment rule (the pattern's repeat, or 1024 bytes for every mode).
  static constexpr int SMEM_ALIGN = 1024;
};

template <int BLOCK_M_, int BLOCK_N_, int STAGES_>
struct WgmmaTileK : WarpgroupTile<MmaTileK<BLOCK_M_, BLOCK_N_, 32, 16, BLOCK_N_, STAGES_>> {
  using Base = MmaTileK<BLOCK_M_, BLOCK_N_, 32, 16, BLOCK_N_, STAGES_>;
  // Rows of BLOCK_K = 32 halves: the 64-byte swizzle, K-major.
  using LayoutA = WgmmaKMajor<Base::BLOCK_K * 2>;
  using LayoutB = LayoutA;
  // Elements from warpgroup g's first row of A to warpgroup g + 1's: 64 rows.
  static constexpr int WARPGROUP_A = 64 * Base::LDA;
  template <class T, bool LANES_ALONG_M> using Mma = WarpgroupMma<T, WgmmaTileK>;
};

// Where MnVectorLoader puts the 8-element vector (kk, mn .. mn + 7) of a WgmmaTileMN stage
// (elements from the stage's start): slabs of 64 mn (128 bytes per k), each holding all BLOCK_K
// rows of its mn in turn, their 16-byte chunks in the 128-byte swizzle (chunk c of row kk at
// c ^ kk % 8; the slab starts on a 1024-byte boundary). A cp.async phase of 8 threads covers one
// row of a slab: the 32 banks once.
template <int BLOCK_K>
struct MnSwizzledSlabs {
  static_assert(BLOCK_K % 8 == 0, "whole swizzle atoms of 8 rows");
  static constexpr int SLAB_MN = 64;
  static constexpr int LD = SLAB_MN;   // elements per row of a slab
  __device__ __forceinline__ static int offset(int kk, int mn) {
    return (mn / SLAB_MN) * (BLOCK_K * SLAB_MN) + kk * SLAB_MN +
           (((mn % SLAB_MN) / 8) ^ (kk % 8)) * 8;
  }
};

// The warpgroup tile for operands contiguous along M and N (the channels-last weight gradient:
// dy rows along the filters, x along the channels): both stages MN-major, MnSwizzledSlabs
// filled by MnVectorLoader, read by wgmma with imm-trans set. BLOCK_K = 32 pixels per k-tile, as
// the mma.sync MmaTileAsync's.
template <int BLOCK_M_, int BLOCK_N_, int STAGES_>
struct WgmmaTileMN : WarpgroupTile<MmaTileAsync<BLOCK_M_, BLOCK_N_, 32, 16, BLOCK_N_, STAGES_>> {
  using Base = MmaTileAsync<BLOCK_M_, BLOCK_N_, 32, 16, BLOCK_N_, STAGES_>;
  static_assert(BLOCK_N_ % 64 == 0, "whole 64-wide slabs of B");
  using Placement = MnSwizzledSlabs<Base::BLOCK_K>;
  template <class T, int BLOCK_MN> using MnPlacement = Placement;
  static constexpr int LDA = Placement::LD;
  static constexpr int LDB = Placement::LD;
  static constexpr int STAGE_A = BLOCK_M_ * Base::BLOCK_K;
  static constexpr int STAGE_B = BLOCK_N_ * Base::BLOCK_K;
  static constexpr int SMEM_ELEMENTS = STAGES_ * (STAGE_A + STAGE_B);
  // A slab (64 mn x 32 k of 2 bytes: 4096 bytes) apart along mn: LBO; SBO is 8 rows of 128 bytes.
  using LayoutA = WgmmaMnMajor128<Base::BLOCK_K * 128>;
  using LayoutB = LayoutA;
  static constexpr int WARPGROUP_A = 64 * Base::BLOCK_K;   // warpgroup g reads A's slab g
  template <class T, bool LANES_ALONG_M> using Mma = WarpgroupMma<T, WgmmaTileMN>;
};

// The dynamic shared memory of a warpgroup tile's kernel from its first SMEM_ALIGN boundary on (the
// launcher adds SMEM_ALIGN - 16 bytes for it: the block's static shared memory comes first, so
// the dynamic part starts only 16-byte aligned).
template <class Tile>
__device__ __forceinline__ unsigned char* align_stages(unsigned char* smem) {
  const unsigned misalignment = shared_address(smem) % Tile::SMEM_ALIGN;
  return smem + (misalignment ? Tile::SMEM_ALIGN - misalignment : 0);
}

// The multiply-accumulate of a WgmmaTileK: TensorCoreMma's accumulators and epilogue (warp w's
// 16 rows: acc[0][j][c] is wgmma's d[4 j + c]), issued per k-tile as one group of wgmma.
template <class T, class Tile>
struct WarpgroupMma : TensorCoreMma<T, Tile, false> {
  using Base = TensorCoreMma<T, Tile, false>;
  static_assert(Base::FRAGMENTS_M == 1 && Base::FRAGMENTS_N * 8 == Tile::BLOCK_N,
                "a warp's accumulators are one wgmma's");
  static constexpr int REGISTERS = Tile::BLOCK_N / 2;
  static constexpr int K_STEPS = Tile::BLOCK_K / 16;

  int warpgroup;

  __device__ __forceinline__ explicit WarpgroupMma(int tid) : Base(tid), warpgroup(tid / 128) {}

  __device__ __forceinline__ float (&accumulators())[REGISTERS] {
    return reinterpret_cast<float(&)[REGISTERS]>(this->acc[0]);
  }

  using LayoutA = typename Tile::LayoutA;
  using LayoutB = typename Tile::LayoutB;
  // The first stage's tiles, this warpgroup's rows of A and all of B (their descriptors on a
  // GPU), made once before the main loop; issue() moves them to its stage.
  struct Stages {
    WgmmaTileRef<LayoutA> a;
    WgmmaTileRef<LayoutB> b;
  };
  __device__ __forceinline__ Stages stages(const T* smem_a, const T* smem_b) const {
    return Stages{WgmmaTileRef<LayoutA>(smem_a + warpgroup * Tile::WARPGROUP_A),
                  WgmmaTileRef<LayoutB>(smem_b)};
  }

  // Starts acc += this warpgroup's rows of A's `stage` times B's, as one committed group; the
  // stage must stay as it is until wait() says the group is done.
  __device__ __forceinline__ void issue(const Stages& first, int stage) {
    float(&d)[REGISTERS] = accumulators();
    const WgmmaTileRef<LayoutA> a = first.a.at(stage * Tile::STAGE_A * int(sizeof(T)));
    const WgmmaTileRef<LayoutB> b = first.b.at(stage * Tile::STAGE_B * int(sizeof(T)));
    wgmma_fence_operands(d);
    wgmma_fence();
#pragma unroll
    for (int k16 = 0; k16 < K_STEPS; ++k16)   // 16 k: 32 bytes along K-major rows, 16 MN-major rows
      wgmma_m64nNk16<T, Tile::BLOCK_N>(d, a.at(LayoutA::K16_BYTES * k16),
                                       b.at(LayoutB::K16_BYTES * k16));
    wgmma_commit();
    wgmma_fence_operands(d);
  }

  // Returns once at most PENDING of this thread's issued groups are still running.
  template <int PENDING>
  __device__ __forceinline__ void wait() {
    wgmma_wait<PENDING>(accumulators());
  }
};

// The main loop of a WgmmaTileK: acc += A(BLOCK_M x k) * B(k x BLOCK_N) over the k-tiles of
// `tiles`, both operands copied by the cp.async loaders (StageCopies) into Tile::STAGES stages of
// `smem` (aligned: align_stages). Iteration t waits for its k-tile's copies (this thread's, then
// fence_async_shared so that wgmma's reads see them, then everyone's at the barrier), issues its
// wgmma, copies k-tile t + AHEAD into the stage k-tile t - 2 was in, and waits for k-tile
// t - 1's wgmma: so at the barrier of iteration t every warpgroup is done reading k-tile t - 2,
// the stage the copies then refill, while k-tile t - 1's wgmma may still run.
template <class T, class Tile, class Mma, class LoaderA, class SourceA, class LoaderB,
          class SourceB>
__device__ __forceinline__ void wgmma_mainloop(Mma& mma, LoaderA& loader_a, const SourceA& src_a,
                                               LoaderB& loader_b, const SourceB& src_b,
                                               KTileRange tiles, T* smem) {
  static_assert(LoaderA::LD == Tile::LDA && LoaderB::LD == Tile::LDB,
                "the loaders store rows of the tile's length");
  constexpr int STAGES = Tile::STAGES;
  constexpr int AHEAD = STAGES - 2;
  StageCopies<T, Tile, LoaderA, SourceA, LoaderB, SourceB> copies(loader_a, src_a, loader_b,
                                                                  src_b, tiles, smem);
  const typename Mma::Stages first = mma.stages(copies.smem_a, copies.smem_b);
#pragma unroll
  for (int s = 0; s < AHEAD; ++s) copies.copy_next();
  int read = 0;  // the stage k-tile t is in
  for (int t = tiles.begin; t < tiles.end; ++t) {
    cp_async_wait<AHEAD - 1>();  // this thread's copies of k-tile t have landed
    fence_async_shared();
    __syncthreads();
    mma.issue(first, read);
    copies.copy_next();
    mma.template wait<1>();
    read = read + 1 == STAGES ? 0 : read + 1;
  }
  mma.template wait<0>();
  cp_async_wait<0>();  // only empty groups remain; the epilogue reuses the shared memory
}

}  // namespace gc
