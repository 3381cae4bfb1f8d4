// Flat-index decoding of a contiguous 4-D activation, shared by the conv, pooling and
// region-of-interest kernels that run one thread (or one grid-stride step) per element.
#pragma once

#include "fast_divmod.cuh"

namespace gc {

// A logical coordinate of a 4-D activation.
struct Coord4 {
  int n, c, h, w;
};

// The coordinate of the element at flat position `index` of a contiguous (N, C, H, W) array
// stored NCHW (w fastest) or NHWC (c fastest). Threads with consecutive indices touch
// consecutive addresses in both layouts, which is what makes every elementwise pass coalesced.
// N is not needed: `index` is below N * C * H * W. Three divisions, each giving a quotient and
// its remainder.
template <bool kNHWC>
__device__ __forceinline__ Coord4 unflatten(int index, int C, int H, int W) {
  Coord4 o;
  if (kNHWC) {
    o.c = index % C;
    index /= C;
    o.w = index % W;
    index /= W;
    o.h = index % H;
    o.n = index / H;
  } else {
    o.w = index % W;
    index /= W;
    o.h = index % H;
    index /= H;
    o.c = index % C;
    o.n = index / C;
  }
  return o;
}

// The extents C, H, W of a contiguous (N, C, H, W) array as multiply-shift divisors made on the
// host (gpuconv/_fast_divmod.py: flat_decoder), carried in the shape structs the kernels take
// (conv_shape.cuh, pool_shape.cuh). Why: the three divisions of unflatten cost ~25 SASS
// instructions each (I2F, MUFU.RCP, F2I and the fix-ups), a FastDivmod step ~4, in kernels that
// spend one to two hundred per element; made per thread on the device instead, a FastDivmod
// costs a 64-bit division and a loop, more than it saves at the few elements a thread visits.
struct FlatDecoder {
  FastDivmod c, h, w;
};

// unflatten with the decoder's divisors: the same Coord4, in the same storage order.
template <bool kNHWC>
__device__ __forceinline__ Coord4 unflatten(int index, const FlatDecoder& d) {
  Coord4 o;
  if (kNHWC) {
    d.c.divmod(index, index, o.c);
    d.w.divmod(index, index, o.w);
    d.h.divmod(index, o.n, o.h);
  } else {
    d.w.divmod(index, index, o.w);
    d.h.divmod(index, index, o.h);
    d.c.divmod(index, o.n, o.c);
  }
  return o;
}

}  // namespace gc
