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
// an all -inf bin reports its first element. For V consecutive channels at once (m[e]: channel
// e; NHWC channel vectors, one load_packed per element of the bin: `plane` aligned to as many).
template <class T, int V>
__device__ __forceinline__ void max_over_bin(const T* __restrict__ plane, int ps, int W,
                                             const Bin& b, MaxArg<acc_t<T>> (&m)[V]) {
#pragma unroll
  for (int e = 0; e < V; ++e) {
    m[e].value = acc_lowest<acc_t<T>>();
    m[e].index = b.h0 * W + b.w0;
  }
  for (int h = b.h0; h < b.h1; ++h) {
    for (int w = b.w0; w < b.w1; ++w) {
      acc_t<T> v[V];
      load_packed<T, V>(plane + (h * W + w) * ps, v);
#pragma unroll
      for (int e = 0; e < V; ++e) {
        if (max_takes(v[e], m[e].value)) {
          m[e].value = v[e];
          m[e].index = h * W + w;
        }
      }
    }
  }
}

template <class T>
__device__ __forceinline__ MaxArg<acc_t<T>> max_over_bin(const T* __restrict__ plane, int ps,
                                                        int W, const Bin& b) {
  MaxArg<acc_t<T>> m[1];
  max_over_bin<T, 1>(plane, ps, W, b, m);
  return m[0];
}

// The mean of a bin, for V consecutive channels at once as max_over_bin.
template <class T, int V>
__device__ __forceinline__ void mean_over_bin(const T* __restrict__ plane, int ps, int W,
                                              const Bin& b, acc_t<T> (&mean)[V]) {
#pragma unroll
  for (int e = 0; e < V; ++e) mean[e] = acc_t<T>(0);
  for (int h = b.h0; h < b.h1; ++h) {
    for (int w = b.w0; w < b.w1; ++w) {
      acc_t<T> v[V];
      load_packed<T, V>(plane + (h * W + w) * ps, v);
#pragma unroll
      for (int e = 0; e < V; ++e) mean[e] += v[e];
    }
  }
#pragma unroll
  for (int e = 0; e < V; ++e) mean[e] /= static_cast<acc_t<T>>(bin_area(b));
}

template <class T>
__device__ __forceinline__ acc_t<T> mean_over_bin(const T* __restrict__ plane, int ps, int W,
                                                 const Bin& b) {
  acc_t<T> mean[1];
  mean_over_bin<T, 1>(plane, ps, W, b, mean);
  return mean[0];
}

// The backward gathers' bin bounds, as tables in shared memory: for each input row h the output
// rows [first[h], last[h]) whose bins hold it, and for each output row p its bin's extent; the
// same for columns. Each block builds them once (2 divisions per entry) instead of every thread
// dividing 4 + 4 per bin times per element (adaptive average 65x65 -> 6x6 backward measured
// 1.47 ms on an H100 against PyTorch's 1.15: kernels/pool/NOTES.md). Layout in `table` (ints):
// row first[H], row last[H], row extent[P], column first[W], column last[W], column extent[Q].
struct AdaptiveTables {
  const int *row_first, *row_last, *row_extent, *col_first, *col_last, *col_extent;
};

// Entry e of one axis's tables (in -> out bins): first[h] for e < in, last[h] for e < 2 * in,
// then extent[p]: one or two divisions.
__device__ __forceinline__ int axis_table_entry(int e, int in, int out) {
  if (e < in) return adaptive_start(e, out, in);
  if (e < 2 * in) return adaptive_end(e - in, out, in);
  const int p = e - 2 * in;
  return adaptive_end(p, in, out) - adaptive_start(p, in, out);
}

// Every thread of the block must call this (it ends in a barrier). One entry per thread where
// the block has enough threads (a block's 256 cover planes up to ~80 x 80 at once), so the
// other warps wait at the barrier for one or two divisions, not for one thread's whole axis
// (the barrier took ~40 % of the warps' stalls of the 13 -> 6 backward on an H100).
__device__ __forceinline__ AdaptiveTables build_adaptive_tables(int* table, int H, int W, int P,
                                                                int Q) {
  const int row_ints = 2 * H + P;
  for (int e = threadIdx.x; e < row_ints + 2 * W + Q; e += blockDim.x) {
    table[e] = e < row_ints ? axis_table_entry(e, H, P) : axis_table_entry(e - row_ints, W, Q);
  }
  __syncthreads();
  AdaptiveTables t;
  const int* row = table;
  const int* col = table + row_ints;
  t.row_first = row;
  t.row_last = row + H;
  t.row_extent = row + 2 * H;
  t.col_first = col;
  t.col_last = col + W;
  t.col_extent = col + 2 * W;
  return t;
}

}  // namespace gc
