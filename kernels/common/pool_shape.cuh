// The geometry of one pooling launch as the kernels receive it: one gc::PoolShape passed by
// value (gpuconv/pool/launch_common.py `pool_shape` builds it, a NumPy structured scalar of the
// same fields in the same order, 128 bytes, no padding):
//   N C H W P Q  R S  stride_h stride_w  pad_h pad_w  dil_h dil_w   (14 ints)
//   input, output: FlatDecoders (flat_index.cuh) of (C, H, W) and (C, P, Q).
// Input (N, C, H, W), output (N, C, P, Q); kernels without a window get R = S = 1, stride and
// dilation 1, padding 0 (max_unpool2d: H, W is its unpooled output, P, Q the size of its input).
//
// Why the decoders: every pooling kernel runs one thread per element and first splits the flat
// index into (n, c, h, w): ~75 instructions with divisions, ~12 with the decoders, against a
// budget of ~115-230 per element at full memory bandwidth (kernels/pool/NOTES.md).
// Why one struct: CuPy wraps each scalar argument on every launch (~0.34 us each, and ~0.4 us to
// make each NumPy scalar): 14-17 scalars were ~10 us of host time per launch.
#pragma once

#include "flat_index.cuh"

// The shape as a kernel's parameter.
#define GC_POOL_SHAPE_PARAMS const gc::PoolShape pool_shape_

// The shape as a gc::PoolShape value (inside a kernel declared with GC_POOL_SHAPE_PARAMS).
#define GC_POOL_SHAPE pool_shape_

// The 14 sizes as local constants named as the fields (first statement of a kernel body); a
// kernel need not read them all.
#define GC_POOL_SHAPE_NAMES                                                                   \
  [[maybe_unused]] const int N = pool_shape_.N, C = pool_shape_.C, H = pool_shape_.H,         \
                             W = pool_shape_.W, P = pool_shape_.P, Q = pool_shape_.Q,         \
                             R = pool_shape_.R, S = pool_shape_.S,                            \
                             stride_h = pool_shape_.stride_h, stride_w = pool_shape_.stride_w, \
                             pad_h = pool_shape_.pad_h, pad_w = pool_shape_.pad_w,            \
                             dil_h = pool_shape_.dil_h, dil_w = pool_shape_.dil_w

namespace gc {

struct PoolShape {
  int N, C, H, W, P, Q;
  int R, S;
  int stride_h, stride_w;
  int pad_h, pad_w;
  int dil_h, dil_w;
  FlatDecoder input;   // flat indices of (N, C, H, W)
  FlatDecoder output;  // flat indices of (N, C, P, Q)
};

}  // namespace gc
