// A batch of 2-D transposes with a type conversion: dst (images, cols, rows) = src (images,
// rows, cols). The ROI passes use it both ways round:
// - an atomic backward's NHWC float scratch made into the NCHW result (rows = pixels, cols =
//   channels), rounded once for half types (gpuconv/roi/launch_accumulator.py);
// - an NCHW feature map copied to NHWC for roi_align's channel-group forward (rows = channels,
//   cols = pixels; gpuconv/roi/launch_align.py `reads_through_nhwc`).
#include "dtypes.cuh"

// A tile of 32 rows x 32 columns per block pass: the reads (along a row) and the writes (along
// a column of src, a row of dst) are both whole runs of a warp.
constexpr int kTransposeTile = 32;
constexpr int kTransposeRows = 8;  // blockDim.y; blockDim.x is kTransposeTile

// Grid: x over the tiles, the row tile fastest (`row_tiles` of them per column tile); z strides
// over images. Block (32, 8). Src -> Dst goes through the accumulator type: exact where Dst is
// Src, one rounding from a float scratch to a half type.
template <class Src, class Dst>
__global__ void transpose_planes(const Src* __restrict__ src, Dst* __restrict__ dst, int images,
                                 int rows, int cols, int row_tiles) {
  // One column of padding: the transposed reads of a warp fall on 32 different banks.
  __shared__ Src tile[kTransposeTile][kTransposeTile + 1];
  const int row_tile = blockIdx.x % row_tiles;
  const int r0 = row_tile * kTransposeTile;
  const int c0 = (blockIdx.x / row_tiles) * kTransposeTile;
  const int lane = threadIdx.x;
  const int image_size = rows * cols;
  for (int n = blockIdx.z; n < images; n += gridDim.z) {
    const Src* image_src = src + n * image_size;
    Dst* image_dst = dst + n * image_size;
    for (int i = threadIdx.y; i < kTransposeTile; i += kTransposeRows) {
      const int r = r0 + i, c = c0 + lane;
      if (r < rows && c < cols) tile[i][lane] = image_src[r * cols + c];
    }
    __syncthreads();
    for (int i = threadIdx.y; i < kTransposeTile; i += kTransposeRows) {
      const int c = c0 + i, r = r0 + lane;
      if (c < cols && r < rows) {
        image_dst[c * rows + r] = gc::from_acc<Dst>(gc::to_acc(tile[lane][i]));
      }
    }
    __syncthreads();  // the next image overwrites the tile
  }
}
