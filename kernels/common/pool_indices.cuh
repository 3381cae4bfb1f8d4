// The rule a max pooling's indices obey, shared by the pass that checks them
// (pool/indices_check.cu) and the backward scatter that checks them as it reads them
// (pool/switch_scatter.cu): so the two can never disagree on which index is bad.
//
// A good index is a flat position h * W + w of its (n, c) plane, or -1 where the caller allows
// "no index" (a window that lies wholly in the padding); per `window` it must also lie in its
// own output's window (kIndexInWindow: a strided, padded, dilated window; kIndexInBin: an
// adaptive bin; kIndexInPlane: the plane is enough). The NumPy version of these rules is
// gpuconv/pool/geometry.py's.
#pragma once

#include "pool_shape.cuh"
#include "pool_window.cuh"

namespace gc {

// `window` values (gpuconv/pool/launch_indices.py WINDOWS names them)
constexpr int kIndexInPlane = 0, kIndexInWindow = 1, kIndexInBin = 2;

// Whether offset d from a window's start is one of its `taps` taps `dilation` apart (dilation 1,
// the common case, without the two divisions).
__device__ __forceinline__ bool on_tap(int d, int dilation, int taps) {
  if (d < 0) return false;
  return dilation == 1 ? d < taps : d % dilation == 0 && d / dilation < taps;
}

// Whether output o (its coordinates in (N, C, P, Q)) may hold `index`.
__device__ __forceinline__ bool pool_index_is_good(long long index, const Coord4& o,
                                                   const PoolShape& s, int window,
                                                   bool allow_no_index) {
  if (index == -1) return allow_no_index;
  if (index < 0 || index >= (long long)s.H * s.W) return false;
  if (window == kIndexInPlane) return true;
  int h, w;  // index < H * W < 2^31 here
  s.input.w.divmod((int)index, h, w);
  if (window == kIndexInBin) {
    return h >= adaptive_start(o.h, s.H, s.P) && h < adaptive_end(o.h, s.H, s.P) &&
           w >= adaptive_start(o.w, s.W, s.Q) && w < adaptive_end(o.w, s.W, s.Q);
  }
  return on_tap(h - (o.h * s.stride_h - s.pad_h), s.dil_h, s.R) &&
         on_tap(w - (o.w * s.stride_w - s.pad_w), s.dil_w, s.S);
}

// Records that flat output position i (of `total`) holds a bad index: the answer is total minus
// the smallest such position (an atomicMax, the same answer in any thread order) in an int the
// launcher zero-fills, 0 when there is none (launch_indices.first_bad_index reads it).
__device__ __forceinline__ void note_bad_index(int* outputs_after_first_bad, int total, int i) {
  atomicMax(outputs_after_first_bad, total - i);
}

}  // namespace gc
