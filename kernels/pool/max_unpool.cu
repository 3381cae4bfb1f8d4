// Max unpooling (torch.nn.functional.max_unpool2d): each input element goes to the position its
// max-pooling switch (a flat index h * W + w of the output plane) recorded; forward and
// backward, NCHW and NHWC. Design: kernels/pool/NOTES.md.
// The gc::PoolShape is the max_pool2d's that the unpooling inverts: H, W is the unpooled output
// (named Ho, Wo here), P, Q the size of x.
#include "dtypes.cuh"
#include "pool_shape.cuh"
#include "pool_window.cuh"

namespace {

// Whether switch `index` of input element `o` (a flat index of the Ho x Wo plane (o.n, o.c),
// plane_size = Ho * Wo) lies inside that plane; `target` gets the output offset it names, or
// the plane's first element's when it does not (an address that is safe to form).
template <bool kNHWC>
__device__ __forceinline__ bool switch_target(const gc::Coord4& o, long long index,
                                              long long plane_size, int C, int Ho, int Wo,
                                              int& target) {
  const bool inside = index >= 0 && index < plane_size;
  target = gc::plane_offset<kNHWC>(o.n, o.c, C, Ho, Wo) +
           (inside ? (int)index : 0) * gc::pixel_stride<kNHWC>(C);
  return inside;
}

}  // namespace

// Forward in two passes, so that where indices of one plane repeat the last element in
// row-major order wins (PyTorch's CPU loop; its CUDA kernel leaves it to the race):
// 1. claim: every input element (n, c, p, q) raises winner[n, c, idx] to 1 + p*Q + q with an
//    integer atomicMax, whose result does not depend on the order of the atomics;
// 2. this kernel: the element holding the claim writes y[n, c, idx] = x[n, c, p, q].
// `winner` (int32, the output's size and layout) and y are zero-filled by the launcher. Indices
// are validated by the front; one outside [0, Ho*Wo) is skipped here all the same.
template <bool kNHWC>
__global__ void max_unpool2d_claim(const long long* __restrict__ indices, int* __restrict__ winner,
                                   GC_POOL_SHAPE_PARAMS) {
  GC_POOL_SHAPE_NAMES;
  const int Ho = H, Wo = W;
  const int total = N * C * P * Q;
  const long long plane_size = (long long)Ho * Wo;
  for (long long i = gc::grid_first(); i < total; i += gc::grid_stride()) {
    const gc::Coord4 o = gc::unflatten<kNHWC>((int)i, GC_POOL_SHAPE.output);
    int target;
    if (switch_target<kNHWC>(o, indices[i], plane_size, C, Ho, Wo, target))
      atomicMax(winner + target, 1 + o.h * Q + o.w);
  }
}

template <class T, bool kNHWC>
__global__ void max_unpool2d_forward(const T* __restrict__ x, const long long* __restrict__ indices,
                                     const int* __restrict__ winner, T* __restrict__ y,
                                     GC_POOL_SHAPE_PARAMS) {
  GC_POOL_SHAPE_NAMES;
  const int Ho = H, Wo = W;
  const int total = N * C * P * Q;
  const long long plane_size = (long long)Ho * Wo;
  for (long long i = gc::grid_first(); i < total; i += gc::grid_stride()) {
    const gc::Coord4 o = gc::unflatten<kNHWC>((int)i, GC_POOL_SHAPE.output);
    int target;
    if (switch_target<kNHWC>(o, indices[i], plane_size, C, Ho, Wo, target) &&
        winner[target] == 1 + o.h * Q + o.w)
      y[target] = x[i];
  }
}

// Backward, a gather with the same switches: grad_input[n, c, p, q] = grad_output at the
// recorded position (0 for an index outside the plane). Deterministic.
template <class T, bool kNHWC>
__global__ void max_unpool2d_backward(const T* __restrict__ grad_output,
                                      const long long* __restrict__ indices,
                                      T* __restrict__ grad_input, GC_POOL_SHAPE_PARAMS) {
  GC_POOL_SHAPE_NAMES;
  const int Ho = H, Wo = W;
  const int total = N * C * P * Q;
  const long long plane_size = (long long)Ho * Wo;
  for (long long i = gc::grid_first(); i < total; i += gc::grid_stride()) {
    const gc::Coord4 o = gc::unflatten<kNHWC>((int)i, GC_POOL_SHAPE.output);
    int j;
    const bool inside = switch_target<kNHWC>(o, indices[i], plane_size, C, Ho, Wo, j);
    grad_input[i] = inside ? grad_output[j] : gc::from_acc<T>(gc::acc_t<T>(0));
  }
}
