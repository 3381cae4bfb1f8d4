// Test family of the loader and the offline compile check (tests/test_loader.py,
// tests/test_compile_check.py): y = a * x, staged through a static shared tile so that ptxas
// reports shared memory. Launch with 64 threads per block.
#include "dtypes.cuh"

template <class T>
__global__ void scale(const T* __restrict__ x, T* __restrict__ y, float a, int n) {
  __shared__ gc::acc_t<T> tile[64];
  const int i = blockIdx.x * 64 + threadIdx.x;
  tile[threadIdx.x] = i < n ? gc::to_acc(x[i]) : gc::acc_t<T>(0);
  __syncthreads();
  // The mirrored slot: a value another thread wrote, so the tile cannot be optimized away.
  const int j = blockIdx.x * 64 + 63 - threadIdx.x;
  if (j < n) y[j] = gc::from_acc<T>(tile[63 - threadIdx.x] * a);
}
