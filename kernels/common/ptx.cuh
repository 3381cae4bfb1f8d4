// The project's inline PTX: the tensor-core helpers (ldmatrix with and without .trans,
// mma.sync) and the asynchronous global -> shared copies (cp.async), each with a CPU branch for
// the simulator (simulator.md, convention 1): the tensor-core ones written as warp collectives,
// the copies through the simulator's model of cp.async (issued copies land at the wait).
// No kernel holds an asm statement of its own.
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

}  // namespace gc
