// The wgmma helpers of kernels/common/ptx.cuh on one warpgroup (128 threads), with both operand
// tiles staged in shared memory as the PTX ISA lays out a swizzled tile (written here from the
// rules, not from the project's loaders or WgmmaLayout), then one wgmma of k16 step `step`
// (k = 16 step .. 16 step + 15): d (64 x N, float, row-major) = c + a[:, k] * b[:, k]^T, through
// the accumulator layout of the PTX ISA (warp w, lane l: d[i] at row 16 w + l / 4 + 8 ((i % 4) /
// 2), column 8 (i / 4) + 2 (l % 4) + i % 2). a (64 x KT) and b (N x KT) are T, row-major in
// global memory.
//
// The swizzle (both majors): a tile is made of atoms of 8 rows of S bytes, the first on a
// 1024-byte boundary; the 16-byte chunk c of atom row r sits at chunk c ^ (r / (128 / S)) %
// (S / 16) of its row.
//  - wgmma_tile<T, N, S> (K-major, KT = S / 2): row r of a tile is a's (b's) row r, its k
//    along the row; atoms follow one another (8 rows, S * 8 bytes apart).
//  - wgmma_tile_mn<T, N, S, GROUPS_OUTER> (MN-major, KT = 32): row k of an atom holds S / 2
//    consecutive m (n) of k; an operand's atoms cover its m (n) in S / 2-wide columns and its k
//    in groups of 8. GROUPS_OUTER 0: the columns are the outer order (a column holds all four k
//    groups), LBO = 4 atoms, SBO = 1 atom; 1: the k groups are (a group holds every column),
//    LBO = 1 atom, SBO = the operand's columns in atoms. The two put LBO and SBO on either side
//    of each other, so a descriptor that swapped their meanings fails one of them.
// With `peek`, the accumulators read between the commit and the wait go to `early` (the
// simulator's model computes at the wait: they are still c there; on a GPU such a read is
// undefined, so the GPU test passes peek = 0). `misalign` starts both K-major tiles one row late
// (off the swizzle pattern: the simulator's model traps).
#include "ptx.cuh"

namespace {

// The byte offset of chunk `chunk` of row `row` (0..7) of an atom, swizzled.
template <int S>
__device__ int swizzled_chunk(int row, int chunk) {
  return (chunk ^ ((row / (128 / S)) % (S / 16))) * 16;
}

__device__ unsigned char* aligned_1024(unsigned char* smem) {
  const unsigned misalignment = gc::shared_address(smem) % 1024;
  return smem + (misalignment ? 1024 - misalignment : 0);
}

template <int N>
__device__ void load_accumulators(float (&acc)[N / 2], const float* c) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int i = 0; i < N / 2; ++i)
    acc[i] = c[(16 * warp + lane / 4 + 8 * ((i % 4) / 2)) * N + 8 * (i / 4) + 2 * (lane % 4) +
               i % 2];
}

template <int N>
__device__ void store_accumulators(float* d, const float (&acc)[N / 2]) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int i = 0; i < N / 2; ++i)
    d[(16 * warp + lane / 4 + 8 * ((i % 4) / 2)) * N + 8 * (i / 4) + 2 * (lane % 4) + i % 2] =
        acc[i];
}

// One wgmma of the staged tiles, then d; `early`: the accumulators before the wait.
template <class T, int N, class LayoutA, class LayoutB>
__device__ void multiply(float* d, float* early, const void* a_tile, const void* b_tile,
                         const float* c, int step, int peek) {
  gc::fence_async_shared();
  __syncthreads();
  float acc[N / 2];
  load_accumulators<N>(acc, c);
  gc::wgmma_fence_operands(acc);
  gc::wgmma_fence();
  // The k16 step as the kernels reach it: the tile's reference moved on by K16_BYTES per step.
  gc::wgmma_m64nNk16<T, N>(acc, gc::WgmmaTileRef<LayoutA>(a_tile).at(LayoutA::K16_BYTES * step),
                           gc::WgmmaTileRef<LayoutB>(b_tile).at(LayoutB::K16_BYTES * step));
  gc::wgmma_commit();
  if (peek) store_accumulators<N>(early, acc);
  gc::wgmma_wait<0>(acc);
  store_accumulators<N>(d, acc);
}

}  // namespace

template <class T, int N, int S>
__global__ void wgmma_tile(float* d, float* early, const T* a, const T* b, const float* c,
                           int step, int peek, int misalign) {
  constexpr int W = S / 2;   // k per row
  extern __shared__ __align__(16) unsigned char smem_raw[];
  unsigned char* base = aligned_1024(smem_raw);
  unsigned char* a_tile = base + misalign * S;
  unsigned char* b_tile = base + 64 * S + 1024 + misalign * S;
  auto offset = [](int row, int k) {   // bytes from the tile's start
    return row * S + swizzled_chunk<S>(row % 8, (2 * k) / 16) + 2 * (k % 8);
  };
  for (int e = threadIdx.x; e < 64 * W; e += 128)
    *reinterpret_cast<T*>(a_tile + offset(e / W, e % W)) = a[e];
  for (int e = threadIdx.x; e < N * W; e += 128)
    *reinterpret_cast<T*>(b_tile + offset(e / W, e % W)) = b[e];
  multiply<T, N, gc::WgmmaKMajor<S>, gc::WgmmaKMajor<S>>(d, early, a_tile, b_tile, c, step, peek);
}

template <class T, int N, int S, int GROUPS_OUTER>
__global__ void wgmma_tile_mn(float* d, const T* a, const T* b, const float* c, int step) {
  constexpr int KT = 32, E = S / 2;   // k per operand; m (n) per row
  constexpr int ATOM = 8 * S;
  constexpr int COLUMNS_A = 64 / E, COLUMNS_B = N / E;
  // (column, k group) -> atom: the order GROUPS_OUTER names.
  constexpr int LBO_A = GROUPS_OUTER ? ATOM : (KT / 8) * ATOM;
  constexpr int SBO_A = GROUPS_OUTER ? COLUMNS_A * ATOM : ATOM;
  constexpr int LBO_B = GROUPS_OUTER ? ATOM : (KT / 8) * ATOM;
  constexpr int SBO_B = GROUPS_OUTER ? COLUMNS_B * ATOM : ATOM;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  unsigned char* a_tile = aligned_1024(smem_raw);
  unsigned char* b_tile = a_tile + 64 * KT * 2 + 1024;
  auto offset = [](int i, int k, int lbo, int sbo) {   // element (m or n = i, k), in bytes
    return (i / E) * lbo + (k / 8) * sbo + (k % 8) * S + swizzled_chunk<S>(k % 8, (i % E) / 8) +
           2 * (i % 8);
  };
  for (int e = threadIdx.x; e < 64 * KT; e += 128)
    *reinterpret_cast<T*>(a_tile + offset(e / KT, e % KT, LBO_A, SBO_A)) = a[e];
  for (int e = threadIdx.x; e < N * KT; e += 128)
    *reinterpret_cast<T*>(b_tile + offset(e / KT, e % KT, LBO_B, SBO_B)) = b[e];
  using LayoutA = gc::WgmmaLayout<true, S, LBO_A, SBO_A>;
  using LayoutB = gc::WgmmaLayout<true, S, LBO_B, SBO_B>;
  multiply<T, N, LayoutA, LayoutB>(d, nullptr, a_tile, b_tile, c, step, 0);
}
