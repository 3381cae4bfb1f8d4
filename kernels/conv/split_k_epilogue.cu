// The second pass of a split-K forward GEMM (kernels/common/split_k.cuh): output element i (in
// the output's dense layout) = epilogue(sum over s = 0, 1, ..., splits - 1 of
// partial[s * elements + i]), the splits added in that order so that the result has the same
// bits on every run. One thread per output element; the partials are read coalesced, and the
// fused epilogue (bias, residual, activation, an NCHW channel slice) is the GEMM kernels' own.
#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "epilogue.cuh"
#include "split_k.cuh"

template <class T, bool NHWC>
__global__ void conv2d_split_k_epilogue(const gc::acc_t<T>* __restrict__ partial, int splits,
                                        GC_CONV_SHAPE_PARAMS, GC_EPILOGUE_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  const int PQ = P * Q;
  const int elements = N * K * PQ;
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= elements) return;
  int n, k, pq;
  gc::split_k_element<NHWC>(i, K, PQ, n, k, pq);
  const gc::acc_t<T> total = gc::sum_of_splits(partial, i, elements, splits);
  GC_EPILOGUE(T).store(n, k, pq, total);
}
