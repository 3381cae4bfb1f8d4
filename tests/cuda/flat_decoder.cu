// Test family of kernels/common/pool_shape.cuh (tests/core/test_pool_shape.py): decodes given
// flat indices with the host-made FlatDecoders of a gc::PoolShape, and echoes its 14 sizes, so
// that the struct's layout and the multiply-shift decoding are checked against Python.
#include "pool_shape.cuh"

// coords[8 * i ...]: (n, c, h, w) of flat[i] in the input, then in the output;
// sizes: the 14 ints in field order, then the input decoder's W (written by thread 0).
template <bool kNHWC>
__global__ void decode_flat(const int* __restrict__ flat, int* __restrict__ coords,
                            int* __restrict__ sizes, int count, GC_POOL_SHAPE_PARAMS) {
  GC_POOL_SHAPE_NAMES;
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i == 0) {
    const int fields[14] = {N, C, H, W, P, Q, R, S, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w};
    for (int k = 0; k < 14; ++k) sizes[k] = fields[k];
    sizes[14] = GC_POOL_SHAPE.input.w.divisor;
  }
  if (i >= count) return;
  const gc::Coord4 in = gc::unflatten<kNHWC>(flat[i], GC_POOL_SHAPE.input);
  const gc::Coord4 out = gc::unflatten<kNHWC>(flat[i], GC_POOL_SHAPE.output);
  const int got[8] = {in.n, in.c, in.h, in.w, out.n, out.c, out.h, out.w};
  for (int k = 0; k < 8; ++k) coords[8 * i + k] = got[k];
}
