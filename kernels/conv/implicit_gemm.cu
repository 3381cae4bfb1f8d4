// Implicit-GEMM forward convolution on CUDA cores, with CUTLASS's two activation iterators.
//
// GEMM view per group g: C(M x N) = A(M x K) * B(K x N) with M = N*P*Q output pixels,
// N = K/groups filters, K = C/groups * R * S taps. A is gathered from the input on the fly
// (no column buffer). B is the weights, one contiguous row per filter.
//   NCHW: k = (c, r, s); neighbouring pixels are neighbouring addresses, so A is loaded
//         pixel-fast (mn-contiguous loader) and lanes run along M in the epilogue (pixels are
//         the output's contiguous dimension).
//   NHWC: k = (r, s, c); channels are contiguous, so A is loaded k-fast (k-contiguous loader)
//         and the weights must be KRSC (the launcher transposes them); lanes run along N
//         (output channels are contiguous).
// Two kernels differ only in how A is gathered:
//   conv2d_implicit_gemm              "analytic" (conv_operands.cuh): each thread keeps the
//                                     (image, h0, w0) of its rows and turns k into (c, r, s)
//                                     with FastDivmod once per k-tile; the readable statement.
//   conv2d_implicit_gemm_precomputed  "precomputed offsets" (conv_tap_table.cuh, CUTLASS's
//                                     "optimized"): row offsets and tap-validity masks computed
//                                     before the main loop, a shared table of the block's live
//                                     taps (taps that read only padding for every row of the
//                                     tile are skipped), and a k cursor stepped without
//                                     division. Needs R*S <= 32.
// Both keep the same k order (the precomputed kernel's restricted to live taps), so they compute
// the same sums in the same order for finite weights.
// Grid: (ceil(M / BLOCK_M), ceil(N / BLOCK_N), groups); dynamic shared memory
// Tile::STAGED_SMEM_ELEMENTS accumulator values (main loop, then the staged epilogue). Half
// types are converted to float as they enter shared memory and accumulate in float.
#include "conv_operands.cuh"
#include "conv_shape.cuh"
#include "conv_tap_table.cuh"
#include "dtypes.cuh"
#include "epilogue.cuh"
#include "simt_gemm.cuh"

// The main loop and the epilogue of the block tile (blockIdx.x, blockIdx.y) of group blockIdx.z,
// given both operands' loaders; gemm_k is the k the loaders step through.
template <class T, bool NHWC, class Tile, class LoaderA, class SourceA, class LoaderB, class SourceB>
__device__ __forceinline__ void implicit_gemm_block(LoaderA& loader_a, const SourceA& src_a,
                                                    LoaderB& loader_b, const SourceB& src_b,
                                                    int gemm_k, const gc::ConvShape& shape,
                                                    const gc::Epilogue<T>& epi,
                                                    gc::acc_t<T>* smem) {
  using A = gc::acc_t<T>;
  const int group = blockIdx.z;
  const int k_per_group = shape.k_per_group();
  const int m0 = blockIdx.x * Tile::BLOCK_M;
  const int n0 = blockIdx.y * Tile::BLOCK_N;

  gc::SimtMma<A, Tile, !NHWC> mma(threadIdx.x);
  gc::simt_gemm_mainloop<A, Tile>(mma, loader_a, src_a, loader_b, src_b, gemm_k, smem);

  // epilogue
  const gc::FastDivmod div_pq(shape.P * shape.Q);
  const int gemm_m = shape.N * shape.P * shape.Q;
  mma.epilogue(smem, [&](int row, int col, A v) {
    const int m = m0 + row;
    const int filter = n0 + col;
    if (m >= gemm_m || filter >= k_per_group) return;
    int n, pq;
    div_pq.divmod(m, n, pq);
    epi.store(n, group * k_per_group + filter, pq, v);
  });
}

// The weights as the B operand: one row of C/groups * R * S values per filter of this group.
template <class T>
__device__ __forceinline__ gc::RowMajorSource<T> weight_rows(const T* w, const gc::ConvShape& s) {
  const int gemm_k = s.c_per_group() * s.R * s.S;
  return gc::RowMajorSource<T>{w, s.k_per_group(), gemm_k, gemm_k, int(blockIdx.z) * s.k_per_group()};
}

template <class T, bool NHWC, int BLOCK_M, int BLOCK_N, int BLOCK_K, int THREAD_M, int THREAD_N>
__global__ void GC_SIMT_LAUNCH_BOUNDS(BLOCK_M, BLOCK_N, THREAD_M, THREAD_N)
conv2d_implicit_gemm(const T* __restrict__ x, const T* __restrict__ w, GC_CONV_SHAPE_PARAMS,
                     GC_EPILOGUE_PARAMS(T)) {
  using A = gc::acc_t<T>;
  using Tile = gc::SimtTile<BLOCK_M, BLOCK_N, BLOCK_K, THREAD_M, THREAD_N>;
  using Source = typename gc::Select<NHWC, gc::NhwcActivationSource<T>,
                                     gc::NchwActivationSource<T>>::type;
  using Loader = typename gc::Select<
      NHWC, gc::KContiguousLoader<A, Source, BLOCK_M, BLOCK_K, Tile::THREADS>,
      gc::MnContiguousLoader<A, Source, BLOCK_M, BLOCK_K, Tile::THREADS>>::type;

  extern __shared__ __align__(16) unsigned char smem_raw[];

  const gc::ConvShape shape{N, C, H, W, K, R, S, P, Q, pad_h, pad_w,
                            stride_h, stride_w, dil_h, dil_w, groups};
  const gc::Epilogue<T> epi{out, out_sN, out_sK, out_sPQ, bias, residual,
                            res_sN, res_sK, res_sPQ, epilogue};
  const Source src_a(x, shape, blockIdx.z);
  Loader loader_a(src_a, blockIdx.x * BLOCK_M, threadIdx.x);
  const gc::RowMajorSource<T> src_b = weight_rows(w, shape);
  gc::KContiguousLoader<A, gc::RowMajorSource<T>, BLOCK_N, BLOCK_K, Tile::THREADS> loader_b(
      src_b, blockIdx.y * BLOCK_N, threadIdx.x);
  implicit_gemm_block<T, NHWC, Tile>(loader_a, src_a, loader_b, src_b, src_b.cols, shape, epi,
                                     reinterpret_cast<A*>(smem_raw));
}

template <class T, bool NHWC, int BLOCK_M, int BLOCK_N, int BLOCK_K, int THREAD_M, int THREAD_N>
__global__ void GC_SIMT_LAUNCH_BOUNDS(BLOCK_M, BLOCK_N, THREAD_M, THREAD_N)
conv2d_implicit_gemm_precomputed(const T* __restrict__ x, const T* __restrict__ w,
                                 GC_CONV_SHAPE_PARAMS, GC_EPILOGUE_PARAMS(T)) {
  using A = gc::acc_t<T>;
  using Tile = gc::SimtTile<BLOCK_M, BLOCK_N, BLOCK_K, THREAD_M, THREAD_N>;
  using Source = typename gc::Select<NHWC, gc::PrecomputedNhwcSource<T>,
                                     gc::PrecomputedNchwSource<T>>::type;
  using Loader = typename gc::Select<
      NHWC, gc::PrecomputedKLoader<A, Source, BLOCK_M, BLOCK_K, Tile::THREADS>,
      gc::PrecomputedMnLoader<A, Source, BLOCK_M, BLOCK_K, Tile::THREADS>>::type;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ gc::LiveTaps live;

  const gc::ConvShape shape{N, C, H, W, K, R, S, P, Q, pad_h, pad_w,
                            stride_h, stride_w, dil_h, dil_w, groups};
  const gc::Epilogue<T> epi{out, out_sN, out_sK, out_sPQ, bias, residual,
                            res_sN, res_sK, res_sPQ, epilogue};
  // The rows first: their tap masks decide which taps the block's k runs over.
  Loader loader_a(gc::PrecomputedRows<NHWC>(shape, blockIdx.z), blockIdx.x * BLOCK_M, threadIdx.x);
  const int live_taps = gc::collect_live_taps<Tile::THREADS>(
      live, loader_a.taps(), shape, NHWC ? C : 1, NHWC ? shape.c_per_group() : 1, threadIdx.x);
  const Source src_a(x, live, live_taps, shape);
  loader_a.start(src_a);
  const gc::RowMajorSource<T> src_b = weight_rows(w, shape);
  gc::LiveTapWeightLoader<A, T, NHWC, BLOCK_N, BLOCK_K, Tile::THREADS> loader_b(
      src_b, live, live_taps, shape, blockIdx.y * BLOCK_N, threadIdx.x);
  implicit_gemm_block<T, NHWC, Tile>(loader_a, src_a, loader_b, src_b,
                                     shape.c_per_group() * live_taps, shape, epi,
                                     reinterpret_cast<A*>(smem_raw));
}

