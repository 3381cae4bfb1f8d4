// Winograd F(MxM, 3x3) convolution, M = 2 or 4 (Lavin and Gray, "Fast Algorithms for
// Convolutional Neural Networks", 2016), non-fused as cuDNN's WINOGRAD_NONFUSED: transforms
// here, the ALPHA^2 products in between by the project's grouped 1x1 GEMM
// (gpuconv/conv/launch_winograd.py), ALPHA = M + 2.
//
// Each M x M output tile t of image n is  Y_t = A^T [ (G g G^T) (.) (B^T d_t B) ] A  over an
// ALPHA x ALPHA input patch d_t starting at (M*th - pad_h, M*tw - pad_w): per element xi of the
// transform domain, the sum over channels of U[xi][k][c] * V[xi][c][t] is one GEMM, so a 3x3
// convolution costs ALPHA^2 GEMMs of K x C x tiles: 16 / (4 * 9) = 4/9 of the direct products
// for F(2x2, 3x3), 36 / (16 * 9) = 1/4 for F(4x4, 3x3).
//
// F(2x2, 3x3):
//   B^T = | 1  0 -1  0 |    G = | 1    0    0   |    A^T = | 1  1  1  0 |
//         | 0  1  1  0 |        | 1/2  1/2  1/2 |          | 0  1 -1 -1 |
//         | 0 -1  1  0 |        | 1/2 -1/2  1/2 |
//         | 0  1  0 -1 |        | 0    0    1   |
// F(4x4, 3x3):
//   B^T = | 4  0 -5  0  1  0 |    G = |  1/4     0     0  |    A^T = | 1  1  1  1  1  0 |
//         | 0 -4 -4  1  1  0 |        | -1/6  -1/6  -1/6  |          | 0  1 -1  2 -2  0 |
//         | 0  4 -4 -1  1  0 |        | -1/6   1/6  -1/6  |          | 0  1  1  4  4  0 |
//         | 0 -2 -1  2  1  0 |        |  1/24  1/12  1/6  |          | 0  1 -1  8 -8  1 |
//         | 0  2 -1 -2  1  0 |        |  1/24 -1/12  1/6  |
//         | 0  4  0 -5  0  1 |        |  0     0     1    |
// F(2x2, 3x3) is exact on small integers (its coefficients are halves); F(4x4, 3x3)'s sixths
// round, and its larger coefficients grow the rounding error by about an order of magnitude
// (kernels/conv/NOTES.md "Winograd F(4x4, 3x3)").
//
// The weight gradient uses the same factorization backwards: dL/dU = sum_t (A dY_t A^T) (.) V_t,
// again one GEMM per xi (over the tiles), and dL/dg = G^T (dL/dU) G.
//
// Transformed operands are stored in the accumulator type (float for the 16-bit dtypes): the
// transforms add and scale values, and float16 storage would round each of them again. Layout
// of a transformed tensor with `rows` channels over `tiles` tiles, matching the GEMM's view of
// it as a 1x1 convolution input of ALPHA^2*rows channels in ALPHA^2*groups groups:
//   NCHW: [xi][row][t]           (the pointwise NCHW GEMM's pixels are contiguous)
//   NHWC: [t][xi][row]           (the pointwise NHWC GEMM's channels are contiguous)
// Tiles are numbered t = (n * tiles_h + th) * tiles_w + tw within the launch's images. Every
// thread transforms one (tile, channel) pair: consecutive threads run along the tiles for NCHW
// and along the channels for NHWC, the contiguous dimension of each layout's transformed tensor.
// Offsets are 32-bit: the launcher keeps every tensor of a launch under 2^31 elements (but for
// the whole batch the weight gradient's direct fallback reads, with 64-bit image offsets).
#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "epilogue.cuh"

namespace gc {

// The five 1-D transforms of F(MxM, 3x3), each a small constant matrix applied to IN values
// (stride `xs`) giving OUT values (stride `ys`); apply_2d below applies one along both axes.
// Written out term by term so that the zero and unit coefficients cost nothing.
template <int M> struct WinogradBT;   // B^T: input patch, ALPHA -> ALPHA
template <int M> struct WinogradG;    // G: filter, 3 -> ALPHA
template <int M> struct WinogradAT;   // A^T: products back to outputs, ALPHA -> M
template <int M> struct WinogradA;    // A: output gradient, M -> ALPHA (adjoint of A^T)
template <int M> struct WinogradGT;   // G^T: filter gradient, ALPHA -> 3 (adjoint of G)

template <> struct WinogradBT<2> {
  static constexpr int IN = 4, OUT = 4;
  template <class A>
  __device__ __forceinline__ static void apply(const A* d, int xs, A* o, int ys) {
    o[0 * ys] = d[0 * xs] - d[2 * xs];
    o[1 * ys] = d[1 * xs] + d[2 * xs];
    o[2 * ys] = d[2 * xs] - d[1 * xs];
    o[3 * ys] = d[1 * xs] - d[3 * xs];
  }
};
template <> struct WinogradG<2> {
  static constexpr int IN = 3, OUT = 4;
  template <class A>
  __device__ __forceinline__ static void apply(const A* g, int xs, A* o, int ys) {
    const A half = A(0.5);
    o[0 * ys] = g[0];
    o[1 * ys] = half * (g[0] + g[1 * xs] + g[2 * xs]);
    o[2 * ys] = half * (g[0] - g[1 * xs] + g[2 * xs]);
    o[3 * ys] = g[2 * xs];
  }
};
template <> struct WinogradAT<2> {
  static constexpr int IN = 4, OUT = 2;
  template <class A>
  __device__ __forceinline__ static void apply(const A* m, int xs, A* o, int ys) {
    o[0 * ys] = m[0] + m[1 * xs] + m[2 * xs];
    o[1 * ys] = m[1 * xs] - m[2 * xs] - m[3 * xs];
  }
};
template <> struct WinogradA<2> {
  static constexpr int IN = 2, OUT = 4;
  template <class A>
  __device__ __forceinline__ static void apply(const A* e, int xs, A* o, int ys) {
    o[0 * ys] = e[0];
    o[1 * ys] = e[0] + e[1 * xs];
    o[2 * ys] = e[0] - e[1 * xs];
    o[3 * ys] = -e[1 * xs];
  }
};
template <> struct WinogradGT<2> {
  static constexpr int IN = 4, OUT = 3;
  template <class A>
  __device__ __forceinline__ static void apply(const A* u, int xs, A* o, int ys) {
    const A half = A(0.5);
    o[0 * ys] = u[0] + half * (u[1 * xs] + u[2 * xs]);
    o[1 * ys] = half * (u[1 * xs] - u[2 * xs]);
    o[2 * ys] = half * (u[1 * xs] + u[2 * xs]) + u[3 * xs];
  }
};

// F(4x4, 3x3), interpolation points 0, 1, -1, 2, -2 and infinity (Lavin and Gray's matrices).
template <> struct WinogradBT<4> {
  static constexpr int IN = 6, OUT = 6;
  template <class A>
  __device__ __forceinline__ static void apply(const A* d, int xs, A* o, int ys) {
    const A d0 = d[0], d1 = d[xs], d2 = d[2 * xs], d3 = d[3 * xs], d4 = d[4 * xs];
    const A d5 = d[5 * xs];
    o[0 * ys] = A(4) * d0 - A(5) * d2 + d4;
    o[1 * ys] = d3 + d4 - A(4) * (d1 + d2);
    o[2 * ys] = d4 - d3 + A(4) * (d1 - d2);
    o[3 * ys] = d4 - d2 + A(2) * (d3 - d1);
    o[4 * ys] = d4 - d2 + A(2) * (d1 - d3);
    o[5 * ys] = A(4) * d1 - A(5) * d3 + d5;
  }
};
template <> struct WinogradG<4> {
  static constexpr int IN = 3, OUT = 6;
  template <class A>
  __device__ __forceinline__ static void apply(const A* g, int xs, A* o, int ys) {
    const A g0 = g[0], g1 = g[xs], g2 = g[2 * xs];
    const A sixth = A(1) / A(6);
    o[0 * ys] = A(0.25) * g0;
    o[1 * ys] = -sixth * (g0 + g1 + g2);
    o[2 * ys] = -sixth * (g0 - g1 + g2);
    o[3 * ys] = g0 / A(24) + g1 / A(12) + g2 * sixth;
    o[4 * ys] = g0 / A(24) - g1 / A(12) + g2 * sixth;
    o[5 * ys] = g2;
  }
};
template <> struct WinogradAT<4> {
  static constexpr int IN = 6, OUT = 4;
  template <class A>
  __device__ __forceinline__ static void apply(const A* m, int xs, A* o, int ys) {
    const A sum12 = m[xs] + m[2 * xs], diff12 = m[xs] - m[2 * xs];
    const A sum34 = m[3 * xs] + m[4 * xs], diff34 = m[3 * xs] - m[4 * xs];
    o[0 * ys] = m[0] + sum12 + sum34;
    o[1 * ys] = diff12 + A(2) * diff34;
    o[2 * ys] = sum12 + A(4) * sum34;
    o[3 * ys] = diff12 + A(8) * diff34 + m[5 * xs];
  }
};
template <> struct WinogradA<4> {
  static constexpr int IN = 4, OUT = 6;
  template <class A>
  __device__ __forceinline__ static void apply(const A* e, int xs, A* o, int ys) {
    const A e0 = e[0], e1 = e[xs], e2 = e[2 * xs], e3 = e[3 * xs];
    o[0 * ys] = e0;
    o[1 * ys] = e0 + e1 + e2 + e3;
    o[2 * ys] = e0 - e1 + e2 - e3;
    o[3 * ys] = e0 + A(2) * e1 + A(4) * e2 + A(8) * e3;
    o[4 * ys] = e0 - A(2) * e1 + A(4) * e2 - A(8) * e3;
    o[5 * ys] = e3;
  }
};
template <> struct WinogradGT<4> {
  static constexpr int IN = 6, OUT = 3;
  template <class A>
  __device__ __forceinline__ static void apply(const A* u, int xs, A* o, int ys) {
    const A sixth = A(1) / A(6);
    const A sum12 = u[xs] + u[2 * xs], diff12 = u[xs] - u[2 * xs];
    const A sum34 = u[3 * xs] + u[4 * xs], diff34 = u[3 * xs] - u[4 * xs];
    o[0 * ys] = A(0.25) * u[0] - sixth * sum12 + sum34 / A(24);
    o[1 * ys] = -sixth * diff12 + diff34 / A(12);
    o[2 * ys] = sixth * (sum34 - sum12) + u[5 * xs];
  }
};

// out = Op x Op^T for an IN x IN tile x (row-major), an OUT x OUT tile out: Op along the
// columns, then along the rows.
template <class Op, class A>
__device__ __forceinline__ void apply_2d(const A (&x)[Op::IN * Op::IN],
                                         A (&out)[Op::OUT * Op::OUT]) {
  A t[Op::OUT * Op::IN];
#pragma unroll
  for (int j = 0; j < Op::IN; ++j) Op::apply(x + j, Op::IN, t + j, Op::IN);
#pragma unroll
  for (int i = 0; i < Op::OUT; ++i) Op::apply(t + i * Op::IN, 1, out + i * Op::OUT, 1);
}

// Edge of the transform tile and its element count for output tiles of M x M.
template <int M>
__host__ __device__ constexpr int winograd_alpha() {
  return M + 2;
}
template <int M>
__host__ __device__ constexpr int winograd_elements() {
  return winograd_alpha<M>() * winograd_alpha<M>();
}

// Offset of transformed element xi of (row, tile t) in the layout described above.
template <bool NHWC, int M>
__device__ __forceinline__ int winograd_offset(int xi, int row, int t, int rows, int tiles) {
  return NHWC ? (t * winograd_elements<M>() + xi) * rows + row : (xi * rows + row) * tiles + t;
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

// Neither infinite nor NaN (NaN fails every comparison).
template <class A>
__device__ __forceinline__ bool finite_value(A v) {
  return fabs(v) < A(INFINITY);
}

template <class A, int COUNT>
__device__ __forceinline__ bool all_finite(const A (&v)[COUNT]) {
  bool finite = true;
#pragma unroll
  for (int i = 0; i < COUNT; ++i) finite = finite && finite_value(v[i]);
  return finite;
}

// Stores the direct sums of the reference (gpuconv/reference/conv.py) for the M x M outputs of
// tile `pair` and output channel pair.row, in place of A^T m A where the tile's Winograd products
// are not all finite. An inf or NaN anywhere in the tile's input patch (any channel) or in the
// filter, or a transform that overflowed, reaches every product of the tile, and A^T m A mixes
// them with signed coefficients (inf - inf = NaN): torch, cuDNN's direct kernels and the
// reference give inf / NaN only at the outputs whose own window holds the value. Rare (the
// products are finite for finite inputs short of overflow): plain loops, out of line so that
// the transform's own path keeps its registers. FLIP: the data-gradient run (pair.row an input
// channel of the convolution differentiated; filters as conv2d_winograd_filter_transform reads
// them, rotated): its taps outside dy are skipped, as the reference's gradient adds only the
// pixels dy has, where the forward convolution multiplies its zero padding too (0 * inf is NaN
// there, as in torch).
// How winograd_direct_tile reads w (bits of one argument: a second one costs the output
// transform 8-16 registers at the call, sm_80/sm_90): FILTERS_FLIP, the data gradient's rotated
// filters (the filter transform's FLIP); FILTERS_KRSC, w laid out (K, 3, 3, C/groups).
constexpr int FILTERS_FLIP = 1;
constexpr int FILTERS_KRSC = 2;

template <class T, bool NHWC, int M>
__device__ __noinline__ void winograd_direct_tile(const T* __restrict__ x,
                                                  const T* __restrict__ w, int w_mode,
                                                  WinogradPair pair, ConvShape s,
                                                  Epilogue<T> epi) {
  using A = acc_t<T>;
  const bool flip = w_mode & FILTERS_FLIP;
  const int c_per_group = s.C / s.groups;
  const int k_per_group = s.K / s.groups;
  const int group = pair.row / k_per_group;
  const FilterStrides ws =
      filter_strides(flip ? k_per_group : c_per_group, 3, 3, w_mode & FILTERS_KRSC);
  // Tap (r, u) of filter (pair.row, cl) is w_0[cl * step_c + r * step_r + u * step_u]: tap
  // (r, u) of w's filter (pair.row, cl), or flipped, tap (2 - r, 2 - u) of w's filter
  // (group * c_per_group + cl, pair.row - group * k_per_group).
  const T* w_0 = flip ? w + group * c_per_group * ws.k + (pair.row - group * k_per_group) * ws.c +
                            2 * (ws.r + ws.s)
                      : w + pair.row * ws.k;
  const int step_c = flip ? ws.k : ws.c;
  const int step_r = flip ? -ws.r : ws.r;
  const int step_u = flip ? -ws.s : ws.s;
  const Strides4 xs = packed_strides<NHWC>(s.C, s.H, s.W);
  for (int i = 0; i < M; ++i) {
    const int p = M * pair.th + i;
    for (int j = 0; j < M; ++j) {
      const int q = M * pair.tw + j;
      if (p >= s.P || q >= s.Q) continue;
      A sum = A(0);
      for (int cl = 0; cl < c_per_group; ++cl) {
        const T* xc = x + pair.n * xs.n + (group * c_per_group + cl) * xs.c;
        const T* w_f = w_0 + cl * step_c;
        for (int r = 0; r < 3; ++r) {
          const int h = p - s.pad_h + r;
          for (int u = 0; u < 3; ++u) {
            const int ww = q - s.pad_w + u;
            const A tap = to_acc(w_f[r * step_r + u * step_u]);
            if (h >= 0 && h < s.H && ww >= 0 && ww < s.W) {
              sum += to_acc(xc[h * xs.h + ww * xs.w]) * tap;
            } else if (!flip) {
              sum += A(0) * tap;
            }
          }
        }
      }
      epi.store(pair.n, pair.row, p * s.Q + q, sum);
    }
  }
}

}  // namespace gc

// u[xi][row][col] = (G g G^T)[xi] for every (row, col) of a 3x3 filter bank of `groups` groups.
// FLIP = false: g = w[row][col], w (rows, cols, 3, 3) as given (the forward convolution).
// FLIP = true: the filters of the data gradient of the forward convolution whose weight is
// w (groups * cols, rows / groups, 3, 3): row = a channel c of its input, col = a filter kg of
// c's group, and g = w[group * cols + kg][c % (rows / groups)] rotated by 180 degrees.
// krsc: w is laid out (K, 3, 3, C/groups) in memory (channels_last filters, read in place),
// else (K, C/groups, 3, 3).
template <class T, bool FLIP, int M>
__global__ void conv2d_winograd_filter_transform(const T* __restrict__ w,
                                                 gc::acc_t<T>* __restrict__ u, int rows,
                                                 int cols, int groups, int krsc) {
  using A = gc::acc_t<T>;
  constexpr int ELEMENTS = gc::winograd_elements<M>();
  const int index = blockIdx.x * blockDim.x + threadIdx.x;
  if (index >= rows * cols) return;
  const int row = index / cols;
  const int col = index - row * cols;
  const int rows_per_group = rows / groups;
  const gc::FilterStrides ws = gc::filter_strides(FLIP ? rows_per_group : cols, 3, 3, krsc);
  const T* src;
  if (FLIP) {
    const int group = row / rows_per_group;
    src = w + (group * cols + col) * ws.k + (row - group * rows_per_group) * ws.c;
  } else {
    src = w + row * ws.k + col * ws.c;
  }
  A g[9];
#pragma unroll
  for (int i = 0; i < 9; ++i) {
    const int tap = FLIP ? 8 - i : i;
    g[i] = gc::to_acc(src[(tap / 3) * ws.r + (tap % 3) * ws.s]);
  }
  A out[ELEMENTS];
  gc::apply_2d<gc::WinogradG<M>>(g, out);
#pragma unroll
  for (int xi = 0; xi < ELEMENTS; ++xi) u[(xi * rows + row) * cols + col] = out[xi];
}

// v = B^T d B for every (tile, input channel) of the launch's images.
template <class T, bool NHWC, int M>
__global__ void conv2d_winograd_input_transform(const T* __restrict__ x,
                                                gc::acc_t<T>* __restrict__ v, int tiles_h,
                                                int tiles_w, GC_CONV_SHAPE_PARAMS) {
  GC_CONV_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  constexpr int ALPHA = gc::winograd_alpha<M>();
  constexpr int ELEMENTS = gc::winograd_elements<M>();
  const int tiles = N * tiles_h * tiles_w;
  const int index = blockIdx.x * blockDim.x + threadIdx.x;
  if (index >= tiles * C) return;
  const gc::WinogradPair pair = gc::winograd_pair<NHWC>(index, C, tiles, tiles_h, tiles_w);
  const int h0 = M * pair.th - pad_h;
  const int w0 = M * pair.tw - pad_w;
  const gc::Strides4 xs = gc::packed_strides<NHWC>(C, H, W);
  const T* xc = x + pair.n * xs.n + pair.row * xs.c;
  A d[ELEMENTS];
#pragma unroll
  for (int i = 0; i < ALPHA; ++i) {
#pragma unroll
    for (int j = 0; j < ALPHA; ++j) {
      const int h = h0 + i;
      const int w = w0 + j;
      const bool inside = h >= 0 && h < H && w >= 0 && w < W;
      d[i * ALPHA + j] = inside ? gc::to_acc(xc[h * xs.h + w * xs.w]) : A(0);
    }
  }
  A out[ELEMENTS];
  gc::apply_2d<gc::WinogradBT<M>>(d, out);
#pragma unroll
  for (int xi = 0; xi < ELEMENTS; ++xi)
    v[gc::winograd_offset<NHWC, M>(xi, pair.row, pair.t, C, tiles)] = out[xi];
}

// y = epilogue(A^T m A) for every (tile, output channel): the M x M outputs of the tile that
// lie inside the P x Q plane; where m or y is not all finite, y is summed directly from x and
// w, the input transform's and the filter transform's operands (winograd_direct_tile; w_mode:
// gc::FILTERS_FLIP and gc::FILTERS_KRSC as the filter transform's FLIP and krsc).
template <class T, bool NHWC, int M>
__global__ void conv2d_winograd_output_transform(const gc::acc_t<T>* __restrict__ m,
                                                 const T* __restrict__ x,
                                                 const T* __restrict__ w, int w_mode,
                                                 int tiles_h, int tiles_w, GC_CONV_SHAPE_PARAMS,
                                                 GC_EPILOGUE_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  constexpr int ELEMENTS = gc::winograd_elements<M>();
  const int tiles = N * tiles_h * tiles_w;
  const int index = blockIdx.x * blockDim.x + threadIdx.x;
  if (index >= tiles * K) return;
  const gc::WinogradPair pair = gc::winograd_pair<NHWC>(index, K, tiles, tiles_h, tiles_w);
  A in[ELEMENTS];
  bool finite = true;    // tested as loaded: `in` need not stay live past its transform
#pragma unroll
  for (int xi = 0; xi < ELEMENTS; ++xi) {
    in[xi] = m[gc::winograd_offset<NHWC, M>(xi, pair.row, pair.t, K, tiles)];
    finite = finite && gc::finite_value(in[xi]);
  }
  A y[M * M];
  gc::apply_2d<gc::WinogradAT<M>>(in, y);
  const gc::Epilogue<T> epi = GC_EPILOGUE(T);
  if (!finite || !gc::all_finite(y)) {
    gc::winograd_direct_tile<T, NHWC, M>(x, w, w_mode, pair, GC_CONV_SHAPE, epi);
    return;
  }
#pragma unroll
  for (int i = 0; i < M; ++i) {
#pragma unroll
    for (int j = 0; j < M; ++j) {
      const int p = M * pair.th + i;
      const int q = M * pair.tw + j;
      if (p < P && q < Q) epi.store(pair.n, pair.row, p * Q + q, y[i * M + j]);
    }
  }
}

// z = A e A^T for every (tile, output channel) of the output gradient dy (N, K, P, Q): e is the
// tile's M x M block of dy, zero past the plane's last row or column.
template <class T, bool NHWC, int M>
__global__ void conv2d_winograd_grad_output_transform(const T* __restrict__ dy,
                                                      gc::acc_t<T>* __restrict__ z, int tiles_h,
                                                      int tiles_w, GC_CONV_SHAPE_PARAMS) {
  GC_CONV_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  constexpr int ELEMENTS = gc::winograd_elements<M>();
  const int tiles = N * tiles_h * tiles_w;
  const int index = blockIdx.x * blockDim.x + threadIdx.x;
  if (index >= tiles * K) return;
  const gc::WinogradPair pair = gc::winograd_pair<NHWC>(index, K, tiles, tiles_h, tiles_w);
  const gc::Strides4 ys = gc::packed_strides<NHWC>(K, P, Q);
  const T* dyk = dy + pair.n * ys.n + pair.row * ys.c;
  A e[M * M];
#pragma unroll
  for (int i = 0; i < M; ++i) {
#pragma unroll
    for (int j = 0; j < M; ++j) {
      const int p = M * pair.th + i;
      const int q = M * pair.tw + j;
      e[i * M + j] = p < P && q < Q ? gc::to_acc(dyk[p * ys.h + q * ys.w]) : A(0);
    }
  }
  A out[ELEMENTS];
  gc::apply_2d<gc::WinogradA<M>>(e, out);
#pragma unroll
  for (int xi = 0; xi < ELEMENTS; ++xi)
    z[gc::winograd_offset<NHWC, M>(xi, pair.row, pair.t, K, tiles)] = out[xi];
}

// dw[row][col] = G^T du[.][row][col] G (3x3) from du = dL/dU, (ELEMENTS, rows, cols), for the
// convolution of x (N, C, H, W) with output gradient dy (N, K, P, Q) (rows = K, cols = C/groups).
// Where du or the result is not all finite (an inf or NaN in x or dy, or an overflow), the 9 taps
// are summed directly over the batch instead, as the reference does (its zero padding times dy
// included): the transforms would mix the non-finite values into every tap (see
// winograd_direct_tile).
template <class T, bool NHWC, int M>
__global__ void conv2d_winograd_filter_grad_transform(const gc::acc_t<T>* __restrict__ du,
                                                      const T* __restrict__ x,
                                                      const T* __restrict__ dy,
                                                      T* __restrict__ dw, int rows, int cols,
                                                      GC_CONV_SHAPE_PARAMS) {
  GC_CONV_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  constexpr int ELEMENTS = gc::winograd_elements<M>();
  const int index = blockIdx.x * blockDim.x + threadIdx.x;
  if (index >= rows * cols) return;
  A u[ELEMENTS];
#pragma unroll
  for (int xi = 0; xi < ELEMENTS; ++xi) u[xi] = du[xi * rows * cols + index];
  A g[9];
  gc::apply_2d<gc::WinogradGT<M>>(u, g);
  if (!gc::all_finite(u) || !gc::all_finite(g)) {
    const int k = index / cols;
    const int c = (k / (K / groups)) * cols + (index - k * cols);
    const gc::Strides4 xs = gc::packed_strides<NHWC>(C, H, W);
    const gc::Strides4 ys = gc::packed_strides<NHWC>(K, P, Q);
    for (int tap = 0; tap < 9; ++tap) {
      const int r = tap / 3, v = tap - r * 3;
      A sum = A(0);
      for (int n = 0; n < N; ++n) {
        for (int p = 0; p < P; ++p) {
          const int h = p - pad_h + r;
          for (int q = 0; q < Q; ++q) {
            const int ww = q - pad_w + v;
            const bool inside = h >= 0 && h < H && ww >= 0 && ww < W;
            const A xv = inside ? gc::to_acc(x[n * (long long)xs.n + c * xs.c + h * xs.h +
                                               ww * xs.w])
                                : A(0);
            sum += xv * gc::to_acc(dy[n * (long long)ys.n + k * ys.c + p * ys.h + q * ys.w]);
          }
        }
      }
      g[tap] = sum;
    }
  }
#pragma unroll
  for (int i = 0; i < 9; ++i) dw[index * 9 + i] = gc::from_acc<T>(g[i]);
}
