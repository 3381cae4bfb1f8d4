// Implicit-GEMM forward convolution on CUDA cores (CUTLASS's "analytic" iterators).
//
// GEMM view per group g: C(M x N) = A(M x K) * B(K x N) with M = N*P*Q output pixels,
// N = K/groups filters, K = C/groups * R * S taps. A is gathered from the input on the fly
// (no column buffer): each thread keeps the (image, h0, w0) of its pixel rows and turns each
// k into a tap with FastDivmod, so padding, stride, dilation and groups cost a bounds test and
// a few integer ops per loaded element. B is the weights, one contiguous row per filter.
//   NCHW: k = (c, r, s); neighbouring pixels are neighbouring addresses, so A is loaded
//         pixel-fast (MnContiguousLoader) and lanes run along M in the epilogue (pixels are the
//         output's contiguous dimension).
//   NHWC: k = (r, s, c); channels are contiguous, so A is loaded k-fast (KContiguousLoader) and
//         the weights must be KRSC (the launcher transposes them); lanes run along N
//         (output channels are contiguous).
// Grid: (ceil(M / BLOCK_M), ceil(N / BLOCK_N), groups); dynamic shared memory
// Tile::STAGED_SMEM_ELEMENTS accumulator values (main loop, then the staged epilogue). Half
// types are converted to float as they enter shared memory and accumulate in float.
#include "conv_operands.cuh"
#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "epilogue.cuh"
#include "simt_gemm.cuh"

template <class T, bool NHWC, int BLOCK_M, int BLOCK_N, int BLOCK_K, int THREAD_M, int THREAD_N>
__global__ void __launch_bounds__((BLOCK_M / THREAD_M) * (BLOCK_N / THREAD_N))
conv2d_implicit_gemm(const T* __restrict__ x, const T* __restrict__ w,
                     int N, int C, int H, int W, int K, int R, int S, int P, int Q,
                     int pad_h, int pad_w, int stride_h, int stride_w, int dil_h, int dil_w,
                     int groups,
                     T* out, int out_sN, int out_sK, int out_sPQ, const T* bias,
                     const T* residual, int res_sN, int res_sK, int res_sPQ, int epilogue) {
  using A = gc::acc_t<T>;
  using Tile = gc::SimtTile<BLOCK_M, BLOCK_N, BLOCK_K, THREAD_M, THREAD_N>;
  using ActivationSource =
      typename gc::Select<NHWC, gc::NhwcActivationSource<T>, gc::NchwActivationSource<T>>::type;
  using WeightSource = gc::RowMajorSource<T>;
  using LoaderA = typename gc::Select<
      NHWC, gc::KContiguousLoader<A, ActivationSource, BLOCK_M, BLOCK_K, Tile::THREADS>,
      gc::MnContiguousLoader<A, ActivationSource, BLOCK_M, BLOCK_K, Tile::THREADS>>::type;
  using LoaderB = gc::KContiguousLoader<A, WeightSource, BLOCK_N, BLOCK_K, Tile::THREADS>;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* smem = reinterpret_cast<A*>(smem_raw);

  const gc::ConvShape shape{N, C, H, W, K, R, S, P, Q, pad_h, pad_w,
                            stride_h, stride_w, dil_h, dil_w, groups};
  const int group = blockIdx.z;
  const int k_per_group = shape.k_per_group();
  const int gemm_k = shape.c_per_group() * R * S;
  const int m0 = blockIdx.x * BLOCK_M;
  const int n0 = blockIdx.y * BLOCK_N;
  const int tid = threadIdx.x;

  const ActivationSource src_a(x, shape, group);
  const WeightSource src_b{w, k_per_group, gemm_k, gemm_k, group * k_per_group};
  LoaderA loader_a(src_a, m0, tid);
  LoaderB loader_b(src_b, n0, tid);
  gc::SimtMma<A, Tile, !NHWC> mma(tid);

  gc::simt_gemm_mainloop<A, Tile>(mma, loader_a, src_a, loader_b, src_b, gemm_k, smem);

  // epilogue
  const gc::Epilogue<T> epi{out, out_sN, out_sK, out_sPQ, bias, residual,
                            res_sN, res_sK, res_sPQ, epilogue};
  const gc::FastDivmod div_pq(P * Q);
  const int gemm_m = N * P * Q;
  mma.epilogue(smem, [&](int row, int col, A v) {
    const int m = m0 + row;
    const int filter = n0 + col;
    if (m >= gemm_m || filter >= k_per_group) return;
    int n, pq;
    div_pq.divmod(m, n, pq);
    epi.store(n, group * k_per_group + filter, pq, v);
  });
}
