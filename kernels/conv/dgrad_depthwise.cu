// Depthwise data gradient (C/groups == 1; K = multiplier * C, filter k = c * multiplier + j
// belongs to channel c): dx[n][c][h][w] = sum_{j, r, s} w[c*mult + j][r][s] * dy[n][c*mult + j][p][q]
// over the taps of the pixel's stride phase only (gc::position_taps).
//
//   conv2d_dgrad_depthwise_nchw  grid (N * C planes, ceil(H*W / blockDim.x)): a block works on
//                                one (image, channel) plane, so the channel's multiplier * R * S
//                                filter values are staged once in shared memory (accumulator
//                                type, mult * R * S of them) and every thread reads them from
//                                there; dy reads of neighbouring pixels are neighbours.
//   conv2d_dgrad_depthwise_nhwc  one thread per dx element, channels fastest; the filter comes
//                                transposed to (R, S, K) by the launcher so that a warp's filter
//                                reads, like its dy reads and dx writes, are one contiguous run.
// Each dx element is written once: no atomics, deterministic.
#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "epilogue.cuh"
#include "flat_index.cuh"
#include "../conv/dgrad_operands.cuh"

template <class T>
__global__ void conv2d_dgrad_depthwise_nchw(const T* __restrict__ dy, const T* __restrict__ w,
                                            GC_CONV_SHAPE_PARAMS,
                                            const gc::FlatDecoder input_index,
                                            T* dx, const T* bias, int epilogue) {
  GC_CONV_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* filter = reinterpret_cast<A*>(smem_raw);

  int n, c;
  input_index.c.divmod(blockIdx.x, n, c);  // the block's plane n * C + c
  const int multiplier = K / C;
  const int RS = R * S;
  const int taps = multiplier * RS;
  const T* w_c = w + c * taps;
  for (int i = threadIdx.x; i < taps; i += blockDim.x) filter[i] = gc::to_acc(w_c[i]);
  __syncthreads();

  const int HW = H * W;
  const int hw = blockIdx.y * blockDim.x + threadIdx.x;
  if (hw >= HW) return;
  int h, x_w;
  input_index.w.divmod(hw, h, x_w);
  const int PQ = P * Q;
  const T* dy_c = dy + (n * K + c * multiplier) * PQ;
  const gc::PositionTaps th = gc::position_taps(h, pad_h, stride_h, dil_h, R);
  const gc::PositionTaps tw = gc::position_taps(x_w, pad_w, stride_w, dil_w, S);
  // main loop
  A acc = A(0);
  gc::for_each_reaching_tap(th, tw, P, Q, [&](int p, int q, int r, int s) {
    const int rs = r * S + s;
    for (int m = 0; m < multiplier; ++m)
      acc += filter[m * RS + rs] * gc::to_acc(dy_c[m * PQ + p * Q + q]);
  });
  // epilogue
  const gc::Epilogue<T> epi{dx, C * HW, HW, 1, bias, nullptr, 0, 0, 0, epilogue};
  epi.store(n, c, hw, acc);
}

template <class T>
__global__ void conv2d_dgrad_depthwise_nhwc(const T* __restrict__ dy, const T* __restrict__ w_rsk,
                                            GC_CONV_SHAPE_PARAMS,
                                            const gc::FlatDecoder input_index,
                                            T* dx, const T* bias, int epilogue) {
  GC_CONV_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  const int HW = H * W;
  const int e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= N * HW * C) return;
  const gc::Coord4 o = gc::unflatten<true>(e, input_index);
  const int n = o.n, c = o.c, h = o.h, x_w = o.w;
  const int hw = h * W + x_w;
  const int multiplier = K / C;
  const int k0 = c * multiplier;
  const gc::PositionTaps th = gc::position_taps(h, pad_h, stride_h, dil_h, R);
  const gc::PositionTaps tw = gc::position_taps(x_w, pad_w, stride_w, dil_w, S);
  // main loop
  A acc = A(0);
  gc::for_each_reaching_tap(th, tw, P, Q, [&](int p, int q, int r, int s) {
    const T* w_tap = w_rsk + (r * S + s) * K + k0;
    const T* dy_pixel = dy + ((n * P + p) * Q + q) * K + k0;
    for (int m = 0; m < multiplier; ++m) acc += gc::to_acc(w_tap[m]) * gc::to_acc(dy_pixel[m]);
  });
  // epilogue
  const gc::Epilogue<T> epi{dx, HW * C, 1, C, bias, nullptr, 0, 0, 0, epilogue};
  epi.store(n, c, hw, acc);
}
