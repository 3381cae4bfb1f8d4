// The project's inline PTX: the tensor-core helpers (ldmatrix with and without .trans,
// mma.sync), the asynchronous global -> shared copies (cp.async) and Hopper's warpgroup
// multiply-adds (wgmma), each with a CPU branch for the simulator (simulator.md, convention 1):
// the mma.sync ones written as warp collectives, the copies through the simulator's model of
// cp.async (issued copies land at the wait), wgmma through its model of wgmma (issued
// multiply-adds are computed at the wait: simt_wgmma.h). No kernel holds an asm statement of its
// own.
//
// Fragment layouts are the PTX ISA's ("Matrix fragments for mma.m16n8k16", "ldmatrix"): with
// gid = lane / 4 and tig = lane % 4, a 32-bit register holds two 16-bit elements, the lower
// index in the low half.
//   A (16 x 16, row-major)   a[0] (gid,     2tig..+1)  a[1] (gid + 8, 2tig..+1)
//                            a[2] (gid,   8+2tig..+1)  a[3] (gid + 8, 8+2tig..+1)
//   B (16 x 8, k x n)        b[0] (k = 2tig..+1, n = gid)   b[1] (k = 8+2tig..+1, n = gid)
//   C, D (16 x 8, float)     d[0], d[1] (gid, 2tig..+1)     d[2], d[3] (gid + 8, 2tig..+1)
// The CPU branches decode exactly these positions, so a GPU run of the kernel tests compares
// the layout the simulator assumes with the hardware's.
#pragma once

#include "dtypes.cuh"

namespace gc {

// This thread's lane in its warp (warps are consecutive linear thread indices).
__device__ __forceinline__ int lane_id() {
  return int((threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x) & 31;
}

// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: four 8 x 8 matrices of 16-bit elements from
// shared memory. Lanes 8j .. 8j+7 give the addresses of matrix j's eight stored rows (16 bytes
// each, 16-byte aligned). Lane t receives in frag[j]:
//   TRANS   the stored elements (row 2(t%4), column t/4) and (row 2(t%4)+1, column t/4): from a
//           k-major tile (stored rows = k) an A or B fragment of mma.m16n8k16;
//   !TRANS  the stored elements (row t/4, columns 2(t%4) and 2(t%4)+1): the same from a tile
//           stored along k (stored rows = m or n).
template <bool TRANS, class T>
__device__ __forceinline__ void ldmatrix_x4(unsigned (&frag)[4], const T* row) {
  static_assert(sizeof(T) == 2, "ldmatrix moves 16-bit elements");
#if defined(__CUDA_ARCH__)
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(row));
  if constexpr (TRANS)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(frag[0]), "=r"(frag[1]), "=r"(frag[2]), "=r"(frag[3])
                 : "r"(address));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(frag[0]), "=r"(frag[1]), "=r"(frag[2]), "=r"(frag[3])
                 : "r"(address));
#elif defined(__SIMT_CPU__)
  const T* rows[32];
  simt_warp_allgather(0xffffffffu, row, rows);
  const int lane = lane_id();
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    // (stored row, column) of the low element; the high one is one row (TRANS) or column on.
    const int r = TRANS ? 2 * (lane % 4) : lane / 4;
    const int c = TRANS ? lane / 4 : 2 * (lane % 4);
    const auto* lo = reinterpret_cast<const unsigned short*>(rows[8 * j + r]) + c;
    const auto* hi = TRANS ? reinterpret_cast<const unsigned short*>(rows[8 * j + r + 1]) + c
                           : lo + 1;
    frag[j] = unsigned(*lo) | (unsigned(*hi) << 16);
  }
#endif
}

#if defined(__SIMT_CPU__)
// The CPU branch of mma_m16n8k16: every lane's fragments gathered, this lane's four outputs
// computed from the positions in the header comment (products exact in float, summed in k
// order; the tensor core's internal order and rounding may differ in the last bits).
template <class T>
__device__ __forceinline__ void mma_m16n8k16_cpu(float (&d)[4], const unsigned (&a)[4],
                                                 const unsigned (&b)[2]) {
  struct Fragments { unsigned a[4], b[2]; };
  Fragments mine;
  for (int i = 0; i < 4; ++i) mine.a[i] = a[i];
  for (int i = 0; i < 2; ++i) mine.b[i] = b[i];
  Fragments all[32];
  simt_warp_allgather(0xffffffffu, mine, all);
  auto element = [](unsigned reg, int k) {
    const unsigned short bits = static_cast<unsigned short>(k % 2 ? reg >> 16 : reg & 0xffffu);
    T value;
    __builtin_memcpy(&value, &bits, sizeof bits);
    return to_acc(value);
  };
  const int lane = lane_id();
  for (int c = 0; c < 4; ++c) {
    const int row = lane / 4 + (c / 2) * 8;
    const int col = 2 * (lane % 4) + c % 2;
    float sum = d[c];
    for (int k = 0; k < 16; ++k) {
      const int holder = (k % 8) / 2;  // tig of the lanes holding column k of A / row k of B
      const float x = element(all[(row % 8) * 4 + holder].a[(row / 8) + 2 * (k / 8)], k);
      const float y = element(all[col * 4 + holder].b[k / 8], k);
      sum += x * y;
    }
    d[c] = sum;
  }
}
#endif

// d += A * B for one m16n8k16 tile of T (__half or __nv_bfloat16), float accumulators.
template <class T>
__device__ __forceinline__ void mma_m16n8k16(float (&d)[4], const unsigned (&a)[4],
                                             const unsigned (&b)[2]);

template <>
__device__ __forceinline__ void mma_m16n8k16<__half>(float (&d)[4], const unsigned (&a)[4],
                                                     const unsigned (&b)[2]) {
#if defined(__CUDA_ARCH__)
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif defined(__SIMT_CPU__)
  mma_m16n8k16_cpu<__half>(d, a, b);
#endif
}

template <>
__device__ __forceinline__ void mma_m16n8k16<__nv_bfloat16>(float (&d)[4], const unsigned (&a)[4],
                                                            const unsigned (&b)[2]) {
#if defined(__CUDA_ARCH__)
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif defined(__SIMT_CPU__)
  mma_m16n8k16_cpu<__nv_bfloat16>(d, a, b);
#endif
}

// cp.async.cg.shared.global, 16 bytes (sm_80+): starts copying 16 bytes from global `src` to
// shared `dst` without passing through registers; with `fill_zeros` the 16 bytes are zeros and
// src is not read (PTX src-size 0), which is how a gather writes its padding. Both addresses
// 16-byte aligned. .cg: cached in L2 only (each block reads a tile once from global memory;
// the reuse is in shared memory). The bytes are there only after a cp_async_wait that covers
// the copy's group, and visible to other threads only after a barrier following that wait.
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, bool fill_zeros) {
#if defined(__CUDA_ARCH__)
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n"
               :
               : "r"(address), "l"(src), "r"(fill_zeros ? 0 : 16));
#elif defined(__SIMT_CPU__)
  simt_async_copy(dst, src, 16, fill_zeros ? 0 : 16);
#endif
}

// cp.async.ca.shared.global of one 4- or 8-byte element (sm_80+): the CUDA-core tiles' copies
// (async_gemm.cuh), whose gathers have no aligned 16-byte runs. .ca because PTX allows .cg only
// for 16 bytes. Both addresses aligned to BYTES; fill_zeros as for cp_async_16.
template <int BYTES>
__device__ __forceinline__ void cp_async_element(void* dst, const void* src, bool fill_zeros) {
  static_assert(BYTES == 4 || BYTES == 8, "one float or one double per copy");
#if defined(__CUDA_ARCH__)
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n"
               :
               : "r"(address), "l"(src), "n"(BYTES), "r"(fill_zeros ? 0 : BYTES));
#elif defined(__SIMT_CPU__)
  simt_async_copy(dst, src, BYTES, fill_zeros ? 0 : BYTES);
#endif
}

// cp.async.commit_group: the thread's copies since its last commit form one group.
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.commit_group;\n" ::);
#elif defined(__SIMT_CPU__)
  simt_async_commit();
#endif
}

// cp.async.wait_group PENDING: returns once at most PENDING of the thread's newest committed
// groups are still in flight (all older ones have landed). The memory clobber keeps the
// compiler from moving shared-memory reads above it.
template <int PENDING>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.wait_group %0;\n" ::"n"(PENDING) : "memory");
#elif defined(__SIMT_CPU__)
  simt_async_wait(PENDING);
#endif
}

// The shared-memory address of `p` (a pointer into shared memory): the offset in the block's
// shared window on a GPU, whose low bits the swizzled layouts depend on; the host address's low
// 32 bits in the simulator, where kernels align the same way.
__device__ __forceinline__ unsigned shared_address(const void* p) {
#if defined(__CUDA_ARCH__)
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
#else
  return static_cast<unsigned>(reinterpret_cast<unsigned long long>(p));
#endif
}

// fence.proxy.async.shared::cta (sm_90+): this thread's writes to shared memory so far (its
// landed cp.async copies included: the generic proxy) become visible to the async proxy that
// wgmma reads its shared-memory operands through. Before the barrier that hands a stage to the
// warpgroups. Nothing to model on the CPU (one memory).
__device__ __forceinline__ void fence_async_shared() {
#if defined(__CUDA_ARCH__)
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

// ---- wgmma (sm_90a: compiled only in families built for that architecture) -----------------
//
// wgmma.mma_async.sync.aligned.m64nNk16.f32.{f16,bf16}: the 4 warps of a warpgroup (128
// consecutive threads, the first a multiple of 128) multiply a 64 x 16 A by a 16 x N B, both read
// from shared memory through descriptors, into float accumulators in registers, asynchronously:
// wgmma_fence before the first of a batch (the accumulators' earlier writes), wgmma_commit to
// close a group, wgmma_wait<PENDING> before reading the accumulators or overwriting an operand.
// Accumulator layout (warp w of the warpgroup, lane l): d[i] is D(16 w + l / 4 + 8 ((i % 4) / 2),
// 8 (i / 4) + 2 (l % 4) + i % 2): per 8 columns, mma.m16n8k16's C layout (header comment) for
// each warp's 16 rows.

// The shared-memory layout of a wgmma operand tile (PTX ISA, "Shared Memory Matrix Layout" and
// "Matrix Descriptor"; 16-bit elements), as its descriptor describes it besides the start
// address. The tile is made of swizzle atoms: 8 rows of SWIZZLE_BYTES (32, 64 or 128) whose
// 16-byte chunks are XOR-swizzled, chunk c of row r at c ^ (r / (128 / SWIZZLE_BYTES)) %
// (SWIZZLE_BYTES / 16) when the atom starts where the pattern does (mma_gemm.cuh
// KChunkSwizzle).
//  - K-major (MN_MAJOR false, imm-trans 0): a row holds SWIZZLE_BYTES / 2 consecutive k of one
//    m (or n); atoms of 8 rows are SBO bytes apart along m (n); LBO is unused by the swizzled
//    modes (16). The next k16 step starts 32 bytes on along the rows.
//  - MN-major (MN_MAJOR true, imm-trans 1): a row holds SWIZZLE_BYTES / 2 consecutive m (or n)
//    of one k, the atom's 8 rows are k .. k + 7; atoms are LBO bytes apart along m (n) and SBO
//    bytes apart along k (per 8 k). The next k16 step starts two atoms on along k. This is
//    CUTLASS's make_gmma_desc<Major::MN> canonical form ((T, W, m), (8, k)) : ((1, T, LBO),
//    (W T, SBO)) in 16-byte units, T = 8 elements, W = SWIZZLE_BYTES / 16.
// FIELDS: the descriptor's bits other than the start address: LBO [16, 30) and SBO [32, 46) in
// 16-byte units, base offset [49, 52) = 0 (every tile starts where the pattern does), swizzle
// mode [62, 64): 1 = 128-byte, 2 = 64-byte, 3 = 32-byte. The simulator's model decodes the same
// bits (simt_wgmma.h), so a GPU and the simulator read a tile through one description.
template <bool MN_MAJOR_, int SWIZZLE_BYTES_, int LBO_, int SBO_>
struct WgmmaLayout {
  static_assert(SWIZZLE_BYTES_ == 32 || SWIZZLE_BYTES_ == 64 || SWIZZLE_BYTES_ == 128,
                "a wgmma swizzle mode");
  static_assert(LBO_ % 16 == 0 && SBO_ % 16 == 0 && LBO_ < (1 << 18) && SBO_ < (1 << 18),
                "byte offsets in 16-byte units, 14 bits");
  static constexpr bool MN_MAJOR = MN_MAJOR_;
  static constexpr int SWIZZLE_BYTES = SWIZZLE_BYTES_;
  static constexpr int LBO = LBO_;
  static constexpr int SBO = SBO_;
  // Elements of m (n) per MN-major row: what an operand's m (n) extent is a multiple of.
  static constexpr int ATOM_MN = MN_MAJOR ? SWIZZLE_BYTES / 2 : 8;
  static constexpr unsigned K16_BYTES = MN_MAJOR ? 2 * SBO : 32;
  static constexpr unsigned long long MODE = SWIZZLE_BYTES == 128 ? 1 : SWIZZLE_BYTES == 64 ? 2 : 3;
  static constexpr unsigned long long FIELDS =
      (static_cast<unsigned long long>(LBO >> 4) << 16) |
      (static_cast<unsigned long long>(SBO >> 4) << 32) | (MODE << 62);
};

// The K-major tiles of the forward and data-gradient kernels: ROW_BYTES-byte rows along k.
template <int ROW_BYTES>
using WgmmaKMajor = WgmmaLayout<false, ROW_BYTES, 16, 8 * ROW_BYTES>;
// MN-major tiles in the 128-byte swizzle (64 m or n per row) whose 64-wide slabs are LBO bytes
// apart and whose rows (one k each) follow one another within a slab.
template <int LBO>
using WgmmaMnMajor128 = WgmmaLayout<true, 128, LBO, 8 * 128>;

// The matrix descriptor of an operand tile of `Layout` starting at `tile` (shared memory).
template <class Layout>
__device__ __forceinline__ unsigned long long wgmma_descriptor(const void* tile) {
  return static_cast<unsigned long long>((shared_address(tile) & 0x3FFFF) >> 4) | Layout::FIELDS;
}

// A wgmma operand tile in shared memory laid out as `Layout`: its descriptor on a GPU
// (wgmma_descriptor), its address in the simulator (whose model reads the bytes there through
// Layout::FIELDS). at(bytes) is the tile `bytes` further on (another stage, the next k16 step; a
// multiple of 16): on a GPU one 64-bit addition of bytes / 16 to the descriptor's start-address
// field, which cannot carry out of it (a shared-memory address / 16 stays below 2^14). So the
// kernels make their descriptors once, before the main loop, not per wgmma (~25 instructions
// per k-tile: kernels/conv/NOTES_backward.md "Fewer instructions per k-tile in the 8-channel
// gathers").
template <class Layout>
struct WgmmaTileRef {
#if defined(__CUDA_ARCH__)
  unsigned long long desc;
  __device__ __forceinline__ explicit WgmmaTileRef(const void* tile)
      : desc(wgmma_descriptor<Layout>(tile)) {}
  __device__ __forceinline__ WgmmaTileRef at(unsigned bytes) const {
    WgmmaTileRef moved = *this;
    moved.desc += bytes >> 4;
    return moved;
  }
#else
  const unsigned char* tile;
  __device__ __forceinline__ explicit WgmmaTileRef(const void* t)
      : tile(static_cast<const unsigned char*>(t)) {}
  __device__ __forceinline__ WgmmaTileRef at(unsigned bytes) const {
    return WgmmaTileRef(tile + bytes);
  }
#endif
};

// wgmma.fence.sync.aligned: orders the warpgroup's earlier register writes of the accumulators
// (and shared-memory writes) before the wgmma that follow.
__device__ __forceinline__ void wgmma_fence() {
#if defined(__CUDA_ARCH__)
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}

// Keeps the compiler from moving reads or writes of the accumulators across this point (a
// wgmma writes them asynchronously, which its asm operands cannot say): CUTLASS's
// warpgroup_fence_operand, around every issue and after every wait.
template <int REGS>
__device__ __forceinline__ void wgmma_fence_operands(float (&d)[REGS]) {
#if defined(__CUDA_ARCH__)
#pragma unroll
  for (int i = 0; i < REGS; ++i) asm volatile("" : "+f"(d[i])::"memory");
#endif
}

// wgmma.commit_group.sync.aligned: the thread's wgmma since its last commit form one group.
__device__ __forceinline__ void wgmma_commit() {
#if defined(__CUDA_ARCH__)
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#elif defined(__SIMT_CPU__)
  simt_wgmma_commit();
#endif
}

// wgmma.wait_group.sync.aligned PENDING: returns once at most PENDING of the thread's newest
// committed groups are still running; `d`, the accumulators they write, are then final for all
// older groups.
template <int PENDING, int REGS>
__device__ __forceinline__ void wgmma_wait(float (&d)[REGS]) {
#if defined(__CUDA_ARCH__)
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(PENDING) : "memory");
#elif defined(__SIMT_CPU__)
  simt_wgmma_wait(PENDING);
#endif
  wgmma_fence_operands(d);
}

// The accumulator operands of one wgmma: d[i .. i + 7], then lists of 16, 32, 64.
#define GC_WGMMA_D8(d, i)                                                                     \
  "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), \
      "+f"(d[i + 6]), "+f"(d[i + 7])
#define GC_WGMMA_D16(d) GC_WGMMA_D8(d, 0), GC_WGMMA_D8(d, 8)
#define GC_WGMMA_D32(d) GC_WGMMA_D16(d), GC_WGMMA_D8(d, 16), GC_WGMMA_D8(d, 24)
#define GC_WGMMA_D64(d)                                                                       \
  GC_WGMMA_D32(d), GC_WGMMA_D8(d, 32), GC_WGMMA_D8(d, 40), GC_WGMMA_D8(d, 48), GC_WGMMA_D8(d, 56)
// Their names in the instruction's text, then the operands after them: descriptors of A and B
// and the scale-d predicate's source (1: D += A * B).
#define GC_WGMMA_R8(a, b, c, d, e, f, g, h) \
  "%" #a ", %" #b ", %" #c ", %" #d ", %" #e ", %" #f ", %" #g ", %" #h
#define GC_WGMMA_R16 \
  GC_WGMMA_R8(0, 1, 2, 3, 4, 5, 6, 7) ", " GC_WGMMA_R8(8, 9, 10, 11, 12, 13, 14, 15)
#define GC_WGMMA_R32                                                                          \
  GC_WGMMA_R16 ", " GC_WGMMA_R8(16, 17, 18, 19, 20, 21, 22, 23) ", "                          \
      GC_WGMMA_R8(24, 25, 26, 27, 28, 29, 30, 31)
#define GC_WGMMA_R64                                                                          \
  GC_WGMMA_R32 ", " GC_WGMMA_R8(32, 33, 34, 35, 36, 37, 38, 39) ", "                          \
      GC_WGMMA_R8(40, 41, 42, 43, 44, 45, 46, 47) ", " GC_WGMMA_R8(48, 49, 50, 51, 52, 53, 54, 55) \
      ", " GC_WGMMA_R8(56, 57, 58, 59, 60, 61, 62, 63)
// One wgmma: N, its element type's name, the register list, and the operand numbers of
// desc-a, desc-b, the scale-d source and the immediates imm-trans-a and imm-trans-b (1: the
// operand is MN-major).
#define GC_WGMMA_TEXT(N, TYPE, REGS, DA, DB, SCALE, TA, TB)                                   \
  "{\n.reg .pred p;\nsetp.ne.b32 p, %" #SCALE ", 0;\n"                                        \
  "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TYPE "." TYPE " {" REGS "}, %" #DA       \
  ", %" #DB ", p, 1, 1, %" #TA ", %" #TB ";\n}\n"

// d += A * B: A the warpgroup's 64 x 16 tile, B the N x 16 tile (WgmmaTileRef, each in its own
// layout: K-major or MN-major); T is __half or __nv_bfloat16. N: 32, 64 or 128.
template <class T, int N, class LayoutA, class LayoutB>
__device__ __forceinline__ void wgmma_m64nNk16(float (&d)[N / 2], WgmmaTileRef<LayoutA> a,
                                               WgmmaTileRef<LayoutB> b) {
  static_assert(sizeof(T) == 2, "16-bit operands");
  static_assert(N == 32 || N == 64 || N == 128, "the block tile widths built");
  static_assert(64 % LayoutA::ATOM_MN == 0 && N % LayoutB::ATOM_MN == 0,
                "an MN-major operand is whole rows of its swizzle atoms");
  constexpr int TRANS_A = LayoutA::MN_MAJOR ? 1 : 0;
  constexpr int TRANS_B = LayoutB::MN_MAJOR ? 1 : 0;
#if defined(__CUDA_ARCH__)
  constexpr bool BF16 = IS_BFLOAT16<T>;
  const unsigned long long desc_a = a.desc;
  const unsigned long long desc_b = b.desc;
  // The instruction for N (register list REGS, accumulator operands D), .bf16 or .f16.
#define GC_WGMMA_ISSUE(N, REGS, D, DA, DB, SCALE, TA, TB)                                      \
  if constexpr (BF16)                                                                         \
    asm volatile(GC_WGMMA_TEXT(N, "bf16", REGS, DA, DB, SCALE, TA, TB)                        \
                 : D(d) : "l"(desc_a), "l"(desc_b), "n"(1), "n"(TRANS_A), "n"(TRANS_B));     \
  else                                                                                        \
    asm volatile(GC_WGMMA_TEXT(N, "f16", REGS, DA, DB, SCALE, TA, TB)                         \
                 : D(d) : "l"(desc_a), "l"(desc_b), "n"(1), "n"(TRANS_A), "n"(TRANS_B))
  if constexpr (N == 32) {
    GC_WGMMA_ISSUE(32, GC_WGMMA_R16, GC_WGMMA_D16, 16, 17, 18, 19, 20);
  } else if constexpr (N == 64) {
    GC_WGMMA_ISSUE(64, GC_WGMMA_R32, GC_WGMMA_D32, 32, 33, 34, 35, 36);
  } else {
    GC_WGMMA_ISSUE(128, GC_WGMMA_R64, GC_WGMMA_D64, 64, 65, 66, 67, 68);
  }
#undef GC_WGMMA_ISSUE
#elif defined(__SIMT_CPU__)
  simt_wgmma_issue(d, a.tile, LayoutA::FIELDS, TRANS_A, b.tile, LayoutB::FIELDS, TRANS_B, N,
                   IS_BFLOAT16<T>);
#endif
}

}  // namespace gc
