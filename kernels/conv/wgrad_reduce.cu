// The second pass of every split reduction of the backward passes (weight and bias gradients):
// out[i] = sum over s = 0, 1, ..., splits - 1 of ws[s * size + i], in that order, converted to T.
// A fixed order over partial sums that were themselves computed in a fixed order: the result has
// the same bits on every run (deterministic mode), unlike float atomics.
#include "dtypes.cuh"

template <class T>
__global__ void conv2d_split_reduce(const gc::acc_t<T>* __restrict__ ws, int splits, int size,
                                    T* __restrict__ out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= size) return;
  gc::acc_t<T> total = ws[i];
  for (int s = 1; s < splits; ++s) total += ws[s * size + i];
  out[i] = gc::from_acc<T>(total);
}
