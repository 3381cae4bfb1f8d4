// The weight gradient (wgrad) of a convolution as a GEMM with a split-K reduction, and where
// its sums go.
//
// Per group g: dW_g (M x N) = dy_g (M x K) * X_g (K x N), M = K/groups filters, N = C/groups*R*S
// taps, K = the N*P*Q output pixels j = (n, p, q). The pixel dimension is long (ResNet-50's first
// stage: 32 * 56 * 56 = 100352) while M * N is small, so it is split into `splits` ranges, one
// per blockIdx.z slice, each range a whole number of k-tiles. Each split writes its own partial
// sums; WgradEpilogue says where:
//   WGRAD_STORE             dw[idx] = v                     one split and one launch
//   WGRAD_PARTIAL           ws[split * size + idx] = v      reduced later in split order
//   WGRAD_PARTIAL_ACCUMULATE ws[split * size + idx] += v    later batch chunks of the same call
//   WGRAD_ATOMIC            atomicAdd(ws + idx, v)          non-deterministic mode only
// The first three give the same bits whatever the schedule; the partials are summed in a fixed
// order by wgrad_reduce.cu. Only the atomic mode depends on the order blocks finish in.
#pragma once

#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "fast_divmod.cuh"

namespace gc {

constexpr int WGRAD_STORE = 0;
constexpr int WGRAD_PARTIAL = 1;
constexpr int WGRAD_PARTIAL_ACCUMULATE = 2;
constexpr int WGRAD_ATOMIC = 3;

template <class T>
struct WgradEpilogue {
  T* dw;               // (K, C/groups, R, S), WGRAD_STORE only
  acc_t<T>* ws;        // workspace of accumulator values, the other modes
  int size;            // elements of dw
  int mode;

  __device__ __forceinline__ void store(int split, int idx, acc_t<T> v) const {
    switch (mode) {
      case WGRAD_STORE:
        dw[idx] = from_acc<T>(v);
        break;
      case WGRAD_PARTIAL:
        ws[split * size + idx] = v;
        break;
      case WGRAD_PARTIAL_ACCUMULATE:
        ws[split * size + idx] += v;
        break;
      default:
        atomicAdd(ws + idx, v);
        break;
    }
  }
};

// The epilogue of the weight-gradient GEMMs: accumulator (k, t) of the block tile at (m0, n0)
// is filter k of `group` and tap t. Taps are (c, r, s), dw's own order, unless TAPS_RSC: then
// they are (r, s, c) (the NHWC implicit GEMM) and c moves by R*S in the KCRS dw. Through the
// multiply-accumulate's staged epilogue (SimtMma or TensorCoreMma): `stage` is the kernel's
// shared memory, done with by the main loop.
template <bool TAPS_RSC, class T, class Mma>
__device__ __forceinline__ void store_wgrad_tile(const WgradEpilogue<T>& epi, const Mma& mma,
                                                 acc_t<T>* stage, int m0, int n0, int split,
                                                 int group, int k_per_group, int c_per_group,
                                                 int RS) {
  const int taps = c_per_group * RS;
  mma.epilogue(stage, [&](int row, int col, acc_t<T> v) {
    const int k = m0 + row;
    const int t = n0 + col;
    if (k >= k_per_group || t >= taps) return;
    const int first = (group * k_per_group + k) * taps;
    epi.store(split, TAPS_RSC ? first + (t % c_per_group) * RS + t / c_per_group : first + t, v);
  });
}

// The sum of `v` over a block of THREADS threads (a power of two), by a fixed tree in shared
// memory: the same bits whatever order the threads run in. `partial` holds THREADS values; every
// thread gets the total, and `partial` may be reused as soon as this returns.
template <class A, int THREADS>
__device__ __forceinline__ A block_sum(A v, A* partial, int tid) {
  partial[tid] = v;
  __syncthreads();
#pragma unroll
  for (int width = THREADS / 2; width > 0; width /= 2) {
    if (tid < width) partial[tid] += partial[tid + width];
    __syncthreads();
  }
  const A total = partial[0];
  __syncthreads();
  return total;
}

// The pixel range [begin, end) of one split; GEMM index kk is pixel begin + kk.
struct PixelRange {
  int begin, end;
};

__device__ __forceinline__ PixelRange split_range(int split, int pixels_per_split, int pixels) {
  const int begin = split * pixels_per_split;
  const int end = begin + pixels_per_split < pixels ? begin + pixels_per_split : pixels;
  return PixelRange{begin, end};
}

// A (M x K) for NCHW dy: element (k, j) = dy[n][group*K/g + k][pq], j = n * P*Q + pq. Rows are
// contiguous along j within an image: a KContiguousLoader source.
template <class T>
struct WgradDyNchwSource {
  struct Row { int offset; };  // (group*K/g + k) * P*Q, or -1 past the group's filters
  struct Col { int offset; };  // n * K*P*Q + pq, or -1 outside the split

  const T* dy;
  FastDivmod div_pq;
  PixelRange range;
  int k_per_group, row0, PQ, KPQ;

  __device__ __forceinline__ WgradDyNchwSource(const T* dy_, const ConvShape& s, int group,
                                               PixelRange range_)
      : dy(dy_), div_pq(s.P * s.Q), range(range_), k_per_group(s.k_per_group()),
        row0(group * s.k_per_group()), PQ(s.P * s.Q), KPQ(s.K * s.P * s.Q) {}

  __device__ __forceinline__ Row row(int k) const {
    return Row{k < k_per_group ? (row0 + k) * PQ : -1};
  }
  __device__ __forceinline__ Col column(int kk) const {
    const int j = range.begin + kk;
    if (j >= range.end) return Col{-1};
    int n, pq;
    div_pq.divmod(j, n, pq);
    return Col{n * KPQ + pq};
  }
  __device__ __forceinline__ T load(const Row& row, const Col& col) const {
    if (row.offset >= 0 && col.offset >= 0) return dy[row.offset + col.offset];
    return T{};
  }
};

// A (M x K) for NHWC dy: element (k, j) = dy[j][group*K/g + k], contiguous along the filters:
// an MnContiguousLoader source (each thread walks KS consecutive pixels).
template <class T>
struct WgradDyNhwcSource {
  struct Row { int k; };           // group*K/g + k, or -1 past the group's filters
  struct Col { int j, offset; };   // pixel j and j * K

  const T* dy;
  PixelRange range;
  int k_per_group, row0, K;

  __device__ __forceinline__ WgradDyNhwcSource(const T* dy_, const ConvShape& s, int group,
                                               PixelRange range_)
      : dy(dy_), range(range_), k_per_group(s.k_per_group()), row0(group * s.k_per_group()),
        K(s.K) {}

  __device__ __forceinline__ Row row(int k) const { return Row{k < k_per_group ? row0 + k : -1}; }
  __device__ __forceinline__ Col column(int kk) const {
    const int j = range.begin + kk;
    return Col{j, j < range.end ? j * K : 0};
  }
  __device__ __forceinline__ void advance(Col& col) const {
    ++col.j;
    col.offset = col.j < range.end ? col.offset + K : 0;
  }
  __device__ __forceinline__ T load(const Row& row, const Col& col) const {
    if (row.k >= 0 && col.j < range.end) return dy[col.offset + row.k];
    return T{};
  }
  // Whether filters k .. k+7 exist at pixel j, and where (MnVectorLoader; dy when they do not):
  // K/groups a multiple of 8, dy 16-byte aligned.
  __device__ __forceinline__ bool vector_at(const Row& row, const Col& col, const T*& from) const {
    const bool inside = row.k >= 0 && col.j < range.end;
    from = dy + (inside ? col.offset + row.k : 0);
    return inside;
  }
};

// B (K x N) for NCHW x, taps t = (c, r, s) as the KCRS weights: element (j, t) =
// x[n][group*C/g + c][p*sh - pad_h + r*dh][q*sw - pad_w + s*dw]. Each tap is a row walked along
// the pixels (stride sw in x): a KContiguousLoader source.
template <class T>
struct WgradXNchwSource {
  struct Row { int base, dh, dw; };  // channel plane offset (-1 past the taps), tap offsets
  struct Col { int base, h0, w0; };  // image offset (-1 outside the split), p*sh, q*sw

  const T* x;
  FastDivmod div_pq, div_q, div_rs, div_s;
  PixelRange range;
  int taps, channel0, H, W, HW, CHW, stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;

  __device__ __forceinline__ WgradXNchwSource(const T* x_, const ConvShape& s, int group,
                                              PixelRange range_)
      : x(x_), div_pq(s.P * s.Q), div_q(s.Q), div_rs(s.R * s.S), div_s(s.S), range(range_),
        taps(s.c_per_group() * s.R * s.S), channel0(group * s.c_per_group()), H(s.H), W(s.W),
        HW(s.H * s.W), CHW(s.C * s.H * s.W), stride_h(s.stride_h), stride_w(s.stride_w),
        dil_h(s.dil_h), dil_w(s.dil_w), pad_h(s.pad_h), pad_w(s.pad_w) {}

  __device__ __forceinline__ Row row(int t) const {
    if (t >= taps) return Row{-1, 0, 0};
    int c, rs, r, s;
    div_rs.divmod(t, c, rs);
    div_s.divmod(rs, r, s);
    return Row{(channel0 + c) * HW, r * dil_h - pad_h, s * dil_w - pad_w};
  }
  __device__ __forceinline__ Col column(int kk) const {
    const int j = range.begin + kk;
    if (j >= range.end) return Col{-1, 0, 0};
    int n, pq, p, q;
    div_pq.divmod(j, n, pq);
    div_q.divmod(pq, p, q);
    return Col{n * CHW, p * stride_h, q * stride_w};
  }
  __device__ __forceinline__ T load(const Row& row, const Col& col) const {
    const int h = col.h0 + row.dh;
    const int w = col.w0 + row.dw;
    if (row.base >= 0 && col.base >= 0 && unsigned(h) < unsigned(H) && unsigned(w) < unsigned(W))
      return x[col.base + row.base + h * W + w];
    return T{};
  }
};

// B (K x N) for NHWC x, taps t = (r, s, c) so that consecutive taps are consecutive channels:
// element (j, t) = x[n][p*sh - pad_h + r*dh][q*sw - pad_w + s*dw][group*C/g + c], an
// MnContiguousLoader source; each thread walks its pixels incrementally (no division per step).
template <class T>
struct WgradXNhwcSource {
  struct Row { int c, dh, dw; };            // channel (-1 past the taps), tap offsets
  struct Col { int j, p, q, base, h0, w0; };

  const T* x;
  FastDivmod div_pq, div_q, div_c, div_s;
  PixelRange range;
  int taps, channel0, H, W, C, HWC, P, Q, stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;

  __device__ __forceinline__ WgradXNhwcSource(const T* x_, const ConvShape& s, int group,
                                              PixelRange range_)
      : x(x_), div_pq(s.P * s.Q), div_q(s.Q), div_c(s.c_per_group()), div_s(s.S), range(range_),
        taps(s.c_per_group() * s.R * s.S), channel0(group * s.c_per_group()), H(s.H), W(s.W),
        C(s.C), HWC(s.H * s.W * s.C), P(s.P), Q(s.Q), stride_h(s.stride_h), stride_w(s.stride_w),
        dil_h(s.dil_h), dil_w(s.dil_w), pad_h(s.pad_h), pad_w(s.pad_w) {}

  __device__ __forceinline__ Row row(int t) const {
    if (t >= taps) return Row{-1, 0, 0};
    int rs, c, r, s;
    div_c.divmod(t, rs, c);
    div_s.divmod(rs, r, s);
    return Row{channel0 + c, r * dil_h - pad_h, s * dil_w - pad_w};
  }
  __device__ __forceinline__ Col column(int kk) const {
    Col col;
    col.j = range.begin + kk;
    int n, pq;
    div_pq.divmod(col.j < range.end ? col.j : 0, n, pq);
    div_q.divmod(pq, col.p, col.q);
    col.base = n * HWC;
    col.h0 = col.p * stride_h;
    col.w0 = col.q * stride_w;
    return col;
  }
  __device__ __forceinline__ void advance(Col& col) const {
    ++col.j;
    col.w0 += stride_w;
    if (++col.q == Q) {
      col.q = 0;
      col.w0 = 0;
      col.h0 += stride_h;
      if (++col.p == P) {
        col.p = 0;
        col.h0 = 0;
        col.base += HWC;
      }
    }
  }
  __device__ __forceinline__ T load(const Row& row, const Col& col) const {
    const int h = col.h0 + row.dh;
    const int w = col.w0 + row.dw;
    if (row.c >= 0 && col.j < range.end && unsigned(h) < unsigned(H) && unsigned(w) < unsigned(W))
      return x[col.base + (h * W + w) * C + row.c];
    return T{};
  }
  // Whether channels c .. c+7 of the row's tap exist at pixel j, and where (MnVectorLoader; x
  // when they do not): C/groups a multiple of 8 (a vector never straddles a tap), x 16-byte
  // aligned.
  __device__ __forceinline__ bool vector_at(const Row& row, const Col& col, const T*& from) const {
    const int h = col.h0 + row.dh;
    const int w = col.w0 + row.dw;
    const bool inside = row.c >= 0 && col.j < range.end && unsigned(h) < unsigned(H) &&
                        unsigned(w) < unsigned(W);
    from = x + (inside ? col.base + (h * W + w) * C + row.c : 0);
    return inside;
  }
};

}  // namespace gc
