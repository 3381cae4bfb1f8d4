// __half and __nv_bfloat16 (cuda_fp16.h / cuda_bf16.h) as 16-bit storage types.
//
// Conversions round to nearest even, bit-exactly as the hardware does; arithmetic is done in
// float and rounded once, which for +, -, *, / gives the correctly rounded half result (float has
// more than 2p+2 bits). Like CUDA, a __half converts implicitly from arithmetic types and to
// float, so mixed expressions such as `h * 2.0f` are ambiguous exactly where nvcc says so.
#pragma once

namespace simt_fp {

// Rounds a double to the nearest value of a binary format with EXP exponent bits and MAN
// mantissa bits (ties to even; overflow to infinity; NaN stays a quiet NaN). A float converts
// to double exactly, so this also rounds floats without double rounding.
template <int EXP, int MAN>
inline unsigned short round_double(double value) {
  unsigned long long bits;
  memcpy(&bits, &value, sizeof bits);
  const unsigned short sign = static_cast<unsigned short>((bits >> 63) << (EXP + MAN));
  const int exp = static_cast<int>((bits >> 52) & 0x7ff);
  const unsigned long long frac = bits & ((1ull << 52) - 1);
  const int max_exp = (1 << EXP) - 1;
  const int bias = (1 << (EXP - 1)) - 1;
  if (exp == 0x7ff) {
    if (frac == 0) return static_cast<unsigned short>(sign | (max_exp << MAN));
    return static_cast<unsigned short>(sign | (max_exp << MAN) | (1u << (MAN - 1)) |
                                       static_cast<unsigned>(frac >> (52 - MAN)));
  }
  if (exp == 0) return sign;  // below 2^-1022: far under half the smallest subnormal
  const unsigned long long sig = frac | (1ull << 52);
  int target_exp = exp - 1023 + bias;
  int shift = 52 - MAN;
  if (target_exp < 1) {  // subnormal result: drop more bits
    shift += 1 - target_exp;
    target_exp = 0;
  }
  if (shift >= 54) return sign;  // sig < 2^53 <= half an ulp: rounds to zero
  unsigned long long q = sig >> shift;
  const unsigned long long rem = sig & ((1ull << shift) - 1);
  const unsigned long long half = 1ull << (shift - 1);
  if (rem > half || (rem == half && (q & 1))) ++q;
  if (target_exp == 0) return static_cast<unsigned short>(sign | q);  // q may carry into exp 1
  if (q >> (MAN + 1)) {
    q >>= 1;
    ++target_exp;
  }
  if (target_exp >= max_exp) return static_cast<unsigned short>(sign | (max_exp << MAN));
  return static_cast<unsigned short>(sign | (target_exp << MAN) | (q & ((1u << MAN) - 1)));
}

inline float half_bits_to_float(unsigned short h) {
  const unsigned sign = static_cast<unsigned>(h >> 15) << 31;
  const unsigned exp = (h >> 10) & 0x1f;
  const unsigned frac = h & 0x3ff;
  unsigned bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (frac << 13);
  } else if (exp == 0) {
    const float magnitude = static_cast<float>(frac) * 5.9604644775390625e-08f;  // 2^-24
    return sign ? -magnitude : magnitude;
  } else {
    bits = sign | ((exp + 112) << 23) | (frac << 13);
  }
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

inline float bf16_bits_to_float(unsigned short b) {
  const unsigned bits = static_cast<unsigned>(b) << 16;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

}  // namespace simt_fp

struct __half_raw { unsigned short x; };
struct __nv_bfloat16_raw { unsigned short x; };

// Both types share one shape; SIMT_HALF_TYPE stamps it out with the right conversions.
#define SIMT_HALF_TYPE(TYPE, RAW, EXP, MAN, TO_FLOAT)                                          \
  struct __attribute__((aligned(2))) TYPE {                                                    \
    unsigned short __x;                                                                        \
    TYPE() = default;                                                                          \
    constexpr TYPE(const RAW& r) : __x(r.x) {}                                                 \
    TYPE(float f) : __x(simt_fp::round_double<EXP, MAN>(f)) {}                                 \
    TYPE(double d) : __x(simt_fp::round_double<EXP, MAN>(d)) {}                                \
    TYPE(int i) : __x(simt_fp::round_double<EXP, MAN>(i)) {}                                   \
    TYPE(unsigned int i) : __x(simt_fp::round_double<EXP, MAN>(i)) {}                          \
    TYPE(short i) : __x(simt_fp::round_double<EXP, MAN>(i)) {}                                 \
    TYPE(unsigned short i) : __x(simt_fp::round_double<EXP, MAN>(i)) {}                        \
    TYPE(long long i) : __x(simt_fp::round_double<EXP, MAN>(static_cast<double>(i))) {}        \
    TYPE(unsigned long long i) : __x(simt_fp::round_double<EXP, MAN>(static_cast<double>(i))) {} \
    TYPE(long i) : __x(simt_fp::round_double<EXP, MAN>(static_cast<double>(i))) {}             \
    TYPE(unsigned long i) : __x(simt_fp::round_double<EXP, MAN>(static_cast<double>(i))) {}    \
    operator float() const { return TO_FLOAT(__x); }                                           \
    operator RAW() const { return RAW{__x}; }                                                  \
  };                                                                                           \
  inline TYPE operator+(const TYPE& a, const TYPE& b) { return TYPE(float(a) + float(b)); }    \
  inline TYPE operator-(const TYPE& a, const TYPE& b) { return TYPE(float(a) - float(b)); }    \
  inline TYPE operator*(const TYPE& a, const TYPE& b) { return TYPE(float(a) * float(b)); }    \
  inline TYPE operator/(const TYPE& a, const TYPE& b) { return TYPE(float(a) / float(b)); }    \
  inline TYPE& operator+=(TYPE& a, const TYPE& b) { return a = a + b; }                        \
  inline TYPE& operator-=(TYPE& a, const TYPE& b) { return a = a - b; }                        \
  inline TYPE& operator*=(TYPE& a, const TYPE& b) { return a = a * b; }                        \
  inline TYPE& operator/=(TYPE& a, const TYPE& b) { return a = a / b; }                        \
  inline TYPE operator-(const TYPE& a) { TYPE r; r.__x = a.__x ^ 0x8000u; return r; }          \
  inline TYPE operator+(const TYPE& a) { return a; }                                           \
  inline bool operator==(const TYPE& a, const TYPE& b) { return float(a) == float(b); }        \
  inline bool operator!=(const TYPE& a, const TYPE& b) { return float(a) != float(b); }        \
  inline bool operator<(const TYPE& a, const TYPE& b) { return float(a) < float(b); }          \
  inline bool operator>(const TYPE& a, const TYPE& b) { return float(a) > float(b); }          \
  inline bool operator<=(const TYPE& a, const TYPE& b) { return float(a) <= float(b); }        \
  inline bool operator>=(const TYPE& a, const TYPE& b) { return float(a) >= float(b); }

SIMT_HALF_TYPE(__half, __half_raw, 5, 10, simt_fp::half_bits_to_float)
SIMT_HALF_TYPE(__nv_bfloat16, __nv_bfloat16_raw, 8, 7, simt_fp::bf16_bits_to_float)
#undef SIMT_HALF_TYPE

struct __attribute__((aligned(4))) __half2 { __half x, y; };
struct __attribute__((aligned(4))) __nv_bfloat162 { __nv_bfloat16 x, y; };
typedef __half half;
typedef __half2 half2;
typedef __nv_bfloat16 nv_bfloat16;
typedef __nv_bfloat162 nv_bfloat162;

// ---- __half conversions (to integers: simt_intrinsics.h, with the saturating casts) ----
inline __half __float2half(float f) { return __half(f); }
inline __half __float2half_rn(float f) { return __half(f); }
inline __half __double2half(double d) { return __half(d); }
inline float __half2float(__half h) { return float(h); }
inline __half __int2half_rn(int i) { return __half(i); }
inline __half __uint2half_rn(unsigned i) { return __half(i); }
inline __half __ll2half_rn(long long i) { return __half(i); }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline short __half_as_short(__half h) { return static_cast<short>(h.__x); }
inline __half __ushort_as_half(unsigned short x) { return __half(__half_raw{x}); }
inline __half __short_as_half(short x) { return __half(__half_raw{static_cast<unsigned short>(x)}); }
inline __half2 __halves2half2(__half a, __half b) { return __half2{a, b}; }
inline __half2 __half2half2(__half a) { return __half2{a, a}; }
inline __half2 __floats2half2_rn(float a, float b) { return __half2{__half(a), __half(b)}; }
inline __half2 __float2half2_rn(float a) { return __half2{__half(a), __half(a)}; }
inline __half2 __float22half2_rn(float2 v) { return __half2{__half(v.x), __half(v.y)}; }
inline float2 __half22float2(__half2 v) { return make_float2(float(v.x), float(v.y)); }
inline __half __low2half(__half2 v) { return v.x; }
inline __half __high2half(__half2 v) { return v.y; }
inline float __low2float(__half2 v) { return float(v.x); }
inline float __high2float(__half2 v) { return float(v.y); }
inline __half2 __lowhigh2highlow(__half2 v) { return __half2{v.y, v.x}; }

// ---- __nv_bfloat16 conversions ----
inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat16 __double2bfloat16(double d) { return __nv_bfloat16(d); }
inline float __bfloat162float(__nv_bfloat16 h) { return float(h); }
inline __nv_bfloat16 __int2bfloat16_rn(int i) { return __nv_bfloat16(i); }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
inline short __bfloat16_as_short(__nv_bfloat16 h) { return static_cast<short>(h.__x); }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short x) {
  return __nv_bfloat16(__nv_bfloat16_raw{x});
}
inline __nv_bfloat16 __short_as_bfloat16(short x) {
  return __nv_bfloat16(__nv_bfloat16_raw{static_cast<unsigned short>(x)});
}
inline __nv_bfloat162 __halves2bfloat162(__nv_bfloat16 a, __nv_bfloat16 b) { return {a, b}; }
inline __nv_bfloat162 __bfloat162bfloat162(__nv_bfloat16 a) { return {a, a}; }
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
  return {__nv_bfloat16(a), __nv_bfloat16(b)};
}
inline __nv_bfloat162 __float2bfloat162_rn(float a) { return {__nv_bfloat16(a), __nv_bfloat16(a)}; }
inline __nv_bfloat162 __float22bfloat162_rn(float2 v) {
  return {__nv_bfloat16(v.x), __nv_bfloat16(v.y)};
}
inline float2 __bfloat1622float2(__nv_bfloat162 v) { return make_float2(float(v.x), float(v.y)); }
inline __nv_bfloat16 __low2bfloat16(__nv_bfloat162 v) { return v.x; }
inline __nv_bfloat16 __high2bfloat16(__nv_bfloat162 v) { return v.y; }

// ---- arithmetic and comparisons, for both types ----
#define SIMT_HALF_MATH(T, T2)                                                                  \
  inline T __hadd(T a, T b) { return a + b; }                                                  \
  inline T __hsub(T a, T b) { return a - b; }                                                  \
  inline T __hmul(T a, T b) { return a * b; }                                                  \
  inline T __hdiv(T a, T b) { return a / b; }                                                  \
  inline T __hneg(T a) { return -a; }                                                          \
  inline T __habs(T a) { T r; r.__x = a.__x & 0x7fffu; return r; }                            \
  inline T __hfma(T a, T b, T c) {                                                             \
    return T(static_cast<double>(float(a)) * float(b) + float(c));                             \
  }                                                                                            \
  inline T __hmax(T a, T b) { return fmaxf(float(a), float(b)); }                              \
  inline T __hmin(T a, T b) { return fminf(float(a), float(b)); }                              \
  inline bool __heq(T a, T b) { return a == b; }                                               \
  inline bool __hne(T a, T b) { return a != b; }                                               \
  inline bool __hlt(T a, T b) { return a < b; }                                                \
  inline bool __hle(T a, T b) { return a <= b; }                                               \
  inline bool __hgt(T a, T b) { return a > b; }                                                \
  inline bool __hge(T a, T b) { return a >= b; }                                               \
  inline bool __hisnan(T a) { return std::isnan(float(a)); }                                   \
  inline int __hisinf(T a) { float f = float(a); return std::isinf(f) ? (f < 0 ? -1 : 1) : 0; } \
  inline T hsqrt(T a) { return T(sqrtf(float(a))); }                                           \
  inline T hrsqrt(T a) { return T(1.0f / sqrtf(float(a))); }                                   \
  inline T hexp(T a) { return T(expf(float(a))); }                                             \
  inline T hlog(T a) { return T(logf(float(a))); }                                             \
  inline T htrunc(T a) { return T(truncf(float(a))); }                                         \
  inline T hfloor(T a) { return T(floorf(float(a))); }                                         \
  inline T hceil(T a) { return T(ceilf(float(a))); }                                           \
  inline T2 __hadd2(T2 a, T2 b) { return T2{a.x + b.x, a.y + b.y}; }                           \
  inline T2 __hsub2(T2 a, T2 b) { return T2{a.x - b.x, a.y - b.y}; }                           \
  inline T2 __hmul2(T2 a, T2 b) { return T2{a.x * b.x, a.y * b.y}; }                           \
  inline T2 __h2div(T2 a, T2 b) { return T2{a.x / b.x, a.y / b.y}; }                           \
  inline T2 __hneg2(T2 a) { return T2{-a.x, -a.y}; }                                           \
  inline T2 __habs2(T2 a) { return T2{__habs(a.x), __habs(a.y)}; }                             \
  inline T2 __hfma2(T2 a, T2 b, T2 c) { return T2{__hfma(a.x, b.x, c.x), __hfma(a.y, b.y, c.y)}; } \
  inline T2 __hmax2(T2 a, T2 b) { return T2{__hmax(a.x, b.x), __hmax(a.y, b.y)}; }             \
  inline T2 __hmin2(T2 a, T2 b) { return T2{__hmin(a.x, b.x), __hmin(a.y, b.y)}; }

SIMT_HALF_MATH(__half, __half2)
SIMT_HALF_MATH(__nv_bfloat16, __nv_bfloat162)
#undef SIMT_HALF_MATH

#define CUDART_INF_FP16 __ushort_as_half(static_cast<unsigned short>(0x7c00u))
#define CUDART_MAX_NORMAL_FP16 __ushort_as_half(static_cast<unsigned short>(0x7bffu))
#define CUDART_INF_BF16 __ushort_as_bfloat16(static_cast<unsigned short>(0x7f80u))
#define CUDART_MAX_NORMAL_BF16 __ushort_as_bfloat16(static_cast<unsigned short>(0x7f7fu))
