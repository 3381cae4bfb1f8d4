// Integer division by a runtime divisor that is fixed for a whole kernel, as a multiply-high
// and a shift (Granlund & Montgomery; the same construction as CUTLASS's FastDivmod). The
// implicit-GEMM iterators split a GEMM index into (c, r, s) or (n, p, q) in their main loops,
// where a hardware-less 32-bit division would cost ~20 instructions each.
//
// Valid for dividends in [0, 2^31) and divisors >= 1. The 64-bit product compiles to one
// mul.hi on the GPU and is plain C++ for the CPU executor (no intrinsic needed).
#pragma once

namespace gc {

struct FastDivmod {
  int divisor;
  unsigned multiplier;
  unsigned shift;

  __device__ __forceinline__ explicit FastDivmod(int d) : divisor(d), multiplier(0), shift(0) {
    if (d > 1) {
      int log2_ceil = 0;
      while ((1u << log2_ceil) < unsigned(d)) ++log2_ceil;
      const unsigned p = 31u + unsigned(log2_ceil);
      multiplier = unsigned(((1ull << p) + unsigned(d) - 1ull) / unsigned(d));
      shift = p - 32u;
    }
  }

  __device__ __forceinline__ int div(int x) const {
    if (divisor == 1) return x;
    const unsigned hi = unsigned((static_cast<unsigned long long>(unsigned(x)) * multiplier) >> 32);
    return int(hi >> shift);
  }

  __device__ __forceinline__ void divmod(int x, int& quotient, int& remainder) const {
    quotient = div(x);
    remainder = x - quotient * divisor;
  }
};

}  // namespace gc
