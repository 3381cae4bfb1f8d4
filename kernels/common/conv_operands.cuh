// How the GEMM view of a convolution reads its operands: the Sources of the tile loaders in
// simt_gemm.cuh (interface there). M rows are output pixels m = (n * P + p) * Q + q (or filters),
// N columns are filters of one group, the k dimension is the filter taps.
//
// Out-of-range rows are encoded in the row state itself (an impossible input row h0, a negative
// offset) rather than in a separate flag, so a row costs no extra register and the load's one
// bounds test rejects both padding and the tile's ragged edge.
#pragma once

#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "fast_divmod.cuh"

namespace gc {

// Far enough below zero that h0 + r * dil_h stays negative for any real filter.
constexpr int OUTSIDE_ROW = -(1 << 30);

// Output pixel m -> (image, top-left input row/column of its receptive field).
struct PixelDecomposer {
  FastDivmod div_pq, div_q;
  int stride_h, stride_w, pad_h, pad_w;

  __device__ __forceinline__ explicit PixelDecomposer(const ConvShape& s)
      : div_pq(s.P * s.Q), div_q(s.Q), stride_h(s.stride_h), stride_w(s.stride_w),
        pad_h(s.pad_h), pad_w(s.pad_w) {}

  __device__ __forceinline__ void split(int m, int& n, int& h0, int& w0) const {
    int pq, p, q;
    div_pq.divmod(m, n, pq);
    div_q.divmod(pq, p, q);
    h0 = p * stride_h - pad_h;
    w0 = q * stride_w - pad_w;
  }
};

// The implicit GEMM's A operand for NCHW input, k ordered (c, r, s) as the KCRS weights are:
// element (m, k) = x[n][g*C/g + c][h0 + r*dil_h][w0 + s*dil_w]. Neighbouring m are neighbouring
// q, i.e. neighbouring addresses for stride 1: an MnContiguousLoader source.
template <class T>
struct NchwActivationSource {
  struct Row { int base, h0, w0; };
  struct Col { int k, c, r, s; };

  const T* x;
  PixelDecomposer pixels;
  FastDivmod div_rs, div_s;
  int H, W, HW, CHW, channel0, R, S, dil_h, dil_w, gemm_m, gemm_k;

  __device__ __forceinline__ NchwActivationSource(const T* x_, const ConvShape& s, int group)
      : x(x_), pixels(s), div_rs(s.R * s.S), div_s(s.S), H(s.H), W(s.W), HW(s.H * s.W),
        CHW(s.C * s.H * s.W), channel0(group * s.c_per_group()), R(s.R), S(s.S),
        dil_h(s.dil_h), dil_w(s.dil_w), gemm_m(s.N * s.P * s.Q),
        gemm_k(s.c_per_group() * s.R * s.S) {}

  __device__ __forceinline__ Row row(int m) const {
    Row row{0, OUTSIDE_ROW, 0};
    if (m < gemm_m) {
      int n;
      pixels.split(m, n, row.h0, row.w0);
      row.base = n * CHW + channel0 * HW;
    }
    return row;
  }
  __device__ __forceinline__ Col column(int k) const {
    Col col;
    int rs;
    col.k = k;
    div_rs.divmod(k, col.c, rs);
    div_s.divmod(rs, col.r, col.s);
    return col;
  }
  __device__ __forceinline__ void advance(Col& col) const {
    ++col.k;
    if (++col.s == S) {
      col.s = 0;
      if (++col.r == R) {
        col.r = 0;
        ++col.c;
      }
    }
  }
  __device__ __forceinline__ T load(const Row& row, const Col& col) const {
    const int h = row.h0 + col.r * dil_h;
    const int w = row.w0 + col.s * dil_w;
    if (col.k < gemm_k && unsigned(h) < unsigned(H) && unsigned(w) < unsigned(W))
      return x[row.base + col.c * HW + h * W + w];
    return T{};
  }
};

// The implicit GEMM's A operand for NHWC input, k ordered (r, s, c) so that consecutive k are
// consecutive channels of one pixel: element (m, k) = x[n][h0 + r*dil_h][w0 + s*dil_w][g*C/g + c].
// A KContiguousLoader source; the weights must then be KRSC (the launcher transposes them).
template <class T>
struct NhwcActivationSource {
  struct Row { int base, h0, w0; };
  struct Col { int k, c, dh, dw; };

  const T* x;
  PixelDecomposer pixels;
  FastDivmod div_c, div_s;
  int H, W, C, HWC, channel0, dil_h, dil_w, gemm_m, gemm_k;

  __device__ __forceinline__ NhwcActivationSource(const T* x_, const ConvShape& s, int group)
      : x(x_), pixels(s), div_c(s.c_per_group()), div_s(s.S), H(s.H), W(s.W), C(s.C),
        HWC(s.H * s.W * s.C), channel0(group * s.c_per_group()), dil_h(s.dil_h), dil_w(s.dil_w),
        gemm_m(s.N * s.P * s.Q), gemm_k(s.c_per_group() * s.R * s.S) {}

  __device__ __forceinline__ Row row(int m) const {
    Row row{0, OUTSIDE_ROW, 0};
    if (m < gemm_m) {
      int n;
      pixels.split(m, n, row.h0, row.w0);
      row.base = n * HWC + channel0;
    }
    return row;
  }
  __device__ __forceinline__ Col column(int k) const {
    Col col;
    int rs, r, s;
    col.k = k;
    div_c.divmod(k, rs, col.c);
    div_s.divmod(rs, r, s);
    col.dh = r * dil_h;
    col.dw = s * dil_w;
    return col;
  }
  __device__ __forceinline__ T load(const Row& row, const Col& col) const {
    const int h = row.h0 + col.dh;
    const int w = row.w0 + col.dw;
    if (col.k < gemm_k && unsigned(h) < unsigned(H) && unsigned(w) < unsigned(W))
      return x[row.base + (h * W + w) * C + col.c];
    return T{};
  }
};

// A row-major matrix whose rows are contiguous along k: the weights of one group as
// (K/groups) x gemm_k (KCRS, or KRSC for NHWC), element (row, k) = a[(row0 + row) * ld + k].
template <class T>
struct RowMajorSource {
  struct Row { int offset; };  // -1: outside the matrix
  struct Col { int k; };

  const T* a;
  int rows, cols, ld, row0;

  __device__ __forceinline__ Row row(int r) const { return Row{r < rows ? (row0 + r) * ld : -1}; }
  __device__ __forceinline__ Col column(int k) const { return Col{k}; }
  __device__ __forceinline__ T load(const Row& row, const Col& col) const {
    if (row.offset >= 0 && col.k < cols) return a[row.offset + col.k];
    return T{};
  }
  // Whether elements k .. k+7 of a row exist, and where (KVectorLoader; `a` when they do not):
  // cols and k multiples of 8, rows 16-byte aligned. Or element k alone (async_gemm.cuh).
  __device__ __forceinline__ bool vector_at(const Row& row, const Col& col, const T*& from) const {
    const bool inside = row.offset >= 0 && col.k < cols;
    from = a + (inside ? unsigned(row.offset + col.k) : 0u);  // unsigned: as tap_address's
    return inside;
  }
};

// A 1x1 GEMM operand on NCHW planes whose mn index runs over the pixels of every image,
// j = n * P*Q + p * Q + q, and whose k index is a channel of one group: element (k, j) =
// x[n * image_stride + p * row_stride + q * col_stride + k * channel_stride] (x at the group's
// first channel). Spanning the images keeps a tile's pixel columns busy when one image has few
// pixels (7x7 = 49 of a 128-wide tile otherwise). Neighbouring j are neighbouring addresses
// for a unit column stride: an MnContiguousLoader source.
//   forward (x):  image_stride C*H*W, row_stride stride_h*W, col_stride stride_w, channel H*W;
//   dgrad (dy):   image_stride K*P*Q, row_stride Q,          col_stride 1,        channel P*Q.
template <class T>
struct NchwPixelSource {
  struct Row { int offset; };  // -1: past the last image's last pixel
  struct Col { int c; };

  const T* x;
  FastDivmod div_pq, div_q;
  int pixels, image_stride, row_stride, col_stride, channel_stride, channels;

  __device__ __forceinline__ NchwPixelSource(const T* x_group, int images, int P, int Q,
                                             int image_stride_, int row_stride_, int col_stride_,
                                             int channel_stride_, int channels_)
      : x(x_group), div_pq(P * Q), div_q(Q), pixels(images * P * Q), image_stride(image_stride_),
        row_stride(row_stride_), col_stride(col_stride_), channel_stride(channel_stride_),
        channels(channels_) {}

  __device__ __forceinline__ Row row(int j) const {
    if (j >= pixels) return Row{-1};
    int n, pq, p, q;
    div_pq.divmod(j, n, pq);
    div_q.divmod(pq, p, q);
    return Row{n * image_stride + p * row_stride + q * col_stride};
  }
  __device__ __forceinline__ Col column(int c) const { return Col{c}; }
  __device__ __forceinline__ void advance(Col& col) const { ++col.c; }
  __device__ __forceinline__ T load(const Row& row, const Col& col) const {
    if (row.offset >= 0 && col.c < channels) return x[row.offset + col.c * channel_stride];
    return T{};
  }
  // Whether the element exists, and where (async_gemm.cuh's element copies; x when it does not).
  __device__ __forceinline__ bool vector_at(const Row& row, const Col& col, const T*& from) const {
    const bool inside = row.offset >= 0 && col.c < channels;
    from = x + (inside ? row.offset + col.c * channel_stride : 0);
    return inside;
  }
};

// The pointwise A operand for NHWC input: element (m, c) = x[n][p*stride_h][q*stride_w][g*C/g + c],
// rows contiguous along c: a KContiguousLoader source.
template <class T>
struct PointwiseNhwcSource {
  struct Row { int offset; };  // -1: outside the GEMM
  struct Col { int c; };

  const T* x;
  FastDivmod div_pq, div_q;
  int gemm_m, HWC, row_stride, col_stride, channel0, channels;

  // Channels [first, first + count) of the group (a split-K share; split_k.cuh).
  __device__ __forceinline__ PointwiseNhwcSource(const T* x_, const ConvShape& s, int group,
                                                 int first, int count)
      : x(x_), div_pq(s.P * s.Q), div_q(s.Q), gemm_m(s.N * s.P * s.Q), HWC(s.H * s.W * s.C),
        row_stride(s.stride_h * s.W * s.C), col_stride(s.stride_w * s.C),
        channel0(group * s.c_per_group() + first), channels(count) {}

  __device__ __forceinline__ Row row(int m) const {
    if (m >= gemm_m) return Row{-1};
    int n, pq, p, q;
    div_pq.divmod(m, n, pq);
    div_q.divmod(pq, p, q);
    return Row{n * HWC + p * row_stride + q * col_stride + channel0};
  }
  __device__ __forceinline__ Col column(int c) const { return Col{c}; }
  __device__ __forceinline__ T load(const Row& row, const Col& col) const {
    if (row.offset >= 0 && col.c < channels) return x[row.offset + col.c];
    return T{};
  }
  // Whether the element exists, and where (async_gemm.cuh's element copies; x when it does not).
  __device__ __forceinline__ bool vector_at(const Row& row, const Col& col, const T*& from) const {
    const bool inside = row.offset >= 0 && col.c < channels;
    from = x + (inside ? row.offset + col.c : 0);
    return inside;
  }
};

}  // namespace gc
