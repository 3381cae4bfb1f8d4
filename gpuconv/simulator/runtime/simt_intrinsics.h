// CUDA device intrinsics and math functions that C++ lacks. Fast-math intrinsics (__expf...)
// map to the accurate functions: results may differ from a GPU in the last bits (simulator.md,
// "Expected differences"). Only round-to-nearest variants are provided: a directed-rounding
// intrinsic fails to compile rather than silently rounding the wrong way.
#pragma once

// ---- min / max, as CUDA's math_functions.hpp overloads them in the global namespace ----
#define SIMT_MINMAX(A, B, R)                                                                   \
  static __forceinline__ R min(A a, B b) { return static_cast<R>(a) < static_cast<R>(b) ? static_cast<R>(a) : static_cast<R>(b); } \
  static __forceinline__ R max(A a, B b) { return static_cast<R>(a) > static_cast<R>(b) ? static_cast<R>(a) : static_cast<R>(b); }
SIMT_MINMAX(int, int, int)
SIMT_MINMAX(unsigned int, unsigned int, unsigned int)
SIMT_MINMAX(int, unsigned int, unsigned int)
SIMT_MINMAX(unsigned int, int, unsigned int)
SIMT_MINMAX(long, long, long)
SIMT_MINMAX(unsigned long, unsigned long, unsigned long)
SIMT_MINMAX(long, unsigned long, unsigned long)
SIMT_MINMAX(unsigned long, long, unsigned long)
SIMT_MINMAX(long long, long long, long long)
SIMT_MINMAX(unsigned long long, unsigned long long, unsigned long long)
SIMT_MINMAX(long long, unsigned long long, unsigned long long)
SIMT_MINMAX(unsigned long long, long long, unsigned long long)
#undef SIMT_MINMAX
static __forceinline__ float min(float a, float b) { return fminf(a, b); }
static __forceinline__ float max(float a, float b) { return fmaxf(a, b); }
static __forceinline__ double min(double a, double b) { return fmin(a, b); }
static __forceinline__ double max(double a, double b) { return fmax(a, b); }
static __forceinline__ double min(float a, double b) { return fmin(a, b); }
static __forceinline__ double max(float a, double b) { return fmax(a, b); }
static __forceinline__ double min(double a, float b) { return fmin(a, b); }
static __forceinline__ double max(double a, float b) { return fmax(a, b); }
static __forceinline__ unsigned int umin(unsigned int a, unsigned int b) { return a < b ? a : b; }
static __forceinline__ unsigned int umax(unsigned int a, unsigned int b) { return a > b ? a : b; }
static __forceinline__ long long llmin(long long a, long long b) { return a < b ? a : b; }
static __forceinline__ long long llmax(long long a, long long b) { return a > b ? a : b; }
static __forceinline__ unsigned long long ullmin(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
static __forceinline__ unsigned long long ullmax(unsigned long long a, unsigned long long b) { return a > b ? a : b; }

// ---- fast-math and correctly rounded float intrinsics ----
// glibc declares __expf & co. as its own internal names, so these are macros, not overloads.
#define __expf(x) expf(x)
#define __exp10f(x) exp10f(x)
#define __logf(x) logf(x)
#define __log2f(x) log2f(x)
#define __log10f(x) log10f(x)
#define __sinf(x) sinf(x)
#define __cosf(x) cosf(x)
#define __tanf(x) tanf(x)
#define __sincosf(x, s, c) sincosf(x, s, c)
#define __powf(x, y) powf(x, y)
static __forceinline__ float __fdividef(float x, float y) { return x / y; }
static __forceinline__ float fdividef(float x, float y) { return x / y; }
static __forceinline__ float __saturatef(float x) { return x != x ? 0.0f : fminf(fmaxf(x, 0.0f), 1.0f); }
static __forceinline__ float __fadd_rn(float a, float b) { return a + b; }
static __forceinline__ float __fsub_rn(float a, float b) { return a - b; }
static __forceinline__ float __fmul_rn(float a, float b) { return a * b; }
static __forceinline__ float __fdiv_rn(float a, float b) { return a / b; }
static __forceinline__ float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static __forceinline__ float __frcp_rn(float a) { return 1.0f / a; }
static __forceinline__ float __fsqrt_rn(float a) { return sqrtf(a); }
static __forceinline__ float __frsqrt_rn(float a) { return 1.0f / sqrtf(a); }
static __forceinline__ double __dadd_rn(double a, double b) { return a + b; }
static __forceinline__ double __dsub_rn(double a, double b) { return a - b; }
static __forceinline__ double __dmul_rn(double a, double b) { return a * b; }
static __forceinline__ double __ddiv_rn(double a, double b) { return a / b; }
static __forceinline__ double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
static __forceinline__ double __drcp_rn(double a) { return 1.0 / a; }
static __forceinline__ double __dsqrt_rn(double a) { return sqrt(a); }
static __forceinline__ float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static __forceinline__ double rsqrt(double x) { return 1.0 / sqrt(x); }
static __forceinline__ float rcbrtf(float x) { return 1.0f / cbrtf(x); }
static __forceinline__ double rcbrt(double x) { return 1.0 / cbrt(x); }
static __forceinline__ float sinpif(float x) { return sinf(static_cast<float>(M_PI) * x); }
static __forceinline__ float cospif(float x) { return cosf(static_cast<float>(M_PI) * x); }
static __forceinline__ double sinpi(double x) { return sin(M_PI * x); }
static __forceinline__ double cospi(double x) { return cos(M_PI * x); }
static __forceinline__ void sincospif(float x, float* s, float* c) { sincosf(static_cast<float>(M_PI) * x, s, c); }
static __forceinline__ float normcdff(float x) { return 0.5f * erfcf(-x * static_cast<float>(M_SQRT1_2)); }
static __forceinline__ double normcdf(double x) { return 0.5 * erfc(-x * M_SQRT1_2); }

// ---- reinterpretation and conversions ----
template <class To, class From>
static __forceinline__ To simt_bit_cast(From v) {
  static_assert(sizeof(To) == sizeof(From), "simt_bit_cast needs equal sizes");
  To r;
  memcpy(&r, &v, sizeof r);
  return r;
}
static __forceinline__ int __float_as_int(float x) { return simt_bit_cast<int>(x); }
static __forceinline__ unsigned int __float_as_uint(float x) { return simt_bit_cast<unsigned int>(x); }
static __forceinline__ float __int_as_float(int x) { return simt_bit_cast<float>(x); }
static __forceinline__ float __uint_as_float(unsigned int x) { return simt_bit_cast<float>(x); }
static __forceinline__ long long __double_as_longlong(double x) { return simt_bit_cast<long long>(x); }
static __forceinline__ double __longlong_as_double(long long x) { return simt_bit_cast<double>(x); }
static __forceinline__ int __double2hiint(double x) { return static_cast<int>(simt_bit_cast<unsigned long long>(x) >> 32); }
static __forceinline__ int __double2loint(double x) { return static_cast<int>(simt_bit_cast<unsigned long long>(x)); }
static __forceinline__ double __hiloint2double(int hi, int lo) {
  return simt_bit_cast<double>((static_cast<unsigned long long>(static_cast<unsigned>(hi)) << 32) |
                               static_cast<unsigned>(lo));
}

// Float -> integer conversions saturate and send NaN to 0, as cvt.rni/rzi/rmi/rpi do.
template <class I, class F>
static __forceinline__ I simt_saturating_cast(F v) {
  if (v != v) return 0;
  if (v <= static_cast<F>(std::numeric_limits<I>::min())) return std::numeric_limits<I>::min();
  if (v >= static_cast<F>(std::numeric_limits<I>::max())) return std::numeric_limits<I>::max();
  return static_cast<I>(v);
}
#define SIMT_F2I(NAME, F, I, ROUND)                                                            \
  static __forceinline__ I NAME(F v) { return simt_saturating_cast<I>(ROUND(v)); }
SIMT_F2I(__float2int_rn, float, int, rintf)
SIMT_F2I(__float2int_rz, float, int, truncf)
SIMT_F2I(__float2int_rd, float, int, floorf)
SIMT_F2I(__float2int_ru, float, int, ceilf)
SIMT_F2I(__float2uint_rn, float, unsigned int, rintf)
SIMT_F2I(__float2uint_rz, float, unsigned int, truncf)
SIMT_F2I(__float2uint_rd, float, unsigned int, floorf)
SIMT_F2I(__float2uint_ru, float, unsigned int, ceilf)
SIMT_F2I(__float2ll_rn, float, long long, rintf)
SIMT_F2I(__float2ll_rz, float, long long, truncf)
SIMT_F2I(__float2ll_rd, float, long long, floorf)
SIMT_F2I(__float2ll_ru, float, long long, ceilf)
SIMT_F2I(__double2int_rn, double, int, rint)
SIMT_F2I(__double2int_rz, double, int, trunc)
// __half / __nv_bfloat16 -> integer: the same cvt rules (inf saturates, NaN is 0).
static __forceinline__ int __half2int_rz(__half h) { return __float2int_rz(float(h)); }
static __forceinline__ int __half2int_rn(__half h) { return __float2int_rn(float(h)); }
static __forceinline__ unsigned __half2uint_rz(__half h) { return __float2uint_rz(float(h)); }
static __forceinline__ long long __half2ll_rz(__half h) { return __float2ll_rz(float(h)); }
static __forceinline__ int __bfloat162int_rz(__nv_bfloat16 h) { return __float2int_rz(float(h)); }
SIMT_F2I(__double2int_rd, double, int, floor)
SIMT_F2I(__double2int_ru, double, int, ceil)
SIMT_F2I(__double2uint_rn, double, unsigned int, rint)
SIMT_F2I(__double2uint_rz, double, unsigned int, trunc)
SIMT_F2I(__double2ll_rn, double, long long, rint)
SIMT_F2I(__double2ll_rz, double, long long, trunc)
#undef SIMT_F2I
static __forceinline__ float __int2float_rn(int v) { return static_cast<float>(v); }
static __forceinline__ float __uint2float_rn(unsigned int v) { return static_cast<float>(v); }
static __forceinline__ float __ll2float_rn(long long v) { return static_cast<float>(v); }
static __forceinline__ float __ull2float_rn(unsigned long long v) { return static_cast<float>(v); }
static __forceinline__ double __int2double_rn(int v) { return static_cast<double>(v); }
static __forceinline__ double __ll2double_rn(long long v) { return static_cast<double>(v); }
static __forceinline__ float __double2float_rn(double v) { return static_cast<float>(v); }

// ---- integer and bit intrinsics ----
static __forceinline__ int __popc(unsigned int x) { return __builtin_popcount(x); }
static __forceinline__ int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static __forceinline__ int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
static __forceinline__ int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x)); }
static __forceinline__ int __ffs(int x) { return __builtin_ffs(x); }
static __forceinline__ int __ffsll(long long x) { return __builtin_ffsll(x); }
static __forceinline__ unsigned int __brev(unsigned int x) {
  unsigned int r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
static __forceinline__ unsigned long long __brevll(unsigned long long x) {
  return (static_cast<unsigned long long>(__brev(static_cast<unsigned>(x))) << 32) |
         __brev(static_cast<unsigned>(x >> 32));
}
static __forceinline__ unsigned int __byte_perm(unsigned int x, unsigned int y, unsigned int s) {
  const unsigned long long bytes = (static_cast<unsigned long long>(y) << 32) | x;
  unsigned int r = 0;
  for (int i = 0; i < 4; ++i) r |= static_cast<unsigned>((bytes >> (8 * ((s >> (4 * i)) & 7))) & 0xff) << (8 * i);
  return r;
}
static __forceinline__ unsigned int __funnelshift_l(unsigned int lo, unsigned int hi, unsigned int s) {
  const unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
  return static_cast<unsigned>((v << (s & 31)) >> 32);
}
static __forceinline__ unsigned int __funnelshift_lc(unsigned int lo, unsigned int hi, unsigned int s) {
  const unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
  return static_cast<unsigned>((v << (s > 32 ? 32 : s)) >> 32);
}
static __forceinline__ unsigned int __funnelshift_r(unsigned int lo, unsigned int hi, unsigned int s) {
  const unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
  return static_cast<unsigned>(v >> (s & 31));
}
static __forceinline__ unsigned int __funnelshift_rc(unsigned int lo, unsigned int hi, unsigned int s) {
  const unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
  return static_cast<unsigned>(v >> (s > 32 ? 32 : s));
}
static __forceinline__ int __mul24(int a, int b) {
  return static_cast<int>((static_cast<long long>(a << 8 >> 8) * (b << 8 >> 8)));
}
static __forceinline__ unsigned int __umul24(unsigned int a, unsigned int b) { return (a & 0xffffffu) * (b & 0xffffffu); }
static __forceinline__ int __mulhi(int a, int b) { return static_cast<int>((static_cast<long long>(a) * b) >> 32); }
static __forceinline__ unsigned int __umulhi(unsigned int a, unsigned int b) {
  return static_cast<unsigned>((static_cast<unsigned long long>(a) * b) >> 32);
}
static __forceinline__ long long __mul64hi(long long a, long long b) {
  return static_cast<long long>((static_cast<__int128>(a) * b) >> 64);
}
static __forceinline__ unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return static_cast<unsigned long long>((static_cast<unsigned __int128>(a) * b) >> 64);
}
static __forceinline__ int __hadd(int a, int b) { return static_cast<int>((static_cast<long long>(a) + b) >> 1); }
static __forceinline__ int __rhadd(int a, int b) { return static_cast<int>((static_cast<long long>(a) + b + 1) >> 1); }
static __forceinline__ unsigned int __uhadd(unsigned int a, unsigned int b) {
  return static_cast<unsigned>((static_cast<unsigned long long>(a) + b) >> 1);
}
static __forceinline__ unsigned int __urhadd(unsigned int a, unsigned int b) {
  return static_cast<unsigned>((static_cast<unsigned long long>(a) + b + 1) >> 1);
}
static __forceinline__ unsigned int __sad(int a, int b, unsigned int c) {
  return c + static_cast<unsigned>(a > b ? static_cast<long long>(a) - b : static_cast<long long>(b) - a);
}
static __forceinline__ unsigned int __usad(unsigned int a, unsigned int b, unsigned int c) {
  return c + (a > b ? a - b : b - a);
}
static __forceinline__ int __dp4a(int a, int b, int c) {
  for (int i = 0; i < 4; ++i)
    c += static_cast<signed char>(a >> (8 * i)) * static_cast<signed char>(b >> (8 * i));
  return c;
}
static __forceinline__ unsigned int __dp4a(unsigned int a, unsigned int b, unsigned int c) {
  for (int i = 0; i < 4; ++i) c += ((a >> (8 * i)) & 0xffu) * ((b >> (8 * i)) & 0xffu);
  return c;
}

// ---- cache-hinted loads and stores: plain memory accesses here ----
template <class T> static __forceinline__ T __ldg(const T* p) { return *p; }
template <class T> static __forceinline__ T __ldcg(const T* p) { return *p; }
template <class T> static __forceinline__ T __ldca(const T* p) { return *p; }
template <class T> static __forceinline__ T __ldcs(const T* p) { return *p; }
template <class T> static __forceinline__ T __ldlu(const T* p) { return *p; }
template <class T> static __forceinline__ T __ldcv(const T* p) { return *p; }
template <class T> static __forceinline__ void __stcg(T* p, T v) { *p = v; }
template <class T> static __forceinline__ void __stcs(T* p, T v) { *p = v; }
template <class T> static __forceinline__ void __stwb(T* p, T v) { *p = v; }
template <class T> static __forceinline__ void __stwt(T* p, T v) { *p = v; }

// ---- fences, timing, traps ----
// Blocks run one after another and a block's threads on one OS thread, so fences only need to
// stop the compiler from moving memory accesses across them.
static __forceinline__ void __threadfence() { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
static __forceinline__ void __threadfence_block() { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
static __forceinline__ void __threadfence_system() { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
static __forceinline__ void __nanosleep(unsigned int) {}
static __forceinline__ long long clock64() { return static_cast<long long>(simt_clock()); }
static __forceinline__ void __trap_at(const char* file = __builtin_FILE(), int line = __builtin_LINE(),
                                      const char* function = __builtin_FUNCTION()) {
  simt_trap("__trap() called", file, line, function);
}
#define __trap() __trap_at()
#define __brkpt() __trap_at()
