// Test family of the offline compile check: the per-thread array is indexed at run time, so it
// lives in local memory (a stack frame). Marked hot, the check must reject it.
#include "dtypes.cuh"

template <class T>
__global__ void bin_counts(const int* __restrict__ bins, T* __restrict__ counts, int n) {
  float local[32];
  for (int b = 0; b < 32; ++b) local[b] = 0.f;
  for (int t = 0; t < n; ++t) local[bins[t] & 31] += 1.f;
  const int b = threadIdx.x & 31;
  counts[blockIdx.x * 32 + b] = gc::from_acc<T>(local[b]);
}
