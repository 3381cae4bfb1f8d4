// The geometry of one forward convolution as the kernels receive it.
//
// Every conv kernel takes the same 16 int arguments in this order (gpuconv/conv/launch_common.py
// `shape_args` builds them): N C H W  K R S  P Q  pad_h pad_w  stride_h stride_w  dil_h dil_w
// groups. Input (N, C, H, W), weight (K, C/groups, R, S), output (N, K, P, Q); pad_h/pad_w are
// the top/left paddings (bottom/right paddings only shape P and Q, which the launcher computed).
#pragma once

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

template <bool NHWC>
__device__ __forceinline__ Strides4 packed_strides(int C, int H, int W) {
  return NHWC ? Strides4{H * W * C, 1, W * C, C} : Strides4{C * H * W, H * W, W, 1};
}

}  // namespace gc
