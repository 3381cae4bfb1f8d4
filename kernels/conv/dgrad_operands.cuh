// The data gradient (dgrad) of a convolution seen as GEMMs, and the stride-phase arithmetic that
// keeps the inserted zeros of a strided data gradient out of them.
//
// Forward: y[n][k][p][q] = sum_{c,r,s} w[k][c][r][s] * x[n][c][p*sh - pad_h + r*dh][q*sw - pad_w + s*dw].
// Backward: input row h receives tap r from output row p iff h + pad_h - r*dh == p*sh. Written as
// a convolution of a zero-stuffed dy, (sh - 1) of every sh rows would be inserted zeros. Instead,
// the input rows are split into sh stride phases by the residue (h + pad_h) % sh: inside one
// phase the taps that reach a row are the same for every row, r = first, first + step, ... with
// step = sh / gcd(sh, dh), and consecutive rows of the phase read consecutive rows of dy. Each
// phase (one per residue pair, sh * sw of them) is a dense implicit GEMM with no zero taps
// (CUTLASS's strided dgrad). Phases that no tap reaches (dilation sharing a factor with the
// stride) are GEMMs with an empty k dimension: their pixels get exactly 0 (plus the bias).
#pragma once

#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "fast_divmod.cuh"

namespace gc {

__device__ __forceinline__ int gcd_int(int a, int b) {
  while (b != 0) {
    const int t = a % b;
    a = b;
    b = t;
  }
  return a;
}

// The taps along one axis that reach the input positions of one stride phase:
// r = first + i * step for i in [0, count).
struct TapPhase {
  int first, step, count;
};

__device__ __forceinline__ TapPhase tap_phase(int residue, int stride, int dil, int taps) {
  TapPhase t{0, stride / gcd_int(stride, dil), 0};
  // (r * dil) % stride repeats with period `step`, so a first solution, if any, lies below it.
  for (int r = 0; r < t.step && r < taps; ++r) {
    if ((r * dil) % stride == residue) {
      t.first = r;
      t.count = (taps - 1 - r) / t.step + 1;
      break;
    }
  }
  return t;
}

// One stride phase along one axis: its input positions first, first + stride, ... (size of
// them) and, for phase-local position i and phase tap index j, the output index
// i + out0 - j * out_step (exact: no division at load time).
struct AxisPhase {
  int first, size, out0, out_step;
  TapPhase taps;
};

__device__ __forceinline__ AxisPhase axis_phase(int residue, int extent, int pad, int stride,
                                                int dil, int taps) {
  AxisPhase a;
  a.first = ((residue - pad) % stride + stride) % stride;
  a.size = a.first < extent ? (extent - a.first + stride - 1) / stride : 0;
  a.taps = tap_phase(residue, stride, dil, taps);
  // Both terms are congruent to `residue` modulo the stride, so the divisions are exact.
  a.out0 = (a.first + pad - a.taps.first * dil) / stride;
  a.out_step = a.taps.step * dil / stride;
  return a;
}

// The implicit GEMM of one stride phase of one group: M = N * size_h * size_w input pixels
// m = (n, i, j), N = C/groups input channels, K = (K/groups) * count_h * count_w taps ordered
// kk = (tap_r, tap_s, k) with k fastest, so that consecutive kk are consecutive dy channels (NHWC)
// and consecutive weight rows of the RSKC-transposed filter.
struct DgradPhaseProblem {
  AxisPhase ph, pw;
  FastDivmod div_hw, div_w, div_kg, div_taps_s;
  int gemm_m, gemm_k, k_per_group, c_per_group, group, P, Q, K;

  __device__ __forceinline__ DgradPhaseProblem(const ConvShape& s, int group_, int residue_h,
                                               int residue_w)
      : ph(axis_phase(residue_h, s.H, s.pad_h, s.stride_h, s.dil_h, s.R)),
        pw(axis_phase(residue_w, s.W, s.pad_w, s.stride_w, s.dil_w, s.S)),
        div_hw(ph.size * pw.size > 0 ? ph.size * pw.size : 1),
        div_w(pw.size > 0 ? pw.size : 1),
        div_kg(s.k_per_group()),
        div_taps_s(pw.taps.count > 0 ? pw.taps.count : 1),
        gemm_m(s.N * ph.size * pw.size),
        gemm_k(s.k_per_group() * ph.taps.count * pw.taps.count),
        k_per_group(s.k_per_group()), c_per_group(s.c_per_group()), group(group_),
        P(s.P), Q(s.Q), K(s.K) {}

  // Input pixel m of the phase -> (image, phase row i, phase column j).
  __device__ __forceinline__ void split_pixel(int m, int& n, int& i, int& j) const {
    int ij;
    div_hw.divmod(m, n, ij);
    div_w.divmod(ij, i, j);
  }
  // GEMM k index -> (filter k of the group, phase tap indices tr, ts).
  __device__ __forceinline__ void split_k(int kk, int& k, int& tr, int& ts) const {
    int t;
    div_kg.divmod(kk, t, k);
    div_taps_s.divmod(t, tr, ts);
  }
  // split_k of kk + by from split_k of kk (by >= 0) without a division: k wraps into the next
  // tap (ts fastest) every K/groups. Whether the tap moved. Past gemm_k, tr runs past the
  // phase's taps: the sources mask such a k by kk.
  __device__ __forceinline__ bool step_k(int& k, int& tr, int& ts, int by) const {
    k += by;
    if (k < k_per_group) return false;
    do {
      k -= k_per_group;
      if (++ts == pw.taps.count) {
        ts = 0;
        ++tr;
      }
    } while (k >= k_per_group);
    return true;
  }
};

// Far enough below zero that a row/column offset plus any output offset stays negative.
constexpr int DGRAD_OUTSIDE = -(1 << 30);

// A (M x K): dy gathered for NCHW dy. Neighbouring m are neighbouring dy columns (stride 1 in
// dy, whatever the convolution's stride): an MnContiguousLoader source.
template <class T>
struct DgradDyNchwSource {
  struct Row { int base, i, j; };
  struct Col { int kk, k, tr, ts; };

  const T* dy;
  DgradPhaseProblem prob;
  int PQ, KPQ;

  __device__ __forceinline__ DgradDyNchwSource(const T* dy_, const DgradPhaseProblem& prob_,
                                               const ConvShape& s)
      : dy(dy_), prob(prob_), PQ(s.P * s.Q), KPQ(s.K * s.P * s.Q) {}

  __device__ __forceinline__ Row row(int m) const {
    Row row{0, DGRAD_OUTSIDE, 0};
    if (m < prob.gemm_m) {
      int n;
      prob.split_pixel(m, n, row.i, row.j);
      row.base = n * KPQ + prob.group * prob.k_per_group * PQ;
    }
    return row;
  }
  __device__ __forceinline__ Col column(int kk) const {
    Col col;
    col.kk = kk;
    prob.split_k(kk, col.k, col.tr, col.ts);
    return col;
  }
  __device__ __forceinline__ void advance(Col& col) const {
    ++col.kk;
    if (++col.k == prob.k_per_group) {
      col.k = 0;
      if (++col.ts == prob.pw.taps.count) {
        col.ts = 0;
        ++col.tr;
      }
    }
  }
  __device__ __forceinline__ T load(const Row& row, const Col& col) const {
    const int p = row.i + prob.ph.out0 - col.tr * prob.ph.out_step;
    const int q = row.j + prob.pw.out0 - col.ts * prob.pw.out_step;
    if (col.kk < prob.gemm_k && unsigned(p) < unsigned(prob.P) && unsigned(q) < unsigned(prob.Q))
      return dy[row.base + col.k * PQ + p * prob.Q + q];
    return T{};
  }
  // Whether the element exists, and where (async_gemm.cuh's element copies; dy when it does not).
  __device__ __forceinline__ bool vector_at(const Row& row, const Col& col, const T*& from) const {
    const int p = row.i + prob.ph.out0 - col.tr * prob.ph.out_step;
    const int q = row.j + prob.pw.out0 - col.ts * prob.pw.out_step;
    const bool inside = col.kk < prob.gemm_k && unsigned(p) < unsigned(prob.P) &&
                        unsigned(q) < unsigned(prob.Q);
    from = dy + (inside ? row.base + col.k * PQ + p * prob.Q + q : 0);
    return inside;
  }
};

// The k state of the 8-channel kernels' sources (Source: DgradDyNhwcSource,
// DgradWeightRsckSource): a Col of the GEMM k index kk, its filter k and phase taps (tr, ts),
// and the source's offset of them, which Source::set_tap makes from (k, tr, ts). column(kk)
// decodes kk (two divisions); advance_by steps a Col by `by` without one (KVectorCursorLoader),
// the offset moving with k until k wraps into the next tap.
template <class Source>
struct DgradTapColumns {
  __device__ __forceinline__ auto column(int kk) const {
    const Source& source = static_cast<const Source&>(*this);
    typename Source::Col col;
    col.kk = kk;
    source.prob.split_k(kk, col.k, col.tr, col.ts);
    source.set_tap(col);
    return col;
  }
  template <class Col>
  __device__ __forceinline__ void advance_by(Col& col, int by) const {
    const Source& source = static_cast<const Source&>(*this);
    col.kk += by;
    if (source.prob.step_k(col.k, col.tr, col.ts, by))
      source.set_tap(col);
    else
      col.offset += by;
  }
};

// A (M x K): dy gathered for NHWC dy; consecutive kk are consecutive channels of one dy pixel:
// a KContiguousLoader source, and the 8-channel kernels' KVectorLoader's (with a cursor that
// steps its k state by a k-tile: advance_by). A row's base is dy's offset of the row's phase
// pixel (i, j) read at (p, q) = (i, j) (n, the group's first filter included), a column's
// offset what its tap (dp, dq) and filter k add: dy[base + offset] is dy[n][i + dp][j + dq][k],
// one addition per element; the bounds are checked on i + dp and j + dq.
template <class T>
struct DgradDyNhwcSource : DgradTapColumns<DgradDyNhwcSource<T>> {
  struct Row { int base, i, j; };
  struct Col { int kk, k, tr, ts, dp, dq, offset; };

  const T* dy;
  DgradPhaseProblem prob;
  int PQK;

  __device__ __forceinline__ DgradDyNhwcSource(const T* dy_, const DgradPhaseProblem& prob_,
                                               const ConvShape& s)
      : dy(dy_), prob(prob_), PQK(s.P * s.Q * s.K) {}

  __device__ __forceinline__ Row row(int m) const {
    Row row{0, DGRAD_OUTSIDE, 0};
    if (m < prob.gemm_m) {
      int n;
      prob.split_pixel(m, n, row.i, row.j);
      row.base = n * PQK + prob.group * prob.k_per_group + (row.i * prob.Q + row.j) * prob.K;
    }
    return row;
  }
  __device__ __forceinline__ void set_tap(Col& col) const {
    col.dp = prob.ph.out0 - col.tr * prob.ph.out_step;
    col.dq = prob.pw.out0 - col.ts * prob.pw.out_step;
    col.offset = (col.dp * prob.Q + col.dq) * prob.K + col.k;
  }
  __device__ __forceinline__ bool inside(const Row& row, const Col& col) const {
    return col.kk < prob.gemm_k && unsigned(row.i + col.dp) < unsigned(prob.P) &&
           unsigned(row.j + col.dq) < unsigned(prob.Q);
  }
  __device__ __forceinline__ T load(const Row& row, const Col& col) const {
    return inside(row, col) ? dy[row.base + col.offset] : T{};
  }
  // Whether channels k .. k+7 of the row's dy pixel for this tap exist, and where (KVectorLoader;
  // dy when they do not): K/groups a multiple of 8 (a vector never straddles a tap), dy 16-byte
  // aligned. Or channel k alone (async_gemm.cuh's element copies).
  __device__ __forceinline__ bool vector_at(const Row& row, const Col& col, const T*& from) const {
    const bool in = inside(row, col);
    // unsigned: an offset inside dy is not negative, and a zero-extended one makes its 64-bit
    // address with two instructions fewer than a sign-extended one.
    from = dy + (in ? unsigned(row.base + col.offset) : 0u);
    return in;
  }
};

// B (K x N): the filter transposed to RSKC (the launcher's w.transpose(2, 3, 0, 1)), element
// (kk, c) = w_rskc[r][s][group * K/groups + k][c]: contiguous along c, an MnContiguousLoader source.
template <class T>
struct DgradWeightSource {
  struct Row { int c; };  // -1: outside the group's channels
  struct Col { int kk, k, tr, ts, offset; };

  const T* w_rskc;
  DgradPhaseProblem prob;
  int S;

  __device__ __forceinline__ DgradWeightSource(const T* w_, const DgradPhaseProblem& prob_, int S_)
      : w_rskc(w_), prob(prob_), S(S_) {}

  __device__ __forceinline__ Row row(int c) const { return Row{c < prob.c_per_group ? c : -1}; }
  __device__ __forceinline__ int offset_of(int k, int tr, int ts) const {
    const int r = prob.ph.taps.first + tr * prob.ph.taps.step;
    const int s = prob.pw.taps.first + ts * prob.pw.taps.step;
    return ((r * S + s) * prob.K + prob.group * prob.k_per_group + k) * prob.c_per_group;
  }
  __device__ __forceinline__ Col column(int kk) const {
    Col col;
    col.kk = kk;
    prob.split_k(kk, col.k, col.tr, col.ts);
    col.offset = offset_of(col.k, col.tr, col.ts);
    return col;
  }
  __device__ __forceinline__ void advance(Col& col) const {
    ++col.kk;
    col.offset += prob.c_per_group;
    if (++col.k == prob.k_per_group) {
      col.k = 0;
      if (++col.ts == prob.pw.taps.count) {
        col.ts = 0;
        ++col.tr;
      }
      col.offset = offset_of(0, col.tr, col.ts);
    }
  }
  __device__ __forceinline__ T load(const Row& row, const Col& col) const {
    if (col.kk < prob.gemm_k && row.c >= 0) return w_rskc[col.offset + row.c];
    return T{};
  }
  // Whether the element exists, and where (async_gemm.cuh's element copies; w when it does not).
  __device__ __forceinline__ bool vector_at(const Row& row, const Col& col, const T*& from) const {
    const bool inside = col.kk < prob.gemm_k && row.c >= 0;
    from = w_rskc + (inside ? col.offset + row.c : 0);
    return inside;
  }
};

// B for the 8-channel tensor-core kernel, one row per input channel c, contiguous along the
// GEMM's k: the filter transposed to RSCK (the launcher's w.transpose(2, 3, 1, 0)), element
// (c, kk) = w_rsck[r][s][c][group * K/groups + k]. A KVectorLoader source (K/groups a multiple
// of 8, w_rsck 16-byte aligned) whose column steps by a k-tile (advance_by).
template <class T>
struct DgradWeightRsckSource : DgradTapColumns<DgradWeightRsckSource<T>> {
  struct Row { int offset; };  // c * K; -1: outside the group's channels
  struct Col { int kk, k, tr, ts, offset; };

  const T* w_rsck;
  DgradPhaseProblem prob;
  int S;

  __device__ __forceinline__ DgradWeightRsckSource(const T* w_, const DgradPhaseProblem& prob_,
                                                   int S_)
      : w_rsck(w_), prob(prob_), S(S_) {}

  __device__ __forceinline__ Row row(int c) const {
    return Row{c < prob.c_per_group ? c * prob.K : -1};
  }
  __device__ __forceinline__ void set_tap(Col& col) const {
    const int r = prob.ph.taps.first + col.tr * prob.ph.taps.step;
    const int s = prob.pw.taps.first + col.ts * prob.pw.taps.step;
    col.offset = (r * S + s) * prob.c_per_group * prob.K + prob.group * prob.k_per_group + col.k;
  }
  __device__ __forceinline__ bool vector_at(const Row& row, const Col& col, const T*& from) const {
    const bool inside = col.kk < prob.gemm_k && row.offset >= 0;
    from = w_rsck + (inside ? unsigned(col.offset + row.offset) : 0u);  // as DgradDyNhwcSource's
    return inside;
  }
};

// A matrix stored column by column: element (row, col) = a[col * ld + row]. Consecutive rows
// are neighbours in memory: an MnContiguousLoader source. It reads W^T straight from KCRS
// weights (row = (c, r, s), col = filter) and NCHW dy planes as (pixel x channel).
template <class T>
struct ColumnMajorSource {
  struct Row { int row; };  // -1: outside the matrix
  struct Col { int col, offset; };

  const T* a;
  int rows, cols, ld;

  __device__ __forceinline__ Row row(int r) const { return Row{r < rows ? r : -1}; }
  __device__ __forceinline__ Col column(int c) const { return Col{c, c * ld}; }
  __device__ __forceinline__ void advance(Col& col) const {
    ++col.col;
    col.offset += ld;
  }
  __device__ __forceinline__ T load(const Row& row, const Col& col) const {
    if (row.row >= 0 && col.col < cols) return a[col.offset + row.row];
    return T{};
  }
};

// The taps of one input position along one axis, for the gather kernels (direct, depthwise,
// col2im): the output index reached by tap `first` and how it moves per tap step.
struct PositionTaps {
  TapPhase taps;
  int out0, out_step;
};

__device__ __forceinline__ PositionTaps position_taps(int pos, int pad, int stride, int dil, int R) {
  PositionTaps t;
  const int padded = pos + pad;
  if (dil == 1) {
    // Undilated (nearly every strided layer): the taps of residue `padded % stride` are
    // residue, residue + stride, ...; two divisions instead of tap_phase's gcd and residue
    // search (~10 divisions per axis, which made the depthwise stride-2 data gradient issue-
    // bound: kernels/conv/NOTES_backward.md "Undilated tap phases").
    const int out0 = padded / stride;
    const int residue = padded - out0 * stride;
    t.taps = {residue, stride, residue < R ? (R - 1 - residue) / stride + 1 : 0};
    t.out0 = out0;
    t.out_step = 1;
    return t;
  }
  t.taps = tap_phase(padded % stride, stride, dil, R);
  t.out0 = (padded - t.taps.first * dil) / stride;  // exact, as in axis_phase
  t.out_step = t.taps.step * dil / stride;
  return t;
}

// The main loop of every gather kernel: visit(p, q, r, s) for each tap (r, s) that reaches the
// input pixel of `th` x `tw` from an output pixel (p, q) inside the P x Q output, rows outer.
template <class Visit>
__device__ __forceinline__ void for_each_reaching_tap(const PositionTaps& th,
                                                      const PositionTaps& tw, int P, int Q,
                                                      Visit&& visit) {
  for (int i = 0; i < th.taps.count; ++i) {
    const int p = th.out0 - i * th.out_step;
    if (unsigned(p) >= unsigned(P)) continue;
    const int r = th.taps.first + i * th.taps.step;
    for (int j = 0; j < tw.taps.count; ++j) {
      const int q = tw.out0 - j * tw.out_step;
      if (unsigned(q) >= unsigned(Q)) continue;
      visit(p, q, r, tw.taps.first + j * tw.taps.step);
    }
  }
}

}  // namespace gc
