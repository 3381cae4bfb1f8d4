// The implicit GEMM's A operand with precomputed offsets (CUTLASS's "optimized" activation
// iterator): what conv_operands.cuh's NchwActivationSource / NhwcActivationSource compute with
// a division per k-tile and a few multiplies per element, computed once before the main loop.
//
//   - Per row (output pixel): `base`, the offset of its receptive field's top-left input element
//     in the group's first channel (may be negative: padding), and `taps`, a mask with bit
//     r*S + s set iff that filter tap lands inside the image. Rows past the GEMM get taps = 0,
//     so the one mask test rejects padding and the tile's ragged edge alike.
//   - Per block: the tap table, the offset of each tap (r, s) from the top-left element,
//     filled in shared memory in the prologue (fill_tap_offsets; a __syncthreads must follow).
//   - Per thread: the k position as a two-digit cursor, (c, tap) for NCHW and (tap, c) for NHWC
//     (the analytic kernels' k orders, so the weights and the sums are the same), started with
//     one division in the prologue and moved by a precomputed step with one compare-and-wrap.
// Each element then costs a table lookup, a mask test and an add: no division, no multiply.
// Limit: R * S <= MAX_TAPS (the mask's bits); the launcher runs the analytic kernel otherwise.
//
// The loaders reuse the thread-to-element maps and the shared-memory stores of simt_gemm.cuh's
// MnContiguousLoader / KContiguousLoader and replace only load(). Their cursors advance by one
// k-tile per load(), so they rely on simt_gemm_mainloop's order: load(k0) for k0 = 0, BLOCK_K,
// 2 * BLOCK_K, ... exactly once each (the k0 argument is not read).
#pragma once

#include "conv_operands.cuh"
#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "simt_gemm.cuh"

namespace gc {

// Taps a row's mask can hold; also the length of the shared tap table.
constexpr int MAX_TAPS = 32;

// tap_offsets[r * S + s] = offset of input element (h0 + r*dil_h, w0 + s*dil_w) from (h0, w0),
// for an input whose neighbouring pixels along w are `pixel_stride` elements apart (1 for NCHW,
// C for NHWC). The caller synchronizes the block before any thread reads the table.
__device__ __forceinline__ void fill_tap_offsets(int* tap_offsets, const ConvShape& s,
                                                 int pixel_stride, int tid, int threads) {
#pragma unroll 1
  for (int t = tid; t < s.R * s.S; t += threads) {
    const int r = t / s.S;
    const int c = t - r * s.S;
    tap_offsets[t] = (r * s.dil_h * s.W + c * s.dil_w) * pixel_stride;
  }
}

// Bit r*S + s set iff input pixel (h0 + r*dil_h, w0 + s*dil_w) is inside the image.
__device__ __forceinline__ unsigned tap_mask(int h0, int w0, const ConvShape& s) {
  unsigned columns = 0;
#pragma unroll 1
  for (int c = 0; c < s.S; ++c)
    if (unsigned(w0 + c * s.dil_w) < unsigned(s.W)) columns |= 1u << c;
  unsigned mask = 0;
#pragma unroll 1
  for (int r = 0; r < s.R; ++r)
    if (unsigned(h0 + r * s.dil_h) < unsigned(s.H)) mask |= columns << (r * s.S);
  return mask;
}

// A position in k as two digits: lo in [0, radix), hi in units of hi_unit (pre-scaled, so that
// NCHW's channel digit is directly an element offset).
struct KCursor {
  int lo, hi;
};

// How far a cursor moves for a fixed distance in k (lo < radix), computed once.
struct KStep {
  int lo, hi;
};

// at() and step() divide: prologue only. advance() and advance_one() are the main loop's.
struct KCounter {
  int radix, hi_unit;

  __device__ __forceinline__ KCursor at(int k) const {
    const int q = k / radix;
    return KCursor{k - q * radix, q * hi_unit};
  }
  __device__ __forceinline__ KStep step(int distance) const {
    const int q = distance / radix;
    return KStep{distance - q * radix, q * hi_unit};
  }
  __device__ __forceinline__ void advance(KCursor& c, const KStep& s) const {
    c.lo += s.lo;
    c.hi += s.hi;
    if (c.lo >= radix) {
      c.lo -= radix;
      c.hi += hi_unit;
    }
  }
  // advance(c, step(1)) without the step's registers (also right for radix 1).
  __device__ __forceinline__ void advance_one(KCursor& c) const {
    if (++c.lo == radix) {
      c.lo = 0;
      c.hi += hi_unit;
    }
  }
};

// One k position as the loads need it: where it is relative to a row's base, and which mask
// bit must be set for the element to exist (0: past the GEMM's k).
struct TapPosition {
  int offset;
  unsigned bit;
};

struct PrecomputedRow {
  int base;
  unsigned taps;
};

// NCHW input, k = (c, r, s) as NchwActivationSource (KCRS weights): element (m, k) =
// x[base(m) + c * H*W + tap_offsets[r*S + s]]; cursor lo = tap, hi = c * H*W.
template <class T>
struct PrecomputedNchwSource {
  using Row = PrecomputedRow;

  const T* x;
  const int* tap_offsets;
  KCounter counter;
  int channel_end;  // c_per_group * H*W: the first hi past the GEMM's k
  ConvShape shape;
  PixelDecomposer pixels;
  int gemm_m, image0;

  __device__ __forceinline__ PrecomputedNchwSource(const T* x_, const int* tap_offsets_,
                                                   const ConvShape& s, int group)
      : x(x_), tap_offsets(tap_offsets_), counter{s.R * s.S, s.H * s.W},
        channel_end(s.c_per_group() * s.H * s.W), shape(s), pixels(s), gemm_m(s.N * s.P * s.Q),
        image0(group * s.c_per_group() * s.H * s.W) {}

  __device__ __forceinline__ Row row(int m) const {
    Row row{0, 0u};
    if (m < gemm_m) {
      int n, h0, w0;
      pixels.split(m, n, h0, w0);
      row.base = n * shape.C * shape.H * shape.W + image0 + h0 * shape.W + w0;
      row.taps = tap_mask(h0, w0, shape);
    }
    return row;
  }
  __device__ __forceinline__ TapPosition position(const KCursor& c) const {
    return TapPosition{c.hi + tap_offsets[c.lo], c.hi < channel_end ? 1u << c.lo : 0u};
  }
  __device__ __forceinline__ acc_t<T> load(const Row& row, const TapPosition& at) const {
    if (row.taps & at.bit) return to_acc(x[row.base + at.offset]);
    return acc_t<T>(0);
  }
};

// NHWC input, k = (r, s, c) as NhwcActivationSource (KRSC weights): element (m, k) =
// x[base(m) + tap_offsets[r*S + s] + c]; cursor lo = c, hi = tap.
template <class T>
struct PrecomputedNhwcSource {
  using Row = PrecomputedRow;

  const T* x;
  const int* tap_offsets;
  KCounter counter;
  int taps;  // R * S: the first hi past the GEMM's k
  ConvShape shape;
  PixelDecomposer pixels;
  int gemm_m, channel0;

  __device__ __forceinline__ PrecomputedNhwcSource(const T* x_, const int* tap_offsets_,
                                                   const ConvShape& s, int group)
      : x(x_), tap_offsets(tap_offsets_), counter{s.c_per_group(), 1}, taps(s.R * s.S),
        shape(s), pixels(s), gemm_m(s.N * s.P * s.Q), channel0(group * s.c_per_group()) {}

  __device__ __forceinline__ Row row(int m) const {
    Row row{0, 0u};
    if (m < gemm_m) {
      int n, h0, w0;
      pixels.split(m, n, h0, w0);
      row.base = (n * shape.H * shape.W + h0 * shape.W + w0) * shape.C + channel0;
      row.taps = tap_mask(h0, w0, shape);
    }
    return row;
  }
  __device__ __forceinline__ TapPosition position(const KCursor& c) const {
    // Past the last tap the table has no entry (and 1u << hi could overflow): bit 0 matches
    // no row's mask, so the offset is never used.
    if (c.hi < taps) return TapPosition{tap_offsets[c.hi] + c.lo, 1u << c.hi};
    return TapPosition{0, 0u};
  }
  __device__ __forceinline__ acc_t<T> load(const Row& row, const TapPosition& at) const {
    if (row.taps & at.bit) return to_acc(x[row.base + at.offset]);
    return acc_t<T>(0);
  }
};

// NHWC: the k-contiguous map (each thread one k column of ROWS rows), one cursor per thread.
template <class A, class Source, int BLOCK_MN, int BLOCK_K, int THREADS>
struct PrecomputedKLoader : KContiguousLoader<A, Source, BLOCK_MN, BLOCK_K, THREADS> {
  using Base = KContiguousLoader<A, Source, BLOCK_MN, BLOCK_K, THREADS>;
  KCursor cursor;
  KStep tile_step;

  __device__ __forceinline__ PrecomputedKLoader(const Source& src, int mn0, int tid)
      : Base(src, mn0, tid), cursor(src.counter.at(this->kk)),
        tile_step(src.counter.step(BLOCK_K)) {}

  __device__ __forceinline__ void load(const Source& src, int /*k0: see the header comment*/) {
    const TapPosition at = src.position(cursor);
#pragma unroll
    for (int e = 0; e < Base::ROWS; ++e) this->regs[e] = src.load(this->rows[e], at);
    src.counter.advance(cursor, tile_step);
  }
};

// NCHW: the mn-contiguous map (each thread KS consecutive k of one row).
template <class A, class Source, int BLOCK_MN, int BLOCK_K, int THREADS>
struct PrecomputedMnLoader : MnContiguousLoader<A, Source, BLOCK_MN, BLOCK_K, THREADS> {
  using Base = MnContiguousLoader<A, Source, BLOCK_MN, BLOCK_K, THREADS>;
  KCursor cursor;  // at the thread's first k of the next tile
  KStep tile_step;

  __device__ __forceinline__ PrecomputedMnLoader(const Source& src, int mn0, int tid)
      : Base(src, mn0, tid), cursor(src.counter.at(this->kk0)),
        tile_step(src.counter.step(BLOCK_K)) {}

  __device__ __forceinline__ void load(const Source& src, int /*k0: see the header comment*/) {
    KCursor at = cursor;
#pragma unroll
    for (int e = 0; e < Base::KS; ++e) {
      this->regs[e] = src.load(this->row_state, src.position(at));
      if (e + 1 < Base::KS) src.counter.advance_one(at);
    }
    src.counter.advance(cursor, tile_step);
  }
};

}  // namespace gc
