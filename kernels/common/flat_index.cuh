// Flat-index decoding of a contiguous 4-D activation, shared by the conv, pooling and
// region-of-interest kernels that run one thread (or one grid-stride step) per element.
#pragma once

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

}  // namespace gc
