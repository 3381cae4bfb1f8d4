// Spatial pyramid pooling (He et al. 2014): for each level l, adaptive max or average pooling of
// the (N, C, H, W) input to (l, l), flattened to C*l*l features in the layout's element order
// (NCHW: c, i, j; NHWC: i, j, c); the levels are concatenated along the feature axis of an
// (N, F) output, F = C * sum(l*l). One launch computes
// up to kMaxLevels levels; the launcher splits longer pyramids into groups of kMaxLevels, each
// writing its slice of F starting at `feature_base`. Design: kernels/pool/NOTES.md.
#include "adaptive_bins.cuh"
#include "dtypes.cuh"
#include "pool_shape.cuh"
#include "pool_window.cuh"

namespace {

// The levels travel as scalar kernel arguments (no device array, so no host-to-device copy and
// no synchronization); unused ones are 0. Selected by a switch, never by indexing a
// per-thread array.
struct Levels {
  int count, l0, l1, l2, l3, l4, l5, l6, l7;

  __device__ __forceinline__ int at(int k) const {
    switch (k) {
      case 0: return l0;
      case 1: return l1;
      case 2: return l2;
      case 3: return l3;
      case 4: return l4;
      case 5: return l5;
      case 6: return l6;
      default: return l7;
    }
  }
};

}  // namespace

// main loop: one thread per output feature of this launch's levels, in output order: c fastest
// in NHWC (coalesced loads of the input), bins fastest in NCHW.
template <class T, bool kNHWC, bool kMax, bool kIndices>
__global__ void spatial_pyramid_pool2d_forward(
    const T* __restrict__ x, T* __restrict__ y, long long* __restrict__ indices,
    GC_POOL_SHAPE_PARAMS, int features, int feature_base, int num_levels, int l0, int l1, int l2,
    int l3, int l4, int l5, int l6, int l7) {
  GC_POOL_SHAPE_NAMES;
  const Levels levels = {num_levels, l0, l1, l2, l3, l4, l5, l6, l7};
  int launch_features = 0;
  for (int k = 0; k < levels.count; ++k) launch_features += C * levels.at(k) * levels.at(k);
  const int total = N * launch_features;
  const int ps = gc::pixel_stride<kNHWC>(C);
  for (long long i = gc::grid_first(); i < total; i += gc::grid_stride()) {
    const int n = (int)i / launch_features;
    int f = (int)i - n * launch_features;
    int level_offset = 0;  // features of the levels before this one
    int l = levels.at(0);
    for (int k = 0; k < levels.count; ++k) {
      l = levels.at(k);
      if (f < C * l * l) break;
      f -= C * l * l;
      level_offset += C * l * l;
    }
    const int c = kNHWC ? f % C : f / (l * l);
    const int bin = kNHWC ? f / C : f % (l * l);
    const gc::Bin b = gc::adaptive_bin(bin / l, bin % l, H, W, l, l);
    const T* plane = x + gc::plane_offset<kNHWC>(n, c, C, H, W);
    // epilogue
    const int out = n * features + feature_base + level_offset + f;
    if (kMax) {
      const auto m = gc::max_over_bin(plane, ps, W, b);
      y[out] = gc::from_acc<T>(m.value);
      if (kIndices) indices[out] = m.index;
    } else {
      y[out] = gc::from_acc<T>(gc::mean_over_bin(plane, ps, W, b));
    }
  }
}

// Backward as a gather: one thread per input element visits, level by level, the bins that
// contain it (see adaptive_pool.cu) in a fixed order. No atomics: bitwise reproducible. With
// `accumulate` the thread adds to grad_input (the second and later level groups of a long
// pyramid); otherwise it overwrites it. `indices` is read only when kMax.
template <class T, bool kNHWC, bool kMax>
__global__ void spatial_pyramid_pool2d_backward(
    const T* __restrict__ grad_output, const long long* __restrict__ indices,
    T* __restrict__ grad_input, GC_POOL_SHAPE_PARAMS, int features, int feature_base,
    int accumulate, int num_levels, int l0, int l1, int l2, int l3, int l4, int l5, int l6,
    int l7) {
  GC_POOL_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  const Levels levels = {num_levels, l0, l1, l2, l3, l4, l5, l6, l7};
  const int total = N * C * H * W;
  for (long long i = gc::grid_first(); i < total; i += gc::grid_stride()) {
    const gc::Coord4 o = gc::unflatten<kNHWC>((int)i, GC_POOL_SHAPE.input);
    const long long self = (long long)o.h * W + o.w;
    A grad = accumulate ? gc::to_acc(grad_input[i]) : A(0);
    int level_base = o.n * features + feature_base;
    for (int k = 0; k < levels.count; ++k) {
      const int l = levels.at(k);
      // the level's block holds (C, l, l) in NCHW and (l, l, C) in NHWC
      const int plane = level_base + (kNHWC ? o.c : o.c * l * l);
      const int bin_stride = kNHWC ? C : 1;
      const int p1 = gc::adaptive_end(o.h, l, H);
      const int q1 = gc::adaptive_end(o.w, l, W);
      for (int p = gc::adaptive_start(o.h, l, H); p < p1; ++p) {
        for (int q = gc::adaptive_start(o.w, l, W); q < q1; ++q) {
          const int j = plane + (p * l + q) * bin_stride;
          if (kMax) {
            if (indices[j] == self) grad += gc::to_acc(grad_output[j]);
          } else {
            const int area = gc::bin_area(gc::adaptive_bin(p, q, H, W, l, l));
            grad += gc::to_acc(grad_output[j]) / static_cast<A>(area);
          }
        }
      }
      level_base += C * l * l;
    }
    grad_input[i] = gc::from_acc<T>(grad);
  }
}
