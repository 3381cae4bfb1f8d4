// The geometry of one forward convolution as the kernels receive it.
//
// Every conv kernel takes it as one gc::ConvShape passed by value (gpuconv/conv/launch_common.py
// `shape_args` builds it as a NumPy structured scalar of the same 16 ints in the same order):
// N C H W  K R S  P Q  pad_h pad_w  stride_h stride_w  dil_h dil_w  groups. Input (N, C, H, W),
// weight (K, C/groups, R, S), output (N, K, P, Q); pad_h/pad_w are the top/left paddings
// (bottom/right paddings only shape P and Q, which the launcher computed). One struct rather than
// 16 scalars because CuPy wraps every kernel argument on every launch: 16 scalars cost the host
// ~5 us per launch on an H100 machine, one struct ~0.3 us (bench/launch_cost.py).
#pragma once

#include "dtypes.cuh"

// The shape as a kernel's parameter (every conv kernel, forward and backward).
#define GC_CONV_SHAPE_PARAMS const gc::ConvShape conv_shape_

// The shape as a gc::ConvShape value (inside a kernel declared with GC_CONV_SHAPE_PARAMS).
#define GC_CONV_SHAPE conv_shape_

// The 16 fields as local constants named as the fields, for kernels whose arithmetic reads them
// by name (first statement of such a kernel); a kernel need not read them all.
#define GC_CONV_SHAPE_NAMES                                                                   \
  [[maybe_unused]] const int N = conv_shape_.N, C = conv_shape_.C, H = conv_shape_.H,         \
                             W = conv_shape_.W, K = conv_shape_.K, R = conv_shape_.R,         \
                             S = conv_shape_.S, P = conv_shape_.P, Q = conv_shape_.Q,         \
                             pad_h = conv_shape_.pad_h, pad_w = conv_shape_.pad_w,            \
                             stride_h = conv_shape_.stride_h,                                 \
                             stride_w = conv_shape_.stride_w, dil_h = conv_shape_.dil_h,      \
                             dil_w = conv_shape_.dil_w, groups = conv_shape_.groups

namespace gc {

struct ConvShape {
  int N, C, H, W;
  int K, R, S;
  int P, Q;
  int pad_h, pad_w;
  int stride_h, stride_w;
  int dil_h, dil_w;
  int groups;

  __device__ __forceinline__ int c_per_group() const { return C / groups; }
  __device__ __forceinline__ int k_per_group() const { return K / groups; }
};

// Element strides of an activation tensor (input or output) seen as logical (n, c, h, w).
struct Strides4 {
  int n, c, h, w;
};

// Element strides of the axes (K, C/groups, R, S) of a filter tensor as it lies in memory:
// KCRS (contiguous) or KRSC (channels_last, a channels_last PyTorch model's), `channels` = C/groups.
// For kernels that read the filters in place in either layout.
struct FilterStrides {
  int k, c, r, s;
};

__device__ __forceinline__ FilterStrides filter_strides(int channels, int R, int S, bool krsc) {
  return krsc ? FilterStrides{R * S * channels, 1, S * channels, channels}
              : FilterStrides{channels * R * S, R * S, S, 1};
}

template <bool NHWC>
__device__ __forceinline__ Strides4 packed_strides(int C, int H, int W) {
  return NHWC ? Strides4{H * W * C, 1, W * C, C} : Strides4{C * H * W, H * W, W, 1};
}

// Adds to `acc` the products of one input channel's dilated window at (h0, w0) (row stride
// xs.h, column stride xs.w; taps outside the H x W plane read the zero padding) with its
// filter taps w_rs[(r * S + s) * tap_step]: the main loop of the one-thread-per-output kernels.
// FR/FS > 0 fix R/S at compile time, so that the taps unroll. tap_step is the distance between
// taps (K for filters stored (R, S, K)); negated, with w_rs at the filter's last tap, it reads
// the filter rotated by 180 degrees (a data gradient run as a forward pass).
template <int FR, int FS, class A, class T>
__device__ __forceinline__ void accumulate_window(A& acc, const T* xc, const T* w_rs, int h0,
                                                  int w0, int R, int S, int H, int W, int dil_h,
                                                  int dil_w, const Strides4& xs,
                                                  int tap_step = 1) {
  const int taps_r = FR > 0 ? FR : R;
  const int taps_s = FS > 0 ? FS : S;
#pragma unroll
  for (int r = 0; r < taps_r; ++r) {
    const int h = h0 + r * dil_h;
    if (unsigned(h) >= unsigned(H)) continue;
#pragma unroll
    for (int s = 0; s < taps_s; ++s) {
      const int ww = w0 + s * dil_w;
      if (unsigned(ww) < unsigned(W))
        acc += to_acc(xc[h * xs.h + ww * xs.w]) * to_acc(w_rs[(r * taps_s + s) * tap_step]);
    }
  }
}

}  // namespace gc
