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
// The *_async kernels (float, double) fill the same tiles by cp.async, STAGES deep.
#include "async_gemm.cuh"
#include "conv_operands.cuh"
#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "epilogue.cuh"
#include "simt_gemm.cuh"
#include "split_k.cuh"

// The large tile's 2 blocks per SM (GC_SIMT_LAUNCH_BOUNDS' 128-register budget) were first
// asked here: it held 127-128 registers without a budget until the split-K channel offsets
// moved ptxas to 143-147 (1 block); with it, 128 and no spill on sm_80 and sm_90.
// Tile: a SimtTile (operands through registers) or a SimtTileAsync (cp.async, float and
// double: the *_async kernels, async_gemm.cuh).
template <class T, class Tile>
__device__ __forceinline__ void pointwise_nchw(const T* x, const T* w, const gc::ConvShape& shape,
                                               const gc::Epilogue<T>& epi, int splits,
                                               gc::acc_t<T>* partial, unsigned char* smem_raw) {
  using A = gc::acc_t<T>;
  using WeightSource = gc::RowMajorSource<T>;
  using PixelSource = gc::NchwPixelSource<T>;
  A* smem = reinterpret_cast<A*>(smem_raw);

  const gc::GemmSlice slice(splits);
  const int group = slice.group;
  const int split = slice.split;
  const int c_per_group = shape.c_per_group();
  const int k_per_group = shape.k_per_group();
  // Pixel tiles along x (no 65535 limit there), filter tiles along y.
  const int m0 = blockIdx.y * Tile::BLOCK_M;
  const int n0 = blockIdx.x * Tile::BLOCK_N;
  const int tid = threadIdx.x;

  const gc::KSlice channels = gc::split_k_slice(c_per_group, Tile::BLOCK_K, split, splits);
  const WeightSource src_a{w + channels.first, k_per_group, channels.count, c_per_group,
                           group * k_per_group};
  const PixelSource src_b(x + (group * c_per_group + channels.first) * shape.H * shape.W,
                          shape.N, shape.P, shape.Q, shape.C * shape.H * shape.W,
                          shape.stride_h * shape.W, shape.stride_w, shape.H * shape.W,
                          channels.count);
  gc::KLoaderFor<Tile, A, WeightSource, Tile::BLOCK_M> loader_a(src_a, m0, tid);
  gc::MnLoaderFor<Tile, A, PixelSource, Tile::BLOCK_N> loader_b(src_b, n0, tid);
  gc::SimtMma<A, Tile, false> mma(tid);

  gc::gemm_mainloop<A, Tile>(mma, loader_a, src_a, loader_b, src_b, channels.count, smem);

  // epilogue
  const gc::SplitKOutput<T> result(epi, partial, splits, split, shape);
  const gc::FastDivmod div_pq(shape.P * shape.Q);
  const int pixels = shape.N * shape.P * shape.Q;
  mma.epilogue(smem, [&](int row, int col, A v) {
    const int filter = m0 + row;
    const int j = n0 + col;
    if (filter >= k_per_group || j >= pixels) return;
    int n, pq;
    div_pq.divmod(j, n, pq);
    result.store(n, group * k_per_group + filter, pq, v);
  });
}

template <class T, class Tile>
__device__ __forceinline__ void pointwise_nhwc(const T* x, const T* w, const gc::ConvShape& shape,
                                               const gc::Epilogue<T>& epi, int splits,
                                               gc::acc_t<T>* partial, unsigned char* smem_raw) {
  using A = gc::acc_t<T>;
  using PixelSource = gc::PointwiseNhwcSource<T>;
  using WeightSource = gc::RowMajorSource<T>;
  A* smem = reinterpret_cast<A*>(smem_raw);

  const gc::GemmSlice slice(splits);
  const int group = slice.group;
  const int split = slice.split;
  const int c_per_group = shape.c_per_group();
  const int k_per_group = shape.k_per_group();
  const int m0 = blockIdx.x * Tile::BLOCK_M;
  const int n0 = blockIdx.y * Tile::BLOCK_N;
  const int tid = threadIdx.x;

  const gc::KSlice channels = gc::split_k_slice(c_per_group, Tile::BLOCK_K, split, splits);
  const PixelSource src_a(x, shape, group, channels.first, channels.count);
  const WeightSource src_b{w + channels.first, k_per_group, channels.count, c_per_group,
                           group * k_per_group};
  gc::KLoaderFor<Tile, A, PixelSource, Tile::BLOCK_M> loader_a(src_a, m0, tid);
  gc::KLoaderFor<Tile, A, WeightSource, Tile::BLOCK_N> loader_b(src_b, n0, tid);
  gc::SimtMma<A, Tile, false> mma(tid);

  gc::gemm_mainloop<A, Tile>(mma, loader_a, src_a, loader_b, src_b, channels.count, smem);

  // epilogue
  const gc::SplitKOutput<T> result(epi, partial, splits, split, shape);
  const gc::FastDivmod div_pq(shape.P * shape.Q);
  const int gemm_m = shape.N * shape.P * shape.Q;
  mma.epilogue(smem, [&](int row, int col, A v) {
    const int m = m0 + row;
    const int filter = n0 + col;
    if (m >= gemm_m || filter >= k_per_group) return;
    int n, pq;
    div_pq.divmod(m, n, pq);
    result.store(n, group * k_per_group + filter, pq, v);
  });
}

template <class T, int BLOCK_M, int BLOCK_N, int BLOCK_K, int THREAD_M, int THREAD_N>
__global__ void GC_SIMT_LAUNCH_BOUNDS(BLOCK_M, BLOCK_N, THREAD_M, THREAD_N)
conv2d_pointwise_nchw(const T* __restrict__ x, const T* __restrict__ w,
                      GC_CONV_SHAPE_PARAMS, GC_EPILOGUE_PARAMS(T), GC_SPLIT_K_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  using Tile = gc::SimtTile<BLOCK_M, BLOCK_N, BLOCK_K, THREAD_M, THREAD_N>;
  pointwise_nchw<T, Tile>(x, w, GC_CONV_SHAPE, GC_EPILOGUE(T), splits, partial, smem_raw);
}

template <class T, int BLOCK_M, int BLOCK_N, int BLOCK_K, int THREAD_M, int THREAD_N>
__global__ void GC_SIMT_LAUNCH_BOUNDS(BLOCK_M, BLOCK_N, THREAD_M, THREAD_N)
conv2d_pointwise_nhwc(const T* __restrict__ x, const T* __restrict__ w,
                      GC_CONV_SHAPE_PARAMS, GC_EPILOGUE_PARAMS(T), GC_SPLIT_K_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  using Tile = gc::SimtTile<BLOCK_M, BLOCK_N, BLOCK_K, THREAD_M, THREAD_N>;
  pointwise_nhwc<T, Tile>(x, w, GC_CONV_SHAPE, GC_EPILOGUE(T), splits, partial, smem_raw);
}

// float and double with cp.async (sm_80+): one element per copy into STAGES stages
// (async_gemm.cuh); launcher option loads="cp_async". The NCHW large tile spills 8 bytes at
// 128 registers on sm_90: no 2-blocks-per-SM budget for it.
template <class T, int BLOCK_M, int BLOCK_N, int BLOCK_K, int THREAD_M, int THREAD_N, int STAGES>
__global__ void GC_SIMT_LAUNCH_BOUNDS_IF(BLOCK_M, BLOCK_N, THREAD_M, THREAD_N, false)
conv2d_pointwise_nchw_async(const T* __restrict__ x, const T* __restrict__ w,
                            GC_CONV_SHAPE_PARAMS, GC_EPILOGUE_PARAMS(T), GC_SPLIT_K_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  using Tile = gc::SimtTileAsync<BLOCK_M, BLOCK_N, BLOCK_K, THREAD_M, THREAD_N, STAGES>;
  pointwise_nchw<T, Tile>(x, w, GC_CONV_SHAPE, GC_EPILOGUE(T), splits, partial, smem_raw);
}

template <class T, int BLOCK_M, int BLOCK_N, int BLOCK_K, int THREAD_M, int THREAD_N, int STAGES>
__global__ void GC_SIMT_LAUNCH_BOUNDS(BLOCK_M, BLOCK_N, THREAD_M, THREAD_N)
conv2d_pointwise_nhwc_async(const T* __restrict__ x, const T* __restrict__ w,
                            GC_CONV_SHAPE_PARAMS, GC_EPILOGUE_PARAMS(T), GC_SPLIT_K_PARAMS(T)) {
  GC_CONV_SHAPE_NAMES;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  using Tile = gc::SimtTileAsync<BLOCK_M, BLOCK_N, BLOCK_K, THREAD_M, THREAD_N, STAGES>;
  pointwise_nhwc<T, Tile>(x, w, GC_CONV_SHAPE, GC_EPILOGUE(T), splits, partial, smem_raw);
}
