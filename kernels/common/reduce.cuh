// Warp-level reductions used by the pooling kernels: sums and (max, argmax) pairs.
//
// Every reduction here is a fixed butterfly over the lanes, so its summation order depends only
// on the launch configuration, never on scheduling: results are bitwise reproducible run to run.
// All lanes of the warp must call these (full mask), active or not; inactive lanes contribute the
// identity.
#pragma once

#include "pool_window.cuh"

namespace gc {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kWarpSize = 32;

// Sum over groups of `width` consecutive lanes (width a power of two <= 32); every lane of a
// group receives the group's sum.
template <class A>
__device__ __forceinline__ A warp_sum(A value, int width = kWarpSize) {
  for (int offset = width / 2; offset > 0; offset /= 2) {
    value += __shfl_xor_sync(kFullMask, value, offset, width);
  }
  return value;
}

// A running maximum and the flat index where it was found. The empty value is
// (-inf, kNoIndex): it loses every combine, even against -inf, because the index breaks the tie.
constexpr int kNoIndex = 0x7fffffff;

template <class A>
struct MaxArg {
  A value;
  int index;
};

template <class A>
__device__ __forceinline__ MaxArg<A> max_arg_empty() {
  MaxArg<A> m;
  m.value = acc_lowest<A>();
  m.index = kNoIndex;
  return m;
}

// One sequential step of PyTorch's scan in index order: the first element is always taken (so
// that an all -inf run reports its first index), then max_takes decides.
template <class A>
__device__ __forceinline__ void max_arg_step(MaxArg<A>& m, A value, int index) {
  if (m.index == kNoIndex || max_takes(value, m.value)) {
    m.value = value;
    m.index = index;
  }
}

// Combining two partial results so that the outcome is what one sequential PyTorch scan in
// index order gives, whatever the partition of the indices: any NaN wins and among NaNs the
// largest index (the scan keeps replacing with later NaNs); otherwise the larger value and among
// equal values the smallest index (the scan keeps the first maximum). The rule is commutative
// and associative, so any reduction tree gives the same pair.
template <class A>
__device__ __forceinline__ MaxArg<A> max_arg_combine(MaxArg<A> a, MaxArg<A> b) {
  const bool a_nan = a.value != a.value;
  const bool b_nan = b.value != b.value;
  if (a_nan || b_nan) {
    if (a_nan && b_nan) return a.index > b.index ? a : b;
    return a_nan ? a : b;
  }
  if (a.value != b.value) return a.value > b.value ? a : b;
  return a.index < b.index ? a : b;
}

template <class A>
__device__ __forceinline__ MaxArg<A> warp_max_arg(MaxArg<A> m, int width = kWarpSize) {
  for (int offset = width / 2; offset > 0; offset /= 2) {
    MaxArg<A> other;
    other.value = __shfl_xor_sync(kFullMask, m.value, offset, width);
    other.index = __shfl_xor_sync(kFullMask, m.index, offset, width);
    m = max_arg_combine(m, other);
  }
  return m;
}

}  // namespace gc
