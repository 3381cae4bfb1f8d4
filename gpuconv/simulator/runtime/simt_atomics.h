// CUDA atomics. A block's threads run on one OS thread and blocks run one after another, so a
// plain read-modify-write is atomic here; under ThreadSanitizer they are relaxed __atomic
// operations, so that TSan sees atomics (which never race) rather than plain accesses. Relaxed:
// a CUDA atomic does not order other memory accesses either.
#pragma once

template <class T, class Update>
static __forceinline__ T simt_atomic_rmw(T* address, Update update) {
#if defined(__SANITIZE_THREAD__)
  using Bits = std::conditional_t<sizeof(T) == 2, unsigned short,
               std::conditional_t<sizeof(T) == 4, unsigned int, unsigned long long>>;
  static_assert(sizeof(Bits) == sizeof(T), "atomics on 2, 4 or 8 bytes");
  Bits* word = reinterpret_cast<Bits*>(address);
  Bits expected = __atomic_load_n(word, __ATOMIC_RELAXED);
  for (;;) {
    const T old = simt_bit_cast<T>(expected);
    const Bits desired = simt_bit_cast<Bits>(static_cast<T>(update(old)));
    if (__atomic_compare_exchange_n(word, &expected, desired, false, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED))
      return old;
  }
#else
  const T old = *address;
  *address = update(old);
  return old;
#endif
}

#define SIMT_ATOMIC(NAME, T, EXPR)                                                             \
  static __forceinline__ T NAME(T* address, T val) {                                           \
    return simt_atomic_rmw(address, [val](T old) -> T { return EXPR; });                       \
  }
SIMT_ATOMIC(atomicAdd, int, old + val)
SIMT_ATOMIC(atomicAdd, unsigned int, old + val)
SIMT_ATOMIC(atomicAdd, unsigned long long, old + val)
SIMT_ATOMIC(atomicAdd, float, old + val)
SIMT_ATOMIC(atomicAdd, double, old + val)
SIMT_ATOMIC(atomicAdd, __half, __half(float(old) + float(val)))
SIMT_ATOMIC(atomicAdd, __nv_bfloat16, __nv_bfloat16(float(old) + float(val)))
SIMT_ATOMIC(atomicSub, int, old - val)
SIMT_ATOMIC(atomicSub, unsigned int, old - val)
SIMT_ATOMIC(atomicExch, int, val)
SIMT_ATOMIC(atomicExch, unsigned int, val)
SIMT_ATOMIC(atomicExch, unsigned long long, val)
SIMT_ATOMIC(atomicExch, float, val)
SIMT_ATOMIC(atomicMin, int, old < val ? old : val)
SIMT_ATOMIC(atomicMin, unsigned int, old < val ? old : val)
SIMT_ATOMIC(atomicMin, long long, old < val ? old : val)
SIMT_ATOMIC(atomicMin, unsigned long long, old < val ? old : val)
SIMT_ATOMIC(atomicMax, int, old > val ? old : val)
SIMT_ATOMIC(atomicMax, unsigned int, old > val ? old : val)
SIMT_ATOMIC(atomicMax, long long, old > val ? old : val)
SIMT_ATOMIC(atomicMax, unsigned long long, old > val ? old : val)
SIMT_ATOMIC(atomicInc, unsigned int, old >= val ? 0u : old + 1u)
SIMT_ATOMIC(atomicDec, unsigned int, (old == 0u || old > val) ? val : old - 1u)
SIMT_ATOMIC(atomicAnd, int, old & val)
SIMT_ATOMIC(atomicAnd, unsigned int, old & val)
SIMT_ATOMIC(atomicAnd, unsigned long long, old & val)
SIMT_ATOMIC(atomicOr, int, old | val)
SIMT_ATOMIC(atomicOr, unsigned int, old | val)
SIMT_ATOMIC(atomicOr, unsigned long long, old | val)
SIMT_ATOMIC(atomicXor, int, old ^ val)
SIMT_ATOMIC(atomicXor, unsigned int, old ^ val)
SIMT_ATOMIC(atomicXor, unsigned long long, old ^ val)
#undef SIMT_ATOMIC

static __forceinline__ __half2 atomicAdd(__half2* address, __half2 val) {
  return simt_atomic_rmw(address, [val](__half2 old) { return __hadd2(old, val); });
}
static __forceinline__ __nv_bfloat162 atomicAdd(__nv_bfloat162* address, __nv_bfloat162 val) {
  return simt_atomic_rmw(address, [val](__nv_bfloat162 old) { return __hadd2(old, val); });
}

#define SIMT_ATOMIC_CAS(T)                                                                     \
  static __forceinline__ T atomicCAS(T* address, T compare, T val) {                           \
    return simt_atomic_rmw(address, [compare, val](T old) { return old == compare ? val : old; }); \
  }
SIMT_ATOMIC_CAS(int)
SIMT_ATOMIC_CAS(unsigned int)
SIMT_ATOMIC_CAS(unsigned long long)
SIMT_ATOMIC_CAS(unsigned short)
#undef SIMT_ATOMIC_CAS

// Scoped variants: one block runs at a time, so every scope is the same here.
#define atomicAdd_block atomicAdd
#define atomicAdd_system atomicAdd
#define atomicSub_block atomicSub
#define atomicSub_system atomicSub
#define atomicExch_block atomicExch
#define atomicExch_system atomicExch
#define atomicMin_block atomicMin
#define atomicMin_system atomicMin
#define atomicMax_block atomicMax
#define atomicMax_system atomicMax
#define atomicCAS_block atomicCAS
#define atomicCAS_system atomicCAS
#define atomicAnd_block atomicAnd
#define atomicAnd_system atomicAnd
#define atomicOr_block atomicOr
#define atomicOr_system atomicOr
#define atomicXor_block atomicXor
#define atomicXor_system atomicXor
