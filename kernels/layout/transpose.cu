// A batch of 2-D transposes with strides, and a type conversion:
//   dst[b * dst_b + y * dst_y + x] = src[b * src_b + x * src_x + y],  0 <= x < X, 0 <= y < Y,
// y being src's unit-stride axis and x dst's (gpuconv/layout/launch_transpose.py). Its users:
// - the filters in the order a kernel reads them: KCRS filters as KRSC for the NHWC forward, as
//   RSKC or RSCK for the data gradient (every backward call), channels_last ones as KCRS. CuPy's
//   copy of the transposed view read with a stride of R*S elements and divided a 64-bit index per
//   axis: 330 GB/s on the H100, 14.3 us for layer4's 512x512x3x3 fp16 filters, a quarter of that
//   NHWC forward's time (kernels/layout/NOTES.md);
// - the ROI passes: an NCHW feature map copied to NHWC for roi_align's channel-group forward, an
//   atomic backward's NHWC float scratch made into the NCHW result (rounded once for half types).
#include "dtypes.cuh"
#include "fast_divmod.cuh"

constexpr int TRANSPOSE_THREADS = 256;
// Shared memory elements of one tile, its odd row pitch included (the launcher's tiles fit).
constexpr int TRANSPOSE_TILE_ELEMENTS = 2304;

// Grid: x over the tiles (tiles_x of them along x per tile row along y), y strides over the
// batch. A block moves a tile_x x tile_y tile through shared memory, reading along y and writing
// along x, so that both sides are coalesced; a whole axis of a few elements (a filter's 3x3 taps)
// is one tile row, and the tile is wide along x instead (the launcher's tile_shape). Src -> Dst
// goes through the accumulator type: exact where Dst is Src, one rounding from float to a half
// type.
template <class Src, class Dst>
__global__ void __launch_bounds__(TRANSPOSE_THREADS)
batched_transpose(const Src* __restrict__ src, Dst* __restrict__ dst, int batch, int X, int Y,
                  int src_b, int src_x, int dst_b, int dst_y, int tile_x, int tile_y,
                  int tiles_x) {
  __shared__ Src tile[TRANSPOSE_TILE_ELEMENTS];
  // Odd, so that the write phase's reads down a tile column fall in different banks.
  const int pitch = tile_y | 1;
  const int x0 = (blockIdx.x % tiles_x) * tile_x;
  const int y0 = (blockIdx.x / tiles_x) * tile_y;
  const int w = min(tile_x, X - x0);
  const int h = min(tile_y, Y - y0);
  const gc::FastDivmod by_h(h);
  const gc::FastDivmod by_w(w);
  const int n = w * h;
  for (int b = blockIdx.y; b < batch; b += gridDim.y) {
    const Src* from = src + b * src_b + x0 * src_x + y0;
    for (int i = threadIdx.x; i < n; i += TRANSPOSE_THREADS) {
      int xl, yl;
      by_h.divmod(i, xl, yl);
      tile[xl * pitch + yl] = from[xl * src_x + yl];
    }
    __syncthreads();
    Dst* to = dst + b * dst_b + y0 * dst_y + x0;
    for (int i = threadIdx.x; i < n; i += TRANSPOSE_THREADS) {
      int yl, xl;
      by_w.divmod(i, yl, xl);
      to[yl * dst_y + xl] = gc::from_acc<Dst>(gc::to_acc(tile[xl * pitch + yl]));
    }
    __syncthreads();  // the next batch entry overwrites the tile
  }
}
