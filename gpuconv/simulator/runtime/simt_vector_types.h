// CUDA's vector types (vector_types.h) with CUDA's sizes and alignments, their make_* functions,
// and dim3.
#pragma once

#define SIMT_VEC1(NAME, T, ALIGN)                                                              \
  struct __attribute__((aligned(ALIGN))) NAME##1 { T x; };                                     \
  typedef struct NAME##1 NAME##1;                                                              \
  static inline NAME##1 make_##NAME##1(T x) { NAME##1 v; v.x = x; return v; }
#define SIMT_VEC2(NAME, T, ALIGN)                                                              \
  struct __attribute__((aligned(ALIGN))) NAME##2 { T x, y; };                                  \
  typedef struct NAME##2 NAME##2;                                                              \
  static inline NAME##2 make_##NAME##2(T x, T y) { NAME##2 v; v.x = x; v.y = y; return v; }
#define SIMT_VEC3(NAME, T, ALIGN)                                                              \
  struct __attribute__((aligned(ALIGN))) NAME##3 { T x, y, z; };                               \
  typedef struct NAME##3 NAME##3;                                                              \
  static inline NAME##3 make_##NAME##3(T x, T y, T z) {                                        \
    NAME##3 v; v.x = x; v.y = y; v.z = z; return v;                                            \
  }
#define SIMT_VEC4(NAME, T, ALIGN)                                                              \
  struct __attribute__((aligned(ALIGN))) NAME##4 { T x, y, z, w; };                            \
  typedef struct NAME##4 NAME##4;                                                              \
  static inline NAME##4 make_##NAME##4(T x, T y, T z, T w) {                                   \
    NAME##4 v; v.x = x; v.y = y; v.z = z; v.w = w; return v;                                   \
  }
#define SIMT_VECS(NAME, T, A1, A2, A3, A4)                                                     \
  SIMT_VEC1(NAME, T, A1) SIMT_VEC2(NAME, T, A2) SIMT_VEC3(NAME, T, A3) SIMT_VEC4(NAME, T, A4)

SIMT_VECS(char, signed char, 1, 2, 1, 4)
SIMT_VECS(uchar, unsigned char, 1, 2, 1, 4)
SIMT_VECS(short, short, 2, 4, 2, 8)
SIMT_VECS(ushort, unsigned short, 2, 4, 2, 8)
SIMT_VECS(int, int, 4, 8, 4, 16)
SIMT_VECS(uint, unsigned int, 4, 8, 4, 16)
SIMT_VECS(long, long, 8, 16, 8, 16)
SIMT_VECS(ulong, unsigned long, 8, 16, 8, 16)
SIMT_VECS(longlong, long long, 8, 16, 8, 16)
SIMT_VECS(ulonglong, unsigned long long, 8, 16, 8, 16)
SIMT_VECS(float, float, 4, 8, 4, 16)
SIMT_VECS(double, double, 8, 16, 8, 16)

#undef SIMT_VECS
#undef SIMT_VEC1
#undef SIMT_VEC2
#undef SIMT_VEC3
#undef SIMT_VEC4

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
      : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};
typedef struct dim3 dim3;
