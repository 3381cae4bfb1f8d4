// Gradient of the convolution bias: db[k] = sum over n, p, q of dy[n][k][p][q], as a two-level
// reduction with fixed summation orders (deterministic in every mode; no atomics).
//   conv2d_bias_grad_nchw  grid (K, splits), BIAS_GRAD_THREADS threads: a block sums one
//                          channel's planes over its split of the N*P*Q pixels (coalesced along
//                          each plane), then a shared-memory tree (gc::block_sum).
//   conv2d_bias_grad_nhwc  grid (ceil(K / 32), splits), block (32, 8): the lanes of a warp take 32
//                          consecutive channels of one pixel row (one contiguous run), the 8 rows
//                          interleave the split's pixels and are summed in order at the end.
// One split: WGRAD_STORE writes db; several: WGRAD_PARTIAL partials, which conv2d_split_reduce
// (wgrad_reduce.cu) sums in split order.
#include "dtypes.cuh"
#include "fast_divmod.cuh"
#include "../conv/wgrad_operands.cuh"

constexpr int BIAS_GRAD_THREADS = 256;
constexpr int BIAS_GRAD_LANES = 32;
constexpr int BIAS_GRAD_ROWS = 8;

template <class T>
__global__ void __launch_bounds__(BIAS_GRAD_THREADS)
conv2d_bias_grad_nchw(const T* __restrict__ dy, int N, int K, int PQ, int pixels_per_split,
                      T* db, gc::acc_t<T>* ws, int mode) {
  using A = gc::acc_t<T>;
  __shared__ A partial[BIAS_GRAD_THREADS];
  const int k = blockIdx.x;
  const int split = blockIdx.y;
  const gc::PixelRange range = gc::split_range(split, pixels_per_split, N * PQ);
  const gc::FastDivmod div_pq(PQ);
  const int tid = threadIdx.x;
  // main loop
  A acc = A(0);
  for (int j = range.begin + tid; j < range.end; j += BIAS_GRAD_THREADS) {
    int n, pq;
    div_pq.divmod(j, n, pq);
    acc += gc::to_acc(dy[(n * K + k) * PQ + pq]);
  }
  // epilogue
  const A total = gc::block_sum<A, BIAS_GRAD_THREADS>(acc, partial, tid);
  const gc::WgradEpilogue<T> epi{db, ws, K, mode};
  if (tid == 0) epi.store(split, k, total);
}

template <class T>
__global__ void __launch_bounds__(BIAS_GRAD_LANES * BIAS_GRAD_ROWS)
conv2d_bias_grad_nhwc(const T* __restrict__ dy, int N, int K, int PQ, int pixels_per_split,
                      T* db, gc::acc_t<T>* ws, int mode) {
  using A = gc::acc_t<T>;
  __shared__ A partial[BIAS_GRAD_ROWS][BIAS_GRAD_LANES];
  const int lane = threadIdx.x;
  const int row = threadIdx.y;
  const int k = blockIdx.x * BIAS_GRAD_LANES + lane;
  const int split = blockIdx.y;
  const gc::PixelRange range = gc::split_range(split, pixels_per_split, N * PQ);
  // main loop
  A acc = A(0);
  if (k < K) {
    for (int j = range.begin + row; j < range.end; j += BIAS_GRAD_ROWS)
      acc += gc::to_acc(dy[j * K + k]);
  }
  // epilogue
  partial[row][lane] = acc;
  __syncthreads();
  if (row == 0 && k < K) {
    A total = partial[0][lane];
    for (int i = 1; i < BIAS_GRAD_ROWS; ++i) total += partial[i][lane];
    const gc::WgradEpilogue<T> epi{db, ws, K, mode};
    epi.store(split, k, total);
  }
}
