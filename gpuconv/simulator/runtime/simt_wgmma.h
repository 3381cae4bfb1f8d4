// Hopper's warpgroup multiply-adds (PTX wgmma.mma_async, wgmma.commit_group, wgmma.wait_group)
// with both operands in shared memory, for the CPU branches of the project's PTX helpers
// (simulator.md, convention 1). As for cp.async (simt_async_copy.h), the model makes a pipeline
// that forgets a wait fail under simulation instead of working by luck:
//
//  - At issue (simt_wgmma_issue) nothing is read: the operation joins the thread's open group.
//  - It is computed when the issuing thread waits for its group (simt_wgmma_wait): the operands
//    are read from shared memory then, and the accumulators written then. A kernel that reads
//    its accumulators before the wait reads their old values; one that overwrites an operand's
//    stage before the wait (a copy into it, without the barrier that follows every warpgroup's
//    wait) multiplies the new bytes, or the NaN a cp.async writes at issue.
//  - Each thread computes its own accumulators, the ones the instruction gives it: no warpgroup
//    collective is needed (the operands are in shared memory, not in other lanes' registers).
//
// The operands are what the project's descriptors describe (ptx.cuh: wgmma_descriptor): K-major
// tiles (rows along k) whose 16-byte chunks are swizzled as the PTX ISA's 32-, 64- and 128-byte
// swizzle modes place them, groups of 8 rows row_bytes * 8 apart (the stride byte offset),
// base offset 0. The swizzle XORs bits [4, 4 + b) of each byte's shared-memory address with bits
// [7, 7 + b) (b = 1, 2, 3): it is a function of the address, so a descriptor's start may step by
// 32 bytes within a row (the next k16 step), but its row 0 must start where the pattern does.
// Here the address is the host address of the simulated shared memory (kernels align their
// stages on it as they do on the shared window's offsets on a GPU).
//
// Layouts (PTX ISA, "Register fragments and shared memory matrix layouts" for wgmma .m64nNk16):
// the warpgroup's threads are 4 consecutive warps; warp w (rank in its warpgroup), lane l:
// d[i] is D(16 w + l / 4 + 8 ((i % 4) / 2), 8 (i / 4) + 2 (l % 4) + i % 2). A is 64 x 16 (m, k)
// and B is n x 16 (n, k), both read along k: D(m, n) += sum_k A(m, k) * B(n, k).
#pragma once

// Fails the launch: a descriptor this model (and the project's descriptors) cannot describe.
static __attribute__((noreturn, noinline, cold)) void simt_wgmma_violation(
    const void* tile, unsigned row_bytes, const char* file, int line, const char* function) {
  char what[256];
  snprintf(what, sizeof what,
           "wgmma: an operand at %p does not start within the first %u-byte row of an aligned "
           "%u-byte swizzle pattern (8 rows): the tiles' stages must be aligned to it",
           tile, row_bytes, 8 * row_bytes);
  simt_trap(what, file, line, function);
}

// Queues d += A * B (m64nNk16, `n` columns) with A and B at `a` and `b` in the `row_bytes`
// swizzle; `bf16`: the operands are __nv_bfloat16, else __half.
static __forceinline__ void simt_wgmma_issue(float* d, const void* a, const void* b, unsigned n,
                                             unsigned row_bytes, bool bf16,
                                             const char* simt_file = __builtin_FILE(),
                                             int simt_line = __builtin_LINE(),
                                             const char* simt_function = __builtin_FUNCTION()) {
  const uintptr_t pattern = 8u * row_bytes;
  if (reinterpret_cast<uintptr_t>(a) % pattern >= row_bytes || reinterpret_cast<uintptr_t>(a) % 16)
    simt_wgmma_violation(a, row_bytes, simt_file, simt_line, simt_function);
  if (reinterpret_cast<uintptr_t>(b) % pattern >= row_bytes || reinterpret_cast<uintptr_t>(b) % 16)
    simt_wgmma_violation(b, row_bytes, simt_file, simt_line, simt_function);
  simt_wgmma_record op;
  op.d = d;
  op.a = a;
  op.b = b;
  op.n = n;
  op.row_bytes = row_bytes;
  op.bf16 = bf16 ? 1u : 0u;
  op.reserved = 0;
  simt_wgmma_enqueue(&op);
}

static __forceinline__ void simt_wgmma_commit() { simt_wgmma_commit_group(); }

// Element (row, k) of a K-major swizzled tile whose row 0 starts at `tile`, as a float.
static __forceinline__ float simt_wgmma_element(const void* tile, unsigned row, unsigned k,
                                                unsigned row_bytes, bool bf16) {
  const uintptr_t mask = row_bytes / 16 - 1;  // 1, 3, 7: the swizzle's b bits
  uintptr_t address = reinterpret_cast<uintptr_t>(tile) + (row / 8) * (8 * row_bytes) +
                      (row % 8) * row_bytes + 2 * k;
  address ^= ((address >> 7) & mask) << 4;
  unsigned short bits;
  __builtin_memcpy(&bits, reinterpret_cast<const void*>(address), sizeof bits);
  return bf16 ? simt_fp::bf16_bits_to_float(bits) : simt_fp::half_bits_to_float(bits);
}

// This thread's accumulators of one operation: products exact in float, summed in k order (the
// tensor cores' internal order and rounding may differ in the last bits).
static __forceinline__ void simt_wgmma_compute(const simt_wgmma_record& op) {
  const unsigned linear = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
  const unsigned warp = (linear / 32) % 4, lane = linear % 32;
  for (unsigned i = 0; i < op.n / 2; ++i) {
    const unsigned row = 16 * warp + lane / 4 + 8 * ((i % 4) / 2);
    const unsigned col = 8 * (i / 4) + 2 * (lane % 4) + i % 2;
    float sum = op.d[i];
    for (unsigned k = 0; k < 16; ++k)
      sum += simt_wgmma_element(op.a, row, k, op.row_bytes, op.bf16) *
             simt_wgmma_element(op.b, col, k, op.row_bytes, op.bf16);
    op.d[i] = sum;
  }
}

// wgmma.wait_group `pending`: every committed group of this thread but the newest `pending` is
// computed (its accumulators written) when this returns, oldest first.
static __forceinline__ void simt_wgmma_wait(unsigned pending) {
  simt_wgmma_record done[8];
  unsigned n;
  do {
    n = simt_wgmma_complete(pending, done, 8);
    for (unsigned i = 0; i < n; ++i) simt_wgmma_compute(done[i]);
  } while (n == 8);
}
