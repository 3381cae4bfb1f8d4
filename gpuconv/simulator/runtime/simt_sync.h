// Block barriers and warp collectives. Each records its call site (the __builtin_FILE/LINE
// default arguments evaluate where the kernel calls it) so that a deadlock or a misuse names the
// source line. The runtime blocks the calling fiber until every participant has arrived; the
// last one computes the result for all (PTX semantics: gpuconv/simulator/runtime/warp.cpp).
#pragma once

#define SIMT_SITE const char* simt_file = __builtin_FILE(), int simt_line = __builtin_LINE()

static __forceinline__ void __syncthreads(SIMT_SITE) {
  simt_barrier(SIMT_BAR_SYNC, 1, simt_file, simt_line);
}
static __forceinline__ int __syncthreads_count(int predicate, SIMT_SITE) {
  return simt_barrier(SIMT_BAR_COUNT, predicate, simt_file, simt_line);
}
static __forceinline__ int __syncthreads_and(int predicate, SIMT_SITE) {
  return simt_barrier(SIMT_BAR_AND, predicate, simt_file, simt_line);
}
static __forceinline__ int __syncthreads_or(int predicate, SIMT_SITE) {
  return simt_barrier(SIMT_BAR_OR, predicate, simt_file, simt_line);
}

static __forceinline__ void simt_warp_collective(int kind, unsigned mask, const void* in, void* out,
                                                 unsigned size, int b, int c, const char* file,
                                                 int line) {
  const simt_warp_call call = {kind, mask, in, out, size, b, c, line, file};
  simt_warp_op(&call);
}

static __forceinline__ void __syncwarp(unsigned mask = 0xffffffffu, SIMT_SITE) {
  simt_warp_collective(SIMT_WARP_SYNC, mask, nullptr, nullptr, 0, 0, 0, simt_file, simt_line);
}

// The c operand is built exactly as CUDA's sm_30_intrinsics.hpp builds it for shfl.sync.
template <class T>
static __forceinline__ T simt_shuffle(int kind, unsigned mask, const T& var, int b, int c,
                                      const char* file, int line) {
  static_assert(std::is_trivially_copyable<T>::value, "shuffled values must be trivially copyable");
  T out;
  simt_warp_collective(kind, mask, &var, &out, sizeof(T), b, c, file, line);
  return out;
}
template <class T>
static __forceinline__ T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize, SIMT_SITE) {
  return simt_shuffle(SIMT_SHFL_IDX, mask, var, srcLane, ((warpSize - width) << 8) | 0x1f, simt_file, simt_line);
}
template <class T>
static __forceinline__ T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize, SIMT_SITE) {
  return simt_shuffle(SIMT_SHFL_UP, mask, var, static_cast<int>(delta), (warpSize - width) << 8, simt_file, simt_line);
}
template <class T>
static __forceinline__ T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize, SIMT_SITE) {
  return simt_shuffle(SIMT_SHFL_DOWN, mask, var, static_cast<int>(delta), ((warpSize - width) << 8) | 0x1f, simt_file, simt_line);
}
template <class T>
static __forceinline__ T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize, SIMT_SITE) {
  return simt_shuffle(SIMT_SHFL_BFLY, mask, var, laneMask, ((warpSize - width) << 8) | 0x1f, simt_file, simt_line);
}

static __forceinline__ unsigned __ballot_sync(unsigned mask, int predicate, SIMT_SITE) {
  const int in = predicate != 0;
  unsigned out;
  simt_warp_collective(SIMT_VOTE_BALLOT, mask, &in, &out, sizeof in, 0, 0, simt_file, simt_line);
  return out;
}
static __forceinline__ int __any_sync(unsigned mask, int predicate, SIMT_SITE) {
  const int in = predicate != 0;
  unsigned out;
  simt_warp_collective(SIMT_VOTE_ANY, mask, &in, &out, sizeof in, 0, 0, simt_file, simt_line);
  return static_cast<int>(out);
}
static __forceinline__ int __all_sync(unsigned mask, int predicate, SIMT_SITE) {
  const int in = predicate != 0;
  unsigned out;
  simt_warp_collective(SIMT_VOTE_ALL, mask, &in, &out, sizeof in, 0, 0, simt_file, simt_line);
  return static_cast<int>(out);
}
static __forceinline__ unsigned __activemask() { return simt_activemask(); }

template <class T>
static __forceinline__ unsigned __match_any_sync(unsigned mask, T value, SIMT_SITE) {
  static_assert(std::is_trivially_copyable<T>::value, "matched values must be trivially copyable");
  unsigned out;
  simt_warp_collective(SIMT_MATCH_ANY, mask, &value, &out, sizeof(T), 0, 0, simt_file, simt_line);
  return out;
}
template <class T>
static __forceinline__ unsigned __match_all_sync(unsigned mask, T value, int* pred, SIMT_SITE) {
  static_assert(std::is_trivially_copyable<T>::value, "matched values must be trivially copyable");
  struct { unsigned mask; int pred; } out;
  simt_warp_collective(SIMT_MATCH_ALL, mask, &value, &out, sizeof(T), 0, 0, simt_file, simt_line);
  *pred = out.pred;
  return out.mask;
}

#define SIMT_REDUCE(NAME, KIND, T, SIGNED)                                                     \
  static __forceinline__ T NAME(unsigned mask, T value, SIMT_SITE) {                           \
    T out;                                                                                     \
    simt_warp_collective(KIND, mask, &value, &out, sizeof(T), SIGNED, 0, simt_file, simt_line); \
    return out;                                                                                \
  }
SIMT_REDUCE(__reduce_add_sync, SIMT_REDUCE_ADD, int, 1)
SIMT_REDUCE(__reduce_add_sync, SIMT_REDUCE_ADD, unsigned, 0)
SIMT_REDUCE(__reduce_min_sync, SIMT_REDUCE_MIN, int, 1)
SIMT_REDUCE(__reduce_min_sync, SIMT_REDUCE_MIN, unsigned, 0)
SIMT_REDUCE(__reduce_max_sync, SIMT_REDUCE_MAX, int, 1)
SIMT_REDUCE(__reduce_max_sync, SIMT_REDUCE_MAX, unsigned, 0)
SIMT_REDUCE(__reduce_and_sync, SIMT_REDUCE_AND, unsigned, 0)
SIMT_REDUCE(__reduce_or_sync, SIMT_REDUCE_OR, unsigned, 0)
SIMT_REDUCE(__reduce_xor_sync, SIMT_REDUCE_XOR, unsigned, 0)
#undef SIMT_REDUCE

// For the CPU branch of inline-PTX helpers (simulator.md, convention 1): every lane in `mask`
// contributes `value`; afterwards all[l] holds lane l's value for each participating lane l
// (lanes that did not participate read as 0xFF bytes). A tensor-core helper gathers its
// fragments with this and computes its own lane's output, as the hardware would.
template <class T>
static __forceinline__ void simt_warp_allgather(unsigned mask, const T& value, T (&all)[32], SIMT_SITE) {
  static_assert(std::is_trivially_copyable<T>::value, "gathered values must be trivially copyable");
  simt_warp_collective(SIMT_ALLGATHER, mask, &value, all, sizeof(T), 0, 0, simt_file, simt_line);
}

#undef SIMT_SITE
