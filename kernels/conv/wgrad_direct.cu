// Direct weight gradient: one block per filter row (k, c) and pixel split, every tap summed over
// the split's pixels by a fixed shared-memory tree (gc::block_sum), so the result does not depend
// on the schedule. The readable statement of the weight gradient, and the NCHW depthwise kernel:
// with C/groups == 1 a block reads one contiguous dy plane and one x plane per image, and the
// planes stay in L1/L2 across the R*S taps.
//   dw[k][c][r][s] = sum_{n,p,q} dy[n][k][p][q] * x[n][g*C/g + c][p*sh - pad_h + r*dh][q*sw - pad_w + s*dw]
// Grid: (K * C/groups, splits); blockDim.x == WGRAD_DIRECT_THREADS. Sums go through
// WgradEpilogue (never atomics: the launcher uses WGRAD_STORE or WGRAD_PARTIAL here).
#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "fast_divmod.cuh"
#include "../conv/wgrad_operands.cuh"

constexpr int WGRAD_DIRECT_THREADS = 256;

template <class T, bool NHWC>
__global__ void __launch_bounds__(WGRAD_DIRECT_THREADS)
conv2d_wgrad_direct(const T* __restrict__ x, const T* __restrict__ dy,
                    GC_CONV_SHAPE_PARAMS,
                    int splits, int pixels_per_split, T* dw, gc::acc_t<T>* ws, int mode) {
  GC_CONV_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  __shared__ A partial[WGRAD_DIRECT_THREADS];

  const int c_per_group = C / groups;
  const int k_per_group = K / groups;
  const int k = blockIdx.x / c_per_group;
  const int c_local = blockIdx.x - k * c_per_group;
  const int c = (k / k_per_group) * c_per_group + c_local;
  const int split = blockIdx.y;
  const gc::PixelRange range = gc::split_range(split, pixels_per_split, N * P * Q);
  const gc::FastDivmod div_pq(P * Q);
  const gc::FastDivmod div_q(Q);
  const gc::Strides4 xs = gc::packed_strides<NHWC>(C, H, W);
  const gc::Strides4 ys = gc::packed_strides<NHWC>(K, P, Q);
  const gc::WgradEpilogue<T> epi{dw, ws, K * c_per_group * R * S, mode};
  const int tid = threadIdx.x;

  // main loop: per tap, this split's pixels, then a fixed-order block sum and its store
  for (int r = 0; r < R; ++r) {
    for (int s = 0; s < S; ++s) {
      A acc = A(0);
      for (int j = range.begin + tid; j < range.end; j += WGRAD_DIRECT_THREADS) {
        int n, pq, p, q;
        div_pq.divmod(j, n, pq);
        div_q.divmod(pq, p, q);
        const int h = p * stride_h - pad_h + r * dil_h;
        const int w = q * stride_w - pad_w + s * dil_w;
        if (unsigned(h) < unsigned(H) && unsigned(w) < unsigned(W))
          acc += gc::to_acc(dy[n * ys.n + k * ys.c + p * ys.h + q * ys.w]) *
                 gc::to_acc(x[n * xs.n + c * xs.c + h * xs.h + w * xs.w]);
      }
      const A total = gc::block_sum<A, WGRAD_DIRECT_THREADS>(acc, partial, tid);
      if (tid == 0) epi.store(split, (blockIdx.x * R + r) * S + s, total);
    }
  }
}
