// The implicit GEMM's A operand with precomputed offsets (CUTLASS's "optimized" activation
// iterator): what conv_operands.cuh's NchwActivationSource / NhwcActivationSource compute with
// a division per k-tile and a few multiplies per element, computed once before the main loop.
//
//   - Per row (output pixel): `base`, the offset of its receptive field's top-left input element
//     in the group's first channel (may be negative: padding), and `taps`, a mask with bit
//     r*S + s set iff that filter tap lands inside the image. Rows past the GEMM get taps = 0,
//     so the one mask test rejects padding and the tile's ragged edge alike.
//   - Per block: the live taps, those inside the image for at least one row of the block tile,
//     compacted in a shared table (collect_live_taps: the block-wide OR of the row masks). The
//     GEMM's k runs over live taps only, so a tap that reads nothing but padding for the whole
//     tile costs no multiply-add (dilated layers: up to a third of the MACs of DeepLab's ASPP,
//     kernels/conv/NOTES.md). The weights are read through the same table
//     (LiveTapWeightLoader). Every tap is live in most blocks of most layers; then the k order,
//     the products and the sums are the analytic kernel's.
//   - Per thread: the k position as a two-digit cursor, (c, live tap) for NCHW and (live tap, c)
//     for NHWC (the analytic kernels' k orders restricted to live taps), started with one
//     division in the prologue and moved by a precomputed step with one compare-and-wrap.
// Each element then costs a table lookup, a mask test and an add: no division, no multiply.
// Limit: R * S <= MAX_TAPS (the mask's bits); the launcher runs the analytic kernel otherwise.
//
// Skipping a tap drops only products of a zero (padding) activation, so the sums equal the
// analytic kernel's bit for bit for finite weights; a non-finite weight at a skipped tap does
// not turn those outputs into NaN (0 * inf), as it would in a kernel that multiplies the zeros.
//
// The loaders reuse the thread-to-element maps and the shared-memory stores of simt_gemm.cuh's
// MnContiguousLoader / KContiguousLoader and replace only load(). Their rows are set up first
// (the live taps depend on them), their cursors by start(k_begin) once the live taps are known.
// The cursors advance by one k-tile per load(), so they rely on the main loops' order: load(k0)
// for k0 = k_begin, k_begin + BLOCK_K, ... exactly once each (k0 is not read).
#pragma once

#include "conv_operands.cuh"
#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "simt_gemm.cuh"

namespace gc {

// Taps a row's mask can hold.
constexpr int MAX_TAPS = 32;
// The k-tile depth the live-tap loaders support: a cursor may run up to BLOCK_K - 1 taps past
// the last live one (channel groups narrower than the k-tile), onto the table's sentinels.
// 32: the tensor-core tiles' k-tile (mma_gemm.cuh); the CUDA-core tiles use 8.
constexpr int MAX_BLOCK_K = 32;

// One k position as the loads need it: where it is relative to a row's base, and which mask
// bit must be set for the element to exist (0: past the GEMM's k). Also a live-tap table entry
// (one 8-byte shared load).
struct alignas(8) TapPosition {
  int offset;
  unsigned bit;
};

// The block's live taps, in static shared memory: entry[t] for the t-th live tap (in r*S + s
// order) holds its offset from a row's base and its mask bit; weight_k[t] where the tap starts
// in a filter's row of weights (r*S + s for KCRS, (r*S + s) * C/groups for KRSC). The slots past
// the live taps are sentinels: bit 0 (no row loads) and weight_k past the weights (loads 0), so
// the loaders need no bounds test of their own.
struct LiveTaps {
  static constexpr int SLOTS = MAX_TAPS + MAX_BLOCK_K;
  TapPosition entry[SLOTS];
  int weight_k[SLOTS];
  unsigned mask;
};

// Fills `live` from each thread's OR of its rows' masks and returns the number of live taps.
// Neighbouring input pixels along w are `pixel_stride` elements apart (1 for NCHW, C for
// NHWC); a filter's consecutive taps are `weight_tap_stride` weights apart (1 for KCRS, C/groups
// for KRSC). Synchronizes the block (every thread must call it); the table is complete on return.
// A tile whose rows all miss the image keeps tap 0: its rows' masks reject every load, and the
// GEMM keeps a non-empty k (so the epilogue still writes bias / residual / activation(0)).
template <int THREADS>
__device__ __forceinline__ int collect_live_taps(LiveTaps& live, unsigned thread_taps,
                                                 const ConvShape& s, int pixel_stride,
                                                 int weight_tap_stride, int tid) {
  static_assert(THREADS % 32 == 0, "the warp reduction needs whole warps");
  if (tid == 0) live.mask = 0u;
#pragma unroll
  for (int lanes = 16; lanes > 0; lanes >>= 1)
    thread_taps |= __shfl_xor_sync(0xffffffffu, thread_taps, lanes);
  __syncthreads();  // mask cleared
  if (tid % 32 == 0) atomicOr(&live.mask, thread_taps);
  __syncthreads();  // every warp's taps are in
  const unsigned mask = live.mask ? live.mask : 1u;
  const int taps = s.R * s.S;
  const int live_taps = __popc(mask);
#pragma unroll 1
  for (int tap = tid; tap < taps; tap += THREADS) {
    if (!((mask >> tap) & 1u)) continue;
    const int slot = __popc(mask & ((1u << tap) - 1u));
    const int r = tap / s.S;
    const int c = tap - r * s.S;
    live.entry[slot] = TapPosition{(r * s.dil_h * s.W + c * s.dil_w) * pixel_stride, 1u << tap};
    live.weight_k[slot] = tap * weight_tap_stride;
  }
  for (int slot = live_taps + tid; slot < LiveTaps::SLOTS; slot += THREADS) {
    live.entry[slot] = TapPosition{0, 0u};
    live.weight_k[slot] = taps * weight_tap_stride;  // one past a filter's last weight
  }
  __syncthreads();  // the table is complete before any thread reads it
  return live_taps;
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

struct PrecomputedRow {
  int base;
  unsigned taps;
};

// The rows of the A operand (output pixels m of group `group`): base offsets and tap masks.
// NCHW: base = n*C*H*W + (group's first channel)*H*W + h0*W + w0;
// NHWC: base = ((n*H + h0)*W + w0)*C + group's first channel.
template <bool NHWC>
struct PrecomputedRows {
  using Row = PrecomputedRow;

  ConvShape shape;
  PixelDecomposer pixels;
  int gemm_m, group_offset;

  __device__ __forceinline__ PrecomputedRows(const ConvShape& s, int group)
      : shape(s), pixels(s), gemm_m(s.N * s.P * s.Q),
        group_offset(NHWC ? group * s.c_per_group() : group * s.c_per_group() * s.H * s.W) {}

  __device__ __forceinline__ Row row(int m) const {
    Row row{0, 0u};
    if (m < gemm_m) {
      int n, h0, w0;
      pixels.split(m, n, h0, w0);
      row.base = NHWC ? (n * shape.H * shape.W + h0 * shape.W + w0) * shape.C + group_offset
                      : n * shape.C * shape.H * shape.W + group_offset + h0 * shape.W + w0;
      row.taps = tap_mask(h0, w0, shape);
    }
    return row;
  }
};

// Whether `row` reads input at `at` (its mask has the tap's bit), and where: the address for the
// copying loaders' vector_at (x itself when it reads nothing: any valid address).
template <class T>
__device__ __forceinline__ bool tap_address(const T* x, const PrecomputedRow& row,
                                            const TapPosition& at, const T*& from) {
  const bool inside = (row.taps & at.bit) != 0u;
  // unsigned: an offset inside x is not negative, and a zero-extended one makes its 64-bit
  // address with two instructions fewer than a sign-extended one.
  from = x + (inside ? unsigned(row.base + at.offset) : 0u);
  return inside;
}

// NCHW input, k = (c, live tap) (KCRS weights through LiveTapWeightLoader): element (m, k) =
// x[base(m) + c * H*W + offset of the live tap]; cursor lo = live tap, hi = c * H*W.
template <class T>
struct PrecomputedNchwSource {
  using Row = PrecomputedRow;

  const T* x;
  const TapPosition* taps;
  KCounter counter;
  int channel_end;  // c_per_group * H*W: the first hi past the GEMM's k

  __device__ __forceinline__ PrecomputedNchwSource(const T* x_, const LiveTaps& live,
                                                   int live_taps, const ConvShape& s)
      : x(x_), taps(live.entry), counter{live_taps, s.H * s.W},
        channel_end(s.c_per_group() * s.H * s.W) {}

  __device__ __forceinline__ TapPosition position(const KCursor& c) const {
    TapPosition at = taps[c.lo];
    at.offset += c.hi;
    if (c.hi >= channel_end) at.bit = 0u;
    return at;
  }
  __device__ __forceinline__ T load(const Row& row, const TapPosition& at) const {
    if (row.taps & at.bit) return x[row.base + at.offset];
    return T{};
  }
  // Whether the element exists for the row, and where (async_gemm.cuh's element copies).
  __device__ __forceinline__ bool vector_at(const Row& row, const TapPosition& at,
                                            const T*& from) const {
    return tap_address(x, row, at, from);
  }
};

// NHWC input, k = (live tap, c) (KRSC weights through LiveTapWeightLoader): element (m, k) =
// x[base(m) + offset of the live tap + c]; cursor lo = c, hi = live tap.
template <class T>
struct PrecomputedNhwcSource {
  using Row = PrecomputedRow;

  const T* x;
  const TapPosition* taps;
  KCounter counter;

  __device__ __forceinline__ PrecomputedNhwcSource(const T* x_, const LiveTaps& live,
                                                   int /*live_taps*/, const ConvShape& s)
      : x(x_), taps(live.entry), counter{s.c_per_group(), 1} {}

  // Past the last live tap, hi reads a sentinel slot: bit 0 matches no row's mask.
  __device__ __forceinline__ TapPosition position(const KCursor& c) const {
    TapPosition at = taps[c.hi];
    at.offset += c.lo;
    return at;
  }
  __device__ __forceinline__ T load(const Row& row, const TapPosition& at) const {
    if (row.taps & at.bit) return x[row.base + at.offset];
    return T{};
  }
  // Whether channels c .. c+7 of one tap exist for the row, and where (KVectorLoader: C/groups
  // a multiple of 8, x 16-byte aligned); or channel c alone (async_gemm.cuh's element copies).
  __device__ __forceinline__ bool vector_at(const Row& row, const TapPosition& at,
                                            const T*& from) const {
    return tap_address(x, row, at, from);
  }
};

// NHWC: the k-contiguous map (each thread one k column of ROWS rows, or with KVectorLoader as
// Base 8 consecutive k of ROWS rows), one cursor per thread at its first k.
template <class A, class Source, int BLOCK_MN, int BLOCK_K, int THREADS,
          class Base = KContiguousLoader<A, Source, BLOCK_MN, BLOCK_K, THREADS>>
struct PrecomputedKLoader : Base {
  KCursor cursor;
  KStep tile_step;

  template <class Rows>
  __device__ __forceinline__ PrecomputedKLoader(const Rows& rows, int mn0, int tid)
      : Base(rows, mn0, tid) {}

  // The OR of this thread's rows' tap masks (collect_live_taps' input).
  __device__ __forceinline__ unsigned taps() const {
    unsigned t = 0u;
#pragma unroll
    for (int e = 0; e < Base::ROWS; ++e) t |= this->rows[e].taps;
    return t;
  }
  __device__ __forceinline__ void start(const Source& src, int k_begin) {
    cursor = src.counter.at(k_begin + this->kk);
    tile_step = src.counter.step(BLOCK_K);
  }
  __device__ __forceinline__ void load(const Source& src, int /*k0: see the header comment*/) {
    const TapPosition at = src.position(cursor);
#pragma unroll
    for (int e = 0; e < Base::ROWS; ++e) this->load_row(e, src, at);
    src.counter.advance(cursor, tile_step);
  }
};

// NCHW: the mn-contiguous map (each thread KS consecutive k of one row). Base:
// MnContiguousLoader, or async_gemm.cuh's MnElementAsyncLoader (the same map, copies).
template <class A, class Source, int BLOCK_MN, int BLOCK_K, int THREADS,
          class Base = MnContiguousLoader<A, Source, BLOCK_MN, BLOCK_K, THREADS>>
struct PrecomputedMnLoader : Base {
  KCursor cursor;  // at the thread's first k of the next tile
  KStep tile_step;

  template <class Rows>
  __device__ __forceinline__ PrecomputedMnLoader(const Rows& rows, int mn0, int tid)
      : Base(rows, mn0, tid) {}

  __device__ __forceinline__ unsigned taps() const { return this->row_state.taps; }
  __device__ __forceinline__ void start(const Source& src, int k_begin) {
    cursor = src.counter.at(k_begin + this->kk0);
    tile_step = src.counter.step(BLOCK_K);
  }
  __device__ __forceinline__ void load(const Source& src, int /*k0: see the header comment*/) {
    KCursor at = cursor;
#pragma unroll
    for (int e = 0; e < Base::KS; ++e) {
      this->load_k(e, src, src.position(at));
      if (e + 1 < Base::KS) src.counter.advance_one(at);
    }
    src.counter.advance(cursor, tile_step);
  }
};

// The weights (the B operand, one row per filter) read through the block's live taps: the
// compacted k of the A loaders mapped back to the weights' k.
//   NCHW (KCRS, k = c*R*S + tap): cursor lo = live tap (radix live_taps), hi = c * R*S.
//   NHWC (KRSC, k = tap*C/g + c): cursor lo = c (radix C/g), hi = live tap.
// Past the GEMM's k the weights' k lands past a filter's row (NCHW: hi is past the last
// channel; NHWC: hi reads a sentinel slot), where RowMajorSource loads 0.
// Base: KContiguousLoader (one k per thread) or KVectorLoader (8 consecutive k: NHWC only).
template <class A, class T, bool NHWC, int BLOCK_MN, int BLOCK_K, int THREADS,
          class Base = KContiguousLoader<A, RowMajorSource<T>, BLOCK_MN, BLOCK_K, THREADS>>
struct LiveTapWeightLoader : Base {
  static_assert(BLOCK_K <= MAX_BLOCK_K, "the live-tap table has MAX_BLOCK_K sentinel slots");
  using Source = RowMajorSource<T>;
  const int* weight_k;
  KCounter counter;
  KCursor cursor;
  KStep tile_step;

  __device__ __forceinline__ LiveTapWeightLoader(const Source& src, const LiveTaps& live,
                                                 int live_taps, const ConvShape& s, int mn0,
                                                 int tid, int k_begin)
      : Base(src, mn0, tid), weight_k(live.weight_k),
        counter(NHWC ? KCounter{s.c_per_group(), 1} : KCounter{live_taps, s.R * s.S}) {
    cursor = counter.at(k_begin + this->kk);
    tile_step = counter.step(BLOCK_K);
  }
  __device__ __forceinline__ void load(const Source& src, int /*k0: see the header comment*/) {
    const typename Source::Col col{NHWC ? weight_k[cursor.hi] + cursor.lo
                                        : cursor.hi + weight_k[cursor.lo]};
#pragma unroll
    for (int e = 0; e < Base::ROWS; ++e) this->load_row(e, src, col);
    counter.advance(cursor, tile_step);
  }
};

}  // namespace gc
