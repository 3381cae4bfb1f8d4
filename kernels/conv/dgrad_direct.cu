// Direct data gradient: one thread per dx element gathers every (filter, tap) that reaches it.
//
// The readable statement of what the GEMM kernels compute, and the fast choice when a group has
// so few input channels that a GEMM tile would be mostly empty (C/groups <= 4). Only the taps of
// the pixel's stride phase are visited (gc::position_taps), so a strided or dilated case does no
// work on inserted zeros. Grid: ceil(n_elements / blockDim.x) blocks over dx in its own memory
// order (NCHW or NHWC), so neighbouring threads write neighbouring addresses. No atomics.
#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "epilogue.cuh"
#include "flat_index.cuh"
#include "../conv/dgrad_operands.cuh"

template <class T, bool NHWC>
__global__ void conv2d_dgrad_direct(const T* __restrict__ dy, const T* __restrict__ w,
                                    GC_CONV_SHAPE_PARAMS, const gc::FlatDecoder input_index,
                                    T* dx, const T* bias, int epilogue) {
  GC_CONV_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  const int HW = H * W;
  const int e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= N * C * HW) return;
  const gc::Coord4 o = gc::unflatten<NHWC>(e, input_index);
  const int n = o.n, c = o.c, h = o.h, x_w = o.w;
  const int c_per_group = C / groups;
  const int k_per_group = K / groups;
  const int group = c / c_per_group;
  const int RS = R * S;
  const int filter_stride = c_per_group * RS;                // w[k + 1] - w[k]
  const int dy_channel_stride = NHWC ? 1 : P * Q;            // dy[k + 1] - dy[k]
  const T* w_c = w + (group * k_per_group * c_per_group + (c - group * c_per_group)) * RS;
  const gc::PositionTaps th = gc::position_taps(h, pad_h, stride_h, dil_h, R);
  const gc::PositionTaps tw = gc::position_taps(x_w, pad_w, stride_w, dil_w, S);
  // main loop: the taps of the pixel's phase, then the group's filters
  A acc = A(0);
  gc::for_each_reaching_tap(th, tw, P, Q, [&](int p, int q, int r, int s) {
    const T* w_tap = w_c + r * S + s;
    const T* dy_pixel = NHWC ? dy + ((n * P + p) * Q + q) * K + group * k_per_group
                             : dy + ((n * K + group * k_per_group) * P + p) * Q + q;
    for (int k = 0; k < k_per_group; ++k)
      acc += gc::to_acc(w_tap[k * filter_stride]) * gc::to_acc(dy_pixel[k * dy_channel_stride]);
  });
  // epilogue
  const gc::Epilogue<T> epi{dx, C * HW, NHWC ? 1 : HW, NHWC ? C : 1, bias, nullptr, 0, 0, 0, epilogue};
  epi.store(n, c, h * W + x_w, acc);
}
