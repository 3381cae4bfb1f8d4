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
// The operands are read as their descriptors describe them (ptx.cuh: WgmmaLayout, whose FIELDS
// this model decodes: the same bits a GPU gets): swizzle atoms of 8 rows of S = 32, 64 or 128
// bytes (the swizzle mode), K-major (imm-trans 0: a row is S / 2 consecutive k of one m or n,
// atoms SBO bytes apart along m or n) or MN-major (imm-trans 1: a row is S / 2 consecutive m or
// n of one k, an atom's rows are 8 consecutive k, atoms LBO bytes apart along m or n and SBO
// bytes apart along k), base offset 0. The swizzle XORs bits [4, 4 + b) of each byte's
// shared-memory address with bits [7, 7 + b) (S = 16 * 2^b): it is a function of the address, so
// a descriptor's start may step by 32 bytes within a K-major row (the next k16 step), but its
// row 0 must start where the pattern does. Here the address is the host address of the simulated
// shared memory (kernels align their stages on it as they do on the shared window's offsets on a
// GPU). Modes this model does not decode (no swizzle, a nonzero base offset) fail the launch.
//
// Layouts (PTX ISA, "Register fragments and shared memory matrix layouts" for wgmma .m64nNk16):
// the warpgroup's threads are 4 consecutive warps; warp w (rank in its warpgroup), lane l:
// d[i] is D(16 w + l / 4 + 8 ((i % 4) / 2), 8 (i / 4) + 2 (l % 4) + i % 2). A is 64 x 16 (m, k)
// and B is n x 16 (n, k): D(m, n) += sum_k A(m, k) * B(n, k).
#pragma once

// One operand of a queued operation as its descriptor describes it.
struct simt_wgmma_operand {
  uintptr_t start;
  unsigned swizzle_bytes;   // S: 32, 64 or 128
  uintptr_t lbo, sbo;       // bytes
  bool mn_major;
};

static __forceinline__ simt_wgmma_operand simt_wgmma_decode(const void* start,
                                                            unsigned long long fields,
                                                            unsigned trans) {
  const unsigned mode = unsigned(fields >> 62);
  simt_wgmma_operand op;
  op.start = reinterpret_cast<uintptr_t>(start);
  op.swizzle_bytes = mode == 1 ? 128u : mode == 2 ? 64u : mode == 3 ? 32u : 0u;
  op.lbo = uintptr_t((fields >> 16) & 0x3FFF) << 4;
  op.sbo = uintptr_t((fields >> 32) & 0x3FFF) << 4;
  op.mn_major = trans != 0;
  return op;
}

// Fails the launch: a descriptor this model (and the project's descriptors) cannot describe.
static __attribute__((noreturn, noinline, cold)) void simt_wgmma_violation(
    const void* tile, unsigned long long fields, const char* file, int line,
    const char* function) {
  const simt_wgmma_operand op = simt_wgmma_decode(tile, fields, 0);
  char what[320];
  if (op.swizzle_bytes == 0 || ((fields >> 49) & 7) != 0)
    snprintf(what, sizeof what,
             "wgmma: the descriptor of the operand at %p has fields 0x%016llx: this model reads "
             "the swizzled modes with base offset 0 only", tile, fields);
  else
    snprintf(what, sizeof what,
             "wgmma: an operand at %p does not start within the first %u-byte row of an aligned "
             "%u-byte swizzle pattern (8 rows): the tiles' stages must be aligned to it",
             tile, op.swizzle_bytes, 8 * op.swizzle_bytes);
  simt_trap(what, file, line, function);
}

static __forceinline__ bool simt_wgmma_readable(const void* tile, unsigned long long fields) {
  const simt_wgmma_operand op = simt_wgmma_decode(tile, fields, 0);
  return op.swizzle_bytes != 0 && ((fields >> 49) & 7) == 0 && op.start % 16 == 0 &&
         op.start % (8u * op.swizzle_bytes) < op.swizzle_bytes;
}

// Queues d += A * B (m64nNk16, `n` columns): A at `a`, B at `b`, each with its descriptor's other
// fields and its imm-trans; `bf16`: the operands are __nv_bfloat16, else __half.
static __forceinline__ void simt_wgmma_issue(float* d, const void* a, unsigned long long fields_a,
                                             unsigned trans_a, const void* b,
                                             unsigned long long fields_b, unsigned trans_b,
                                             unsigned n, bool bf16,
                                             const char* simt_file = __builtin_FILE(),
                                             int simt_line = __builtin_LINE(),
                                             const char* simt_function = __builtin_FUNCTION()) {
  if (!simt_wgmma_readable(a, fields_a))
    simt_wgmma_violation(a, fields_a, simt_file, simt_line, simt_function);
  if (!simt_wgmma_readable(b, fields_b))
    simt_wgmma_violation(b, fields_b, simt_file, simt_line, simt_function);
  simt_wgmma_record op;
  op.d = d;
  op.a = a;
  op.b = b;
  op.fields_a = fields_a;
  op.fields_b = fields_b;
  op.trans_a = trans_a;
  op.trans_b = trans_b;
  op.n = n;
  op.bf16 = bf16 ? 1u : 0u;
  simt_wgmma_enqueue(&op);
}

static __forceinline__ void simt_wgmma_commit() { simt_wgmma_commit_group(); }

// Element (i, k) of an operand (i: its m or n), as a float.
static __forceinline__ float simt_wgmma_element(const simt_wgmma_operand& op, unsigned i,
                                                unsigned k, bool bf16) {
  const uintptr_t s = op.swizzle_bytes;
  uintptr_t address;
  if (op.mn_major) {
    const uintptr_t per_row = s / 2;   // m or n per row
    address = op.start + (i / per_row) * op.lbo + (k / 8) * op.sbo + (k % 8) * s +
              2 * (i % per_row);
  } else {
    address = op.start + (i / 8) * op.sbo + (i % 8) * s + 2 * k;
  }
  const uintptr_t mask = s / 16 - 1;  // 1, 3, 7: the swizzle's b bits
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
  const simt_wgmma_operand a = simt_wgmma_decode(op.a, op.fields_a, op.trans_a);
  const simt_wgmma_operand b = simt_wgmma_decode(op.b, op.fields_b, op.trans_b);
  for (unsigned i = 0; i < op.n / 2; ++i) {
    const unsigned row = 16 * warp + lane / 4 + 8 * ((i % 4) / 2);
    const unsigned col = 8 * (i / 4) + 2 * (lane % 4) + i % 2;
    float sum = op.d[i];
    for (unsigned k = 0; k < 16; ++k)
      sum += simt_wgmma_element(a, row, k, op.bf16) * simt_wgmma_element(b, col, k, op.bf16);
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
