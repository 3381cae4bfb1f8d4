// Implicit-GEMM data gradient (dgrad) on CUDA cores, decomposed over stride phases.
//
// dx = conv2d_input(w, dy): per group and stride phase (dgrad_operands.cuh), the GEMM
//   dx_phase (M x N) = A (M x K) * B (K x N),
//   M = N * |phase rows| * |phase columns| input pixels, N = C/groups input channels,
//   K = K/groups * |phase taps|, ordered (tap_r, tap_s, k),
// with A gathered from dy on the fly and B the RSKC-transposed filter (w.transpose(2, 3, 0, 1),
// done by the launcher: weights are small). Every MAC multiplies a real dy value by a real tap:
// no work is spent on the zeros a strided transposed convolution inserts.
//   NCHW: dy is loaded pixel-fast (neighbouring phase pixels read neighbouring dy columns) and
//         epilogue lanes run along M (pixels are dx's contiguous dimension).
//   NHWC: dy is loaded channel-fast (KContiguousLoader) and lanes run along N (channels).
// Grid: (ceil(max phase M / BLOCK_M), ceil(C/groups / BLOCK_N), groups * stride_h * stride_w);
// blocks past their phase's M exit at once. Dynamic shared memory: Tile::SMEM_ELEMENTS
// accumulator values. No atomics: each dx element is written once, so the result is the same
// bits whatever the schedule (deterministic mode needs nothing more).
// The epilogue adds the bias when `epilogue` has EPILOGUE_BIAS (conv_transpose2d).
#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "epilogue.cuh"
#include "simt_gemm.cuh"
#include "../conv/dgrad_operands.cuh"

template <class T, bool NHWC, int BLOCK_M, int BLOCK_N, int BLOCK_K, int THREAD_M, int THREAD_N>
__global__ void GC_SIMT_LAUNCH_BOUNDS(BLOCK_M, BLOCK_N, THREAD_M, THREAD_N)
conv2d_dgrad_implicit_gemm(const T* __restrict__ dy, const T* __restrict__ w_rskc,
                           GC_CONV_SHAPE_PARAMS,
                           T* dx, int dx_sN, int dx_sC, int dx_sHW, const T* bias, int epilogue) {
  using A = gc::acc_t<T>;
  using Tile = gc::SimtTile<BLOCK_M, BLOCK_N, BLOCK_K, THREAD_M, THREAD_N>;
  using DySource = typename gc::Select<NHWC, gc::DgradDyNhwcSource<T>, gc::DgradDyNchwSource<T>>::type;
  using WeightSource = gc::DgradWeightSource<T>;
  using LoaderA = typename gc::Select<
      NHWC, gc::KContiguousLoader<A, DySource, BLOCK_M, BLOCK_K, Tile::THREADS>,
      gc::MnContiguousLoader<A, DySource, BLOCK_M, BLOCK_K, Tile::THREADS>>::type;
  using LoaderB = gc::MnContiguousLoader<A, WeightSource, BLOCK_N, BLOCK_K, Tile::THREADS>;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* smem = reinterpret_cast<A*>(smem_raw);

  const gc::ConvShape shape{N, C, H, W, K, R, S, P, Q, pad_h, pad_w,
                            stride_h, stride_w, dil_h, dil_w, groups};
  const int phases = stride_h * stride_w;
  const int group = blockIdx.z / phases;
  const int phase = blockIdx.z - group * phases;
  const gc::DgradPhaseProblem prob(shape, group, phase / stride_w, phase % stride_w);
  const int m0 = blockIdx.x * BLOCK_M;
  const int n0 = blockIdx.y * BLOCK_N;
  if (m0 >= prob.gemm_m) return;  // uniform over the block, before any barrier
  const int tid = threadIdx.x;

  const DySource src_a(dy, prob, shape);
  const WeightSource src_b(w_rskc, prob, S);
  LoaderA loader_a(src_a, m0, tid);
  LoaderB loader_b(src_b, n0, tid);
  gc::SimtMma<A, Tile, !NHWC> mma(tid);

  // main loop (simt_gemm.cuh)
  gc::simt_gemm_mainloop<A, Tile>(mma, loader_a, src_a, loader_b, src_b, prob.gemm_k, smem);

  // epilogue
  const gc::Epilogue<T> epi{dx, dx_sN, dx_sC, dx_sHW, bias, nullptr, 0, 0, 0, epilogue};
#pragma unroll
  for (int i = 0; i < THREAD_M; ++i) {
    const int m = m0 + mma.row(i);
    if (m >= prob.gemm_m) continue;
    int n, pi, pj;
    prob.split_pixel(m, n, pi, pj);
    const int hw = (prob.ph.first + pi * stride_h) * W + prob.pw.first + pj * stride_w;
#pragma unroll
    for (int j = 0; j < THREAD_N; ++j) {
      const int c = n0 + mma.col(j);
      if (c < prob.c_per_group) epi.store(n, group * prob.c_per_group + c, hw, mma.acc[i][j]);
    }
  }
}
