// The im2col unfold shared by the forward (kernels/conv/im2col_gemm.cu) and the weight-gradient
// (kernels/conv/wgrad_im2col_gemm.cu) column-buffer GEMMs.
#pragma once

#include "conv_shape.cuh"
#include "dtypes.cuh"

namespace gc {

// Column j of the column buffer of a batch chunk: columns[(c * R + r) * S + s][j] = x at tap
// (r, s) of output pixel j = n_local * P*Q + p * Q + q of input channel c, 0 in the padding and
// in every column j >= n_cols (the row's alignment padding up to ldc). Channels loop over the
// grid's y dimension (at most 65535 blocks there). x points at the chunk's first image.
template <class T, bool NHWC>
__device__ __forceinline__ void im2col_column(const T* __restrict__ x, T* __restrict__ columns,
                                              int ldc, int n_cols, int j, const ConvShape& s) {
  const int PQ = s.P * s.Q;
  const Strides4 xs = packed_strides<NHWC>(s.C, s.H, s.W);
  int n = 0, h0 = 0, w0 = 0;
  if (j < n_cols) {
    const int pq = j % PQ;
    n = j / PQ;
    h0 = (pq / s.Q) * s.stride_h - s.pad_h;
    w0 = (pq % s.Q) * s.stride_w - s.pad_w;
  }
  for (int c = blockIdx.y; c < s.C; c += gridDim.y) {
    T* dst = columns + c * s.R * s.S * ldc + j;
    const T* src = x + n * xs.n + c * xs.c;
    for (int r = 0; r < s.R; ++r) {
      const int h = h0 + r * s.dil_h;
      for (int t = 0; t < s.S; ++t) {
        const int w = w0 + t * s.dil_w;
        const bool inside =
            j < n_cols && unsigned(h) < unsigned(s.H) && unsigned(w) < unsigned(s.W);
        dst[(r * s.S + t) * ldc] = inside ? src[h * xs.h + w * xs.w] : from_acc<T>(0);
      }
    }
  }
}

}  // namespace gc
