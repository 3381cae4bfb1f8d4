// The float accumulator of an atomic backward pass (roi_align.cu, roi_pool.cu) made into the
// result: rounded once to a half element type (accumulator_to_element), or transposed from the
// NHWC scratch that an NCHW call's scatter added into (accumulator_nhwc_to_nchw). Atomics on
// __half would round every partial sum; float atomics into a scratch buffer plus one of these
// passes cost one extra read and write of grad_input and keep the sum accurate.
#include "dtypes.cuh"
#include "pool_window.cuh"

template <class T>
__global__ void accumulator_to_element(const gc::acc_t<T>* __restrict__ src, T* __restrict__ dst,
                                       int total) {
  for (long long i = gc::grid_first(); i < total; i += gc::grid_stride()) {
    dst[i] = gc::from_acc<T>(src[i]);
  }
}

// A tile of 32 pixels x 32 channels per block pass, so that both the NHWC reads (along
// channels) and the NCHW writes (along pixels) are whole runs of a warp.
constexpr int kTransposeTile = 32;
constexpr int kTransposeRows = 8;  // blockDim.y; blockDim.x is kTransposeTile

// dst (images, channels, pixels) of T = src (images, pixels, channels) of the accumulator type.
// Grid: x over pixel tiles, y over channel tiles, z strides over images. Block (32, 8).
template <class T>
__global__ void accumulator_nhwc_to_nchw(const gc::acc_t<T>* __restrict__ src,
                                         T* __restrict__ dst, int images, int pixels,
                                         int channels) {
  using A = gc::acc_t<T>;
  // One column of padding: the transposed reads of a warp fall on 32 different banks.
  __shared__ A tile[kTransposeTile][kTransposeTile + 1];
  const int p0 = blockIdx.x * kTransposeTile;
  const int c0 = blockIdx.y * kTransposeTile;
  const int lane = threadIdx.x;
  const int image_size = pixels * channels;
  for (int n = blockIdx.z; n < images; n += gridDim.z) {
    const A* image_src = src + n * image_size;
    T* image_dst = dst + n * image_size;
    for (int i = threadIdx.y; i < kTransposeTile; i += kTransposeRows) {
      const int p = p0 + i, c = c0 + lane;
      if (p < pixels && c < channels) tile[i][lane] = image_src[p * channels + c];
    }
    __syncthreads();
    for (int i = threadIdx.y; i < kTransposeTile; i += kTransposeRows) {
      const int c = c0 + i, p = p0 + lane;
      if (c < channels && p < pixels) image_dst[c * pixels + p] = gc::from_acc<T>(tile[lane][i]);
    }
    __syncthreads();  // the next image overwrites the tile
  }
}
