// 1x1 convolution (no padding; any stride; groups) as a batched GEMM straight on the tensors.
//
// NCHW (conv2d_pointwise_nchw): one GEMM per group over all images, out[:, g] (K/g x N*P*Q) =
//   W[g] (K/g x C/g) * x[:, g] (C/g x N*P*Q), the pixel columns spanning the images
//   (NchwPixelSource) so that small planes (7x7) still fill a tile; grid
//   (ceil(N*P*Q / BLOCK_N), ceil(K/g / BLOCK_M), groups). The pixels are the contiguous
//   dimension of both x and out: B is loaded pixel-fast and lanes run along N in the epilogue.
// NHWC (conv2d_pointwise_nhwc): one GEMM per group over all images, out (N*P*Q x K/g) =
//   x (N*P*Q x C/g) * W[g]^T; grid (ceil(N*P*Q / BLOCK_M), ceil(K/g / BLOCK_N), groups).
//   Channels are contiguous in x, W (KCRS = KRSC for 1x1) and out.
// Both share the SIMT main loop of simt_gemm.cuh with the implicit GEMM; without taps there is
// no (c, r, s) split and no padding test, which is what makes this the 1x1 fast path. Split-K
// as the implicit GEMM's (split_k.cuh): grid z = groups * splits, each split a share of the
// group's channels (whole k-tiles), its operands offset to its first channel.
// Dynamic shared memory of the GEMM kernels: Tile::STAGED_SMEM_ELEMENTS accumulator values.
#include "conv_operands.cuh"
#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "epilogue.cuh"
#include "simt_gemm.cuh"
#include "split_k.cuh"

// The large tile's 2 blocks per SM (GC_SIMT_LAUNCH_BOUNDS' 128-register budget) were first
// asked here: it held 127-128 registers without a budget until the split-K channel offsets
// moved ptxas to 143-147 (1 block); with it, 128 and no spill on sm_80 and sm_90.
template <class T, int BLOCK_M, int BLOCK_N, int BLOCK_K, int THREAD_M, int THREAD_N>
__global__ void GC_SIMT_LAUNCH_BOUNDS(BLOCK_M, BLOCK_N, THREAD_M, THREAD_N)
conv2d_pointwise_nchw(const T* __restrict__ x, const T* __restrict__ w,
                      GC_CONV_SHAPE_PARAMS, GC_EPILOGUE_PARAMS(T),
                      GC_SPLIT_K_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  using Tile = gc::SimtTile<BLOCK_M, BLOCK_N, BLOCK_K, THREAD_M, THREAD_N>;
  using WeightSource = gc::RowMajorSource<T>;
  using PixelSource = gc::NchwPixelSource<T>;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* smem = reinterpret_cast<A*>(smem_raw);

  const gc::ConvShape shape = GC_CONV_SHAPE;
  const gc::GemmSlice slice(splits);
  const int group = slice.group;
  const int split = slice.split;
  const int c_per_group = shape.c_per_group();
  const int k_per_group = shape.k_per_group();
  // Pixel tiles along x (no 65535 limit there), filter tiles along y.
  const int m0 = blockIdx.y * BLOCK_M;
  const int n0 = blockIdx.x * BLOCK_N;
  const int tid = threadIdx.x;

  const gc::KSlice channels = gc::split_k_slice(c_per_group, BLOCK_K, split, splits);
  const WeightSource src_a{w + channels.first, k_per_group, channels.count, c_per_group,
                           group * k_per_group};
  const PixelSource src_b(x + (group * c_per_group + channels.first) * H * W, N, P, Q, C * H * W,
                          stride_h * W, stride_w, H * W, channels.count);
  gc::KContiguousLoader<A, WeightSource, BLOCK_M, BLOCK_K, Tile::THREADS> loader_a(src_a, m0, tid);
  gc::MnContiguousLoader<A, PixelSource, BLOCK_N, BLOCK_K, Tile::THREADS> loader_b(src_b, n0, tid);
  gc::SimtMma<A, Tile, false> mma(tid);

  gc::simt_gemm_mainloop<A, Tile>(mma, loader_a, src_a, loader_b, src_b, channels.count, smem);

  // epilogue
  const gc::SplitKOutput<T> result(GC_EPILOGUE(T), partial, splits, split, shape);
  const gc::FastDivmod div_pq(P * Q);
  const int pixels = N * P * Q;
  mma.epilogue(smem, [&](int row, int col, A v) {
    const int filter = m0 + row;
    const int j = n0 + col;
    if (filter >= k_per_group || j >= pixels) return;
    int n, pq;
    div_pq.divmod(j, n, pq);
    result.store(n, group * k_per_group + filter, pq, v);
  });
}

template <class T, int BLOCK_M, int BLOCK_N, int BLOCK_K, int THREAD_M, int THREAD_N>
__global__ void GC_SIMT_LAUNCH_BOUNDS(BLOCK_M, BLOCK_N, THREAD_M, THREAD_N)
conv2d_pointwise_nhwc(const T* __restrict__ x, const T* __restrict__ w,
                      GC_CONV_SHAPE_PARAMS, GC_EPILOGUE_PARAMS(T),
                      GC_SPLIT_K_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  using Tile = gc::SimtTile<BLOCK_M, BLOCK_N, BLOCK_K, THREAD_M, THREAD_N>;
  using PixelSource = gc::PointwiseNhwcSource<T>;
  using WeightSource = gc::RowMajorSource<T>;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* smem = reinterpret_cast<A*>(smem_raw);

  const gc::ConvShape shape = GC_CONV_SHAPE;
  const gc::GemmSlice slice(splits);
  const int group = slice.group;
  const int split = slice.split;
  const int c_per_group = shape.c_per_group();
  const int k_per_group = shape.k_per_group();
  const int m0 = blockIdx.x * BLOCK_M;
  const int n0 = blockIdx.y * BLOCK_N;
  const int tid = threadIdx.x;

  const gc::KSlice channels = gc::split_k_slice(c_per_group, BLOCK_K, split, splits);
  const PixelSource src_a(x, shape, group, channels.first, channels.count);
  const WeightSource src_b{w + channels.first, k_per_group, channels.count, c_per_group,
                           group * k_per_group};
  gc::KContiguousLoader<A, PixelSource, BLOCK_M, BLOCK_K, Tile::THREADS> loader_a(src_a, m0, tid);
  gc::KContiguousLoader<A, WeightSource, BLOCK_N, BLOCK_K, Tile::THREADS> loader_b(src_b, n0, tid);
  gc::SimtMma<A, Tile, false> mma(tid);

  gc::simt_gemm_mainloop<A, Tile>(mma, loader_a, src_a, loader_b, src_b, channels.count, smem);

  // epilogue
  const gc::SplitKOutput<T> result(GC_EPILOGUE(T), partial, splits, split, shape);
  const gc::FastDivmod div_pq(P * Q);
  const int gemm_m = N * P * Q;
  mma.epilogue(smem, [&](int row, int col, A v) {
    const int m = m0 + row;
    const int filter = n0 + col;
    if (m >= gemm_m || filter >= k_per_group) return;
    int n, pq;
    div_pq.divmod(m, n, pq);
    result.store(n, group * k_per_group + filter, pq, v);
  });
}
