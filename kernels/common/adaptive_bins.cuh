// Reductions over one adaptive-pooling bin and the bins' geometry, shared by adaptive pooling
// (kernels/pool/adaptive_pool.cu) and spatial pyramid pooling (kernels/pool/spp.cu), whose
// levels are adaptive poolings to (l, l).
#pragma once

#include "dtypes.cuh"
#include "pool_window.cuh"
#include "reduce.cuh"

namespace gc {

// The bin of output (i, j) of an adaptive pooling of an H x W plane to P x Q.
struct Bin {
  int h0, h1, w0, w1;  // rows [h0, h1), columns [w0, w1); never empty
};

__device__ __forceinline__ Bin adaptive_bin(int i, int j, int H, int W, int P, int Q) {
  Bin b;
  b.h0 = adaptive_start(i, H, P);
  b.h1 = adaptive_end(i, H, P);
  b.w0 = adaptive_start(j, W, Q);
  b.w1 = adaptive_end(j, W, Q);
  return b;
}

__device__ __forceinline__ int bin_area(const Bin& b) { return (b.h1 - b.h0) * (b.w1 - b.w0); }

// The maximum of a bin and its flat index h * W + w, PyTorch's sequential scan (max_takes):
// an all -inf bin reports its first element.
template <class T>
__device__ __forceinline__ MaxArg<acc_t<T>> max_over_bin(const T* __restrict__ plane, int ps,
                                                        int W, const Bin& b) {
  MaxArg<acc_t<T>> m;
  m.value = acc_lowest<acc_t<T>>();
  m.index = b.h0 * W + b.w0;
  for (int h = b.h0; h < b.h1; ++h) {
    for (int w = b.w0; w < b.w1; ++w) {
      const acc_t<T> v = to_acc(plane[(h * W + w) * ps]);
      if (max_takes(v, m.value)) {
        m.value = v;
        m.index = h * W + w;
      }
    }
  }
  return m;
}

template <class T>
__device__ __forceinline__ acc_t<T> mean_over_bin(const T* __restrict__ plane, int ps, int W,
                                                 const Bin& b) {
  acc_t<T> sum = acc_t<T>(0);
  for (int h = b.h0; h < b.h1; ++h) {
    for (int w = b.w0; w < b.w1; ++w) sum += to_acc(plane[(h * W + w) * ps]);
  }
  return sum / static_cast<acc_t<T>>(bin_area(b));
}

}  // namespace gc
