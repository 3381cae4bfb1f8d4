// The float accumulator of an atomic backward pass (roi_align.cu, roi_pool.cu) made into the
// result: rounded once to a half element type (accumulator_to_element), or transposed from the
// NHWC scratch that an NCHW call's scatter added into (kernels/layout/transpose.cu). Atomics on
// __half would round every partial sum; float atomics into a scratch buffer plus one of these
// passes cost one extra read and write of grad_input and keep the sum accurate.
#include "dtypes.cuh"
#include "pool_window.cuh"

template <class T>
__global__ void accumulator_to_element(const gc::acc_t<T>* __restrict__ src, T* __restrict__ dst,
                                       int total) {
  for (long long i = gc::grid_first(); i < total; i += gc::grid_stride()) {
    dst[i] = gc::from_acc<T>(src[i]);
  }
}
