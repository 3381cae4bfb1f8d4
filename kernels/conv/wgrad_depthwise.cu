// Depthwise weight gradient for NHWC (C/groups == 1; filter k = c * multiplier + j reads input
// channel c): dw[k][0][r][s] = sum_{n,p,q} dy[n][p][q][k] * x[n][p*sh - pad_h + r*dh][q*sw - pad_w + s*dw][c].
// Block (32, WGRAD_DEPTHWISE_ROWS): the 32 lanes of a warp take 32 consecutive filters, so every
// dy and x read of a warp is one contiguous run of channels; the rows take interleaved pixels of
// the split, then sum in a fixed order through shared memory (deterministic). Taps are the outer
// loop, so each thread keeps one accumulator; the split's pixels are re-read per tap from L1/L2.
// Grid: (ceil(K / 32), splits). Sums go through WgradEpilogue (WGRAD_STORE or WGRAD_PARTIAL).
// (NCHW depthwise runs conv2d_wgrad_direct: one block per filter, along its planes.)
#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "fast_divmod.cuh"
#include "../conv/wgrad_operands.cuh"

constexpr int WGRAD_DEPTHWISE_LANES = 32;
constexpr int WGRAD_DEPTHWISE_ROWS = 8;

template <class T>
__global__ void __launch_bounds__(WGRAD_DEPTHWISE_LANES * WGRAD_DEPTHWISE_ROWS)
conv2d_wgrad_depthwise_nhwc(const T* __restrict__ x, const T* __restrict__ dy,
                            GC_CONV_SHAPE_PARAMS,
                            int splits, int pixels_per_split, T* dw, gc::acc_t<T>* ws, int mode) {
  using A = gc::acc_t<T>;
  __shared__ A partial[WGRAD_DEPTHWISE_ROWS][WGRAD_DEPTHWISE_LANES];

  const int lane = threadIdx.x;
  const int row = threadIdx.y;
  const int k = blockIdx.x * WGRAD_DEPTHWISE_LANES + lane;
  const bool active = k < K;
  const int c = (active ? k : 0) / (K / C);
  const int split = blockIdx.y;
  const gc::PixelRange range = gc::split_range(split, pixels_per_split, N * P * Q);
  const gc::FastDivmod div_pq(P * Q);
  const gc::FastDivmod div_q(Q);
  const gc::WgradEpilogue<T> epi{dw, ws, K * R * S, mode};

  // main loop: per tap, this split's pixels, then a fixed-order sum over the rows and its store
  for (int r = 0; r < R; ++r) {
    for (int s = 0; s < S; ++s) {
      A acc = A(0);
      if (active) {
        for (int j = range.begin + row; j < range.end; j += WGRAD_DEPTHWISE_ROWS) {
          int n, pq, p, q;
          div_pq.divmod(j, n, pq);
          div_q.divmod(pq, p, q);
          const int h = p * stride_h - pad_h + r * dil_h;
          const int w = q * stride_w - pad_w + s * dil_w;
          if (unsigned(h) < unsigned(H) && unsigned(w) < unsigned(W))
            acc += gc::to_acc(dy[j * K + k]) * gc::to_acc(x[((n * H + h) * W + w) * C + c]);
        }
      }
      partial[row][lane] = acc;
      __syncthreads();
      if (row == 0 && active) {
        A total = partial[0][lane];
        for (int i = 1; i < WGRAD_DEPTHWISE_ROWS; ++i) total += partial[i][lane];
        epi.store(split, (k * R + r) * S + s, total);
      }
      __syncthreads();  // partial is rewritten by the next tap
    }
  }
}
