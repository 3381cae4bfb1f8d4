// Validation of the indices a max-pooling backward (or max_unpool2d) is handed: one pass that
// finds the first index the forward cannot have produced, so that the front can raise a
// ValueError naming it. The front queues its kernels behind this pass and reads the answer after
// them (one synchronization, the host's work overlapping the GPU's); every kernel that reads
// indices is memory-safe with any value (switch_scatter.cu, max_unpool.cu skip an index outside
// the plane; the gathers only compare), and a bad call's result is dropped.
//
// A good index is a flat position h * W + w of its (n, c) plane, or -1 where the caller allows
// "no index" (a window that lies wholly in the padding); with kWindow it must also lie in its
// own output's window (1: a strided, padded, dilated window; 2: an adaptive bin). The NumPy
// version of these rules is gpuconv/pool/geometry.py's; this kernel replaces ~20 elementwise
// array passes there with one read of the indices (GPU: 8 bytes per output).
#include "pool_shape.cuh"
#include "pool_window.cuh"

namespace {

// Whether offset d from a window's start is one of its `taps` taps `dilation` apart (dilation 1,
// the common case, without the two divisions).
__device__ __forceinline__ bool on_tap(int d, int dilation, int taps) {
  if (d < 0) return false;
  return dilation == 1 ? d < taps : d % dilation == 0 && d / dilation < taps;
}

}  // namespace

// outputs_after_first_bad: (number of outputs) - (the smallest flat output position holding a
// bad index), 0 when there is none: an atomicMax, the same answer in any thread order, into an
// int the launcher zero-fills (a memset, where the smallest position itself would need a fill
// kernel). Outputs of 2^31 or more are refused by the launcher (32-bit offsets, design.md).
template <bool kNHWC, int kWindow>
__global__ void pool_indices_check(const long long* __restrict__ indices,
                                   int* __restrict__ outputs_after_first_bad,
                                   GC_POOL_SHAPE_PARAMS, int allow_no_index) {
  GC_POOL_SHAPE_NAMES;
  const int total = N * C * P * Q;
  const long long plane = (long long)H * W;
  for (long long i = gc::grid_first(); i < total; i += gc::grid_stride()) {
    const long long index = indices[i];
    bool good;
    if (index == -1) {
      good = allow_no_index != 0;
    } else if (index < 0 || index >= plane) {
      good = false;
    } else if (kWindow == 0) {
      good = true;
    } else {
      const gc::Coord4 o = gc::unflatten<kNHWC>((int)i, GC_POOL_SHAPE.output);
      int h, w;  // index < H * W < 2^31 here
      GC_POOL_SHAPE.input.w.divmod((int)index, h, w);
      if (kWindow == 2) {
        good = h >= gc::adaptive_start(o.h, H, P) && h < gc::adaptive_end(o.h, H, P) &&
               w >= gc::adaptive_start(o.w, W, Q) && w < gc::adaptive_end(o.w, W, Q);
      } else {
        good = on_tap(h - (o.h * stride_h - pad_h), dil_h, R) &&
               on_tap(w - (o.w * stride_w - pad_w), dil_w, S);
      }
    }
    if (!good) atomicMax(outputs_after_first_bad, total - (int)i);
  }
}
