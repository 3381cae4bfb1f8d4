// Winograd F(2x2, 3x3) convolution (Lavin and Gray, "Fast Algorithms for Convolutional Neural
// Networks", 2016), non-fused as cuDNN's WINOGRAD_NONFUSED: transforms here, the 16 products in
// between by the project's grouped 1x1 GEMM (gpuconv/conv/launch_winograd.py).
//
// Each 2x2 output tile t of image n is  Y_t = A^T [ (G g G^T) (.) (B^T d_t B) ] A  over a 4x4
// input patch d_t starting at (2*th - pad_h, 2*tw - pad_w): per element xi of the 4x4 transform
// domain, the sum over channels of U[xi][k][c] * V[xi][c][t] is one GEMM, so a 3x3 convolution
// costs 16 GEMMs of K x C x tiles, 16 / (4 * 9) = 4/9 of the direct products.
//
//   B^T = | 1  0 -1  0 |    G = | 1    0    0   |    A^T = | 1  1  1  0 |
//         | 0  1  1  0 |        | 1/2  1/2  1/2 |          | 0  1 -1 -1 |
//         | 0 -1  1  0 |        | 1/2 -1/2  1/2 |
//         | 0  1  0 -1 |        | 0    0    1   |
//
// The weight gradient uses the same factorization backwards: dL/dU = sum_t (A dY_t A^T) (.) V_t,
// again one GEMM per xi (over the tiles), and dL/dg = G^T (dL/dU) G.
//
// Transformed operands are stored in the accumulator type (float for the 16-bit dtypes): the
// transforms add and halve values, and float16 storage would round each of them again. Layout
// of a transformed tensor with `rows` channels over `tiles` tiles, matching the GEMM's view of
// it as a 1x1 convolution input of 16*rows channels in 16*groups groups:
//   NCHW: [xi][row][t]           (the pointwise NCHW GEMM's pixels are contiguous)
//   NHWC: [t][xi][row]           (the pointwise NHWC GEMM's channels are contiguous)
// Tiles are numbered t = (n * tiles_h + th) * tiles_w + tw within the launch's images. Every
// thread transforms one (tile, channel) pair: consecutive threads run along the tiles for NCHW
// and along the channels for NHWC, the contiguous dimension of each layout's transformed tensor.
// Offsets are 32-bit: the launcher keeps every tensor of a launch under 2^31 elements.
#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "epilogue.cuh"

namespace gc {

constexpr int WINOGRAD_ALPHA = 4;   // transform tile edge: output tile 2 + filter 3 - 1
constexpr int WINOGRAD_ELEMENTS = WINOGRAD_ALPHA * WINOGRAD_ALPHA;

// Offset of transformed element xi of (row, tile t) in the layout described above.
template <bool NHWC>
__device__ __forceinline__ int winograd_offset(int xi, int row, int t, int rows, int tiles) {
  return NHWC ? (t * WINOGRAD_ELEMENTS + xi) * rows + row : (xi * rows + row) * tiles + t;
}

// The (tile, channel) pair a thread transforms, along the layout's contiguous dimension
// (above), with the tile's image n and position (th, tw) in the image's tile grid.
struct WinogradPair {
  int t, row, n, th, tw;
};

template <bool NHWC>
__device__ __forceinline__ WinogradPair winograd_pair(int index, int rows, int tiles, int tiles_h,
                                                      int tiles_w) {
  WinogradPair p;
  if (NHWC) {
    p.t = index / rows;
    p.row = index - p.t * rows;
  } else {
    p.row = index / tiles;
    p.t = index - p.row * tiles;
  }
  p.n = p.t / (tiles_h * tiles_w);
  p.th = (p.t - p.n * tiles_h * tiles_w) / tiles_w;
  p.tw = p.t - (p.n * tiles_h + p.th) * tiles_w;
  return p;
}

// out = B^T d B (4x4, row-major).
template <class A>
__device__ __forceinline__ void winograd_input_tile(const A (&d)[16], A (&out)[16]) {
  A t[16];
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    t[0 * 4 + j] = d[0 * 4 + j] - d[2 * 4 + j];
    t[1 * 4 + j] = d[1 * 4 + j] + d[2 * 4 + j];
    t[2 * 4 + j] = d[2 * 4 + j] - d[1 * 4 + j];
    t[3 * 4 + j] = d[1 * 4 + j] - d[3 * 4 + j];
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    out[i * 4 + 0] = t[i * 4 + 0] - t[i * 4 + 2];
    out[i * 4 + 1] = t[i * 4 + 1] + t[i * 4 + 2];
    out[i * 4 + 2] = t[i * 4 + 2] - t[i * 4 + 1];
    out[i * 4 + 3] = t[i * 4 + 1] - t[i * 4 + 3];
  }
}

// out = G g G^T (4x4 from a 3x3 filter, row-major).
template <class A>
__device__ __forceinline__ void winograd_filter_tile(const A (&g)[9], A (&out)[16]) {
  const A half = A(0.5);
  A t[12];  // G g: 4 x 3
#pragma unroll
  for (int j = 0; j < 3; ++j) {
    t[0 * 3 + j] = g[0 * 3 + j];
    t[1 * 3 + j] = half * (g[0 * 3 + j] + g[1 * 3 + j] + g[2 * 3 + j]);
    t[2 * 3 + j] = half * (g[0 * 3 + j] - g[1 * 3 + j] + g[2 * 3 + j]);
    t[3 * 3 + j] = g[2 * 3 + j];
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    out[i * 4 + 0] = t[i * 3 + 0];
    out[i * 4 + 1] = half * (t[i * 3 + 0] + t[i * 3 + 1] + t[i * 3 + 2]);
    out[i * 4 + 2] = half * (t[i * 3 + 0] - t[i * 3 + 1] + t[i * 3 + 2]);
    out[i * 4 + 3] = t[i * 3 + 2];
  }
}

// out = A^T m A (2x2 from 4x4, row-major).
template <class A>
__device__ __forceinline__ void winograd_output_tile(const A (&m)[16], A (&out)[4]) {
  A t[8];  // A^T m: 2 x 4
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    t[0 * 4 + j] = m[0 * 4 + j] + m[1 * 4 + j] + m[2 * 4 + j];
    t[1 * 4 + j] = m[1 * 4 + j] - m[2 * 4 + j] - m[3 * 4 + j];
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    out[i * 2 + 0] = t[i * 4 + 0] + t[i * 4 + 1] + t[i * 4 + 2];
    out[i * 2 + 1] = t[i * 4 + 1] - t[i * 4 + 2] - t[i * 4 + 3];
  }
}

// out = A e A^T (4x4 from a 2x2 output-gradient tile e, row-major): the adjoint of the above.
template <class A>
__device__ __forceinline__ void winograd_grad_output_tile(const A (&e)[4], A (&out)[16]) {
  A t[8];  // A e: 4 x 2
#pragma unroll
  for (int j = 0; j < 2; ++j) {
    t[0 * 2 + j] = e[0 * 2 + j];
    t[1 * 2 + j] = e[0 * 2 + j] + e[1 * 2 + j];
    t[2 * 2 + j] = e[0 * 2 + j] - e[1 * 2 + j];
    t[3 * 2 + j] = -e[1 * 2 + j];
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    out[i * 4 + 0] = t[i * 2 + 0];
    out[i * 4 + 1] = t[i * 2 + 0] + t[i * 2 + 1];
    out[i * 4 + 2] = t[i * 2 + 0] - t[i * 2 + 1];
    out[i * 4 + 3] = -t[i * 2 + 1];
  }
}

// out = G^T u G (3x3 from 4x4, row-major): the adjoint of winograd_filter_tile.
template <class A>
__device__ __forceinline__ void winograd_filter_grad_tile(const A (&u)[16], A (&out)[9]) {
  const A half = A(0.5);
  A t[12];  // G^T u: 3 x 4
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    t[0 * 4 + j] = u[0 * 4 + j] + half * (u[1 * 4 + j] + u[2 * 4 + j]);
    t[1 * 4 + j] = half * (u[1 * 4 + j] - u[2 * 4 + j]);
    t[2 * 4 + j] = half * (u[1 * 4 + j] + u[2 * 4 + j]) + u[3 * 4 + j];
  }
#pragma unroll
  for (int i = 0; i < 3; ++i) {
    out[i * 3 + 0] = t[i * 4 + 0] + half * (t[i * 4 + 1] + t[i * 4 + 2]);
    out[i * 3 + 1] = half * (t[i * 4 + 1] - t[i * 4 + 2]);
    out[i * 3 + 2] = half * (t[i * 4 + 1] + t[i * 4 + 2]) + t[i * 4 + 3];
  }
}

}  // namespace gc

// u[xi][row][col] = (G g G^T)[xi] for every (row, col) of a 3x3 filter bank of `groups` groups.
// FLIP = false: g = w[row][col], w (rows, cols, 3, 3) as given (the forward convolution).
// FLIP = true: the filters of the data gradient of the forward convolution whose weight is
// w (groups * cols, rows / groups, 3, 3): row = a channel c of its input, col = a filter kg of
// c's group, and g = w[group * cols + kg][c % (rows / groups)] rotated by 180 degrees.
template <class T, bool FLIP>
__global__ void conv2d_winograd_filter_transform(const T* __restrict__ w,
                                                 gc::acc_t<T>* __restrict__ u, int rows,
                                                 int cols, int groups) {
  using A = gc::acc_t<T>;
  const int index = blockIdx.x * blockDim.x + threadIdx.x;
  if (index >= rows * cols) return;
  const int row = index / cols;
  const int col = index - row * cols;
  const T* src;
  if (FLIP) {
    const int rows_per_group = rows / groups;
    const int group = row / rows_per_group;
    src = w + ((group * cols + col) * rows_per_group + (row - group * rows_per_group)) * 9;
  } else {
    src = w + index * 9;
  }
  A g[9];
#pragma unroll
  for (int i = 0; i < 9; ++i) g[i] = gc::to_acc(src[FLIP ? 8 - i : i]);
  A out[16];
  gc::winograd_filter_tile(g, out);
#pragma unroll
  for (int xi = 0; xi < gc::WINOGRAD_ELEMENTS; ++xi) u[(xi * rows + row) * cols + col] = out[xi];
}

// v = B^T d B for every (tile, input channel) of the launch's images.
template <class T, bool NHWC>
__global__ void conv2d_winograd_input_transform(const T* __restrict__ x,
                                                gc::acc_t<T>* __restrict__ v, int tiles_h,
                                                int tiles_w, GC_CONV_SHAPE_PARAMS) {
  using A = gc::acc_t<T>;
  const int tiles = N * tiles_h * tiles_w;
  const int index = blockIdx.x * blockDim.x + threadIdx.x;
  if (index >= tiles * C) return;
  const gc::WinogradPair pair = gc::winograd_pair<NHWC>(index, C, tiles, tiles_h, tiles_w);
  const int h0 = 2 * pair.th - pad_h;
  const int w0 = 2 * pair.tw - pad_w;
  const gc::Strides4 xs = gc::packed_strides<NHWC>(C, H, W);
  const T* xc = x + pair.n * xs.n + pair.row * xs.c;
  A d[16];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int h = h0 + i;
      const int w = w0 + j;
      const bool inside = h >= 0 && h < H && w >= 0 && w < W;
      d[i * 4 + j] = inside ? gc::to_acc(xc[h * xs.h + w * xs.w]) : A(0);
    }
  }
  A out[16];
  gc::winograd_input_tile(d, out);
#pragma unroll
  for (int xi = 0; xi < gc::WINOGRAD_ELEMENTS; ++xi)
    v[gc::winograd_offset<NHWC>(xi, pair.row, pair.t, C, tiles)] = out[xi];
}

// y = epilogue(A^T m A) for every (tile, output channel): the 2x2 outputs of the tile that lie
// inside the P x Q plane.
template <class T, bool NHWC>
__global__ void conv2d_winograd_output_transform(const gc::acc_t<T>* __restrict__ m, int tiles_h,
                                                 int tiles_w, GC_CONV_SHAPE_PARAMS,
                                                 GC_EPILOGUE_PARAMS(T)) {
  using A = gc::acc_t<T>;
  const int tiles = N * tiles_h * tiles_w;
  const int index = blockIdx.x * blockDim.x + threadIdx.x;
  if (index >= tiles * K) return;
  const gc::WinogradPair pair = gc::winograd_pair<NHWC>(index, K, tiles, tiles_h, tiles_w);
  A in[16];
#pragma unroll
  for (int xi = 0; xi < gc::WINOGRAD_ELEMENTS; ++xi)
    in[xi] = m[gc::winograd_offset<NHWC>(xi, pair.row, pair.t, K, tiles)];
  A y[4];
  gc::winograd_output_tile(in, y);
  // epilogue
  const gc::Epilogue<T> epi = GC_EPILOGUE(T);
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int p = 2 * pair.th + i;
      const int q = 2 * pair.tw + j;
      if (p < P && q < Q) epi.store(pair.n, pair.row, p * Q + q, y[i * 2 + j]);
    }
  }
}

// z = A e A^T for every (tile, output channel) of the output gradient dy (N, K, P, Q): e is the
// tile's 2x2 block of dy, zero past the plane's last row or column.
template <class T, bool NHWC>
__global__ void conv2d_winograd_grad_output_transform(const T* __restrict__ dy,
                                                      gc::acc_t<T>* __restrict__ z, int tiles_h,
                                                      int tiles_w, GC_CONV_SHAPE_PARAMS) {
  using A = gc::acc_t<T>;
  const int tiles = N * tiles_h * tiles_w;
  const int index = blockIdx.x * blockDim.x + threadIdx.x;
  if (index >= tiles * K) return;
  const gc::WinogradPair pair = gc::winograd_pair<NHWC>(index, K, tiles, tiles_h, tiles_w);
  const gc::Strides4 ys = gc::packed_strides<NHWC>(K, P, Q);
  const T* dyk = dy + pair.n * ys.n + pair.row * ys.c;
  A e[4];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int p = 2 * pair.th + i;
      const int q = 2 * pair.tw + j;
      e[i * 2 + j] = p < P && q < Q ? gc::to_acc(dyk[p * ys.h + q * ys.w]) : A(0);
    }
  }
  A out[16];
  gc::winograd_grad_output_tile(e, out);
#pragma unroll
  for (int xi = 0; xi < gc::WINOGRAD_ELEMENTS; ++xi)
    z[gc::winograd_offset<NHWC>(xi, pair.row, pair.t, K, tiles)] = out[xi];
}

// dw[row][col] = G^T du[.][row][col] G (3x3) from du = dL/dU, (16, rows, cols).
template <class T>
__global__ void conv2d_winograd_filter_grad_transform(const gc::acc_t<T>* __restrict__ du,
                                                      T* __restrict__ dw, int rows, int cols) {
  using A = gc::acc_t<T>;
  const int index = blockIdx.x * blockDim.x + threadIdx.x;
  if (index >= rows * cols) return;
  A u[16];
#pragma unroll
  for (int xi = 0; xi < gc::WINOGRAD_ELEMENTS; ++xi) u[xi] = du[xi * rows * cols + index];
  A g[9];
  gc::winograd_filter_grad_tile(u, g);
#pragma unroll
  for (int i = 0; i < 9; ++i) dw[index * 9 + i] = gc::from_acc<T>(g[i]);
}
