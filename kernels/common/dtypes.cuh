// Element types of the kernels and their accumulators.
//
// Every kernel template is instantiated for T in {__half, __nv_bfloat16, float, double}
// (gpuconv/_kernels.py: CUDA_TYPES). Half types are loaded into and accumulated in float
// (api.md: "float16 accumulates in float32"); double accumulates in double. Conversions are
// explicit (simulator.md, convention 5): kernels never rely on implicit __half arithmetic.
#pragma once

#include <cuda_fp16.h>
#include <cuda_bf16.h>

// NVRTC has no <math.h>, so INFINITY (used below and by kernels) is undefined there; nvcc and the
// simulator get it from math.h. Same bit pattern as CUDA's math_constants.h CUDART_INF_F.
#if defined(__CUDACC_RTC__) && !defined(INFINITY)
#define INFINITY __int_as_float(0x7f800000)
#endif

namespace gc {

template <class T> struct Acc { using type = float; };
template <> struct Acc<double> { using type = double; };
template <class T> using acc_t = typename Acc<T>::type;

// Which of the 16-bit types T is, where an instruction names it (wgmma's .bf16 / .f16).
template <class T> constexpr bool IS_BFLOAT16 = false;
template <> constexpr bool IS_BFLOAT16<__nv_bfloat16> = true;

template <class T> __device__ __forceinline__ acc_t<T> to_acc(T v) { return v; }
template <> __device__ __forceinline__ float to_acc<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_acc<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <class T> __device__ __forceinline__ T from_acc(acc_t<T> v) { return static_cast<T>(v); }
template <> __device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// An aligned group of N values, for vector loads (ld.shared.v4.f32, ld.global.v4.b32 of 8
// halves, ld.global.v2.f64...).
template <class V, int N>
struct alignas(sizeof(V) * N) Pack {
  V v[N];
};

// The Pack<V, N> at p, for a vector access. A misaligned vector access faults on a GPU
// ("misaligned address"); the simulator traps there too (a plain x86 load would not), so that
// a kernel test catches a launcher or kernel that lets a misaligned array reach a vector path.
// The widest access of sm_80/sm_90 is 16 bytes (a larger Pack, 4 doubles, moves as 16-byte
// halves), so that is the most the hardware asks.
template <int N, class V>
__device__ __forceinline__ void check_pack_alignment(const V* p) {
#if defined(__SIMT_CPU__)
  constexpr unsigned long long ACCESS = sizeof(Pack<V, N>) < 16 ? sizeof(Pack<V, N>) : 16;
  if (reinterpret_cast<unsigned long long>(p) % ACCESS != 0)
    simt_trap("misaligned vector access", __FILE__, __LINE__, __func__);
#endif
}
template <int N, class V>
__device__ __forceinline__ const Pack<V, N>& pack_at(const V* p) {
  check_pack_alignment<N>(p);
  return *reinterpret_cast<const Pack<V, N>*>(p);
}
template <int N, class V>
__device__ __forceinline__ Pack<V, N>& pack_at(V* p) {
  check_pack_alignment<N>(p);
  return *reinterpret_cast<Pack<V, N>*>(p);
}

// Elements of T in the widest access (at most 16 bytes) that covers part of a run of N: 4
// floats or 4 halves of a 4-run, 2 doubles (two accesses). The alignment a run of N needs.
template <class T, int N>
__host__ __device__ constexpr int pack_elements() {
  return N * sizeof(T) > 16 ? int(16 / sizeof(T)) : N;
}

// v[j] = p[j], j < N, as stored (no conversion: int64 indices), in accesses of
// pack_elements<T, N>() elements (p aligned to as many).
template <class T, int N>
__device__ __forceinline__ void load_vector(const T* p, T (&v)[N]) {
  constexpr int E = pack_elements<T, N>();
#pragma unroll
  for (int k = 0; k < N; k += E) {
    const Pack<T, E> pack = pack_at<E>(p + k);
#pragma unroll
    for (int j = 0; j < E; ++j) v[k + j] = pack.v[j];
  }
}

// v[j] = p[j] in the accumulator type, j < N, in the same accesses.
template <class T, int N>
__device__ __forceinline__ void load_packed(const T* p, acc_t<T> (&v)[N]) {
  T stored[N];
  load_vector<T, N>(p, stored);
#pragma unroll
  for (int j = 0; j < N; ++j) v[j] = to_acc(stored[j]);
}

// p[j] = v[j], j < N, in the same accesses.
template <class T, int N>
__device__ __forceinline__ void store_packed(T* p, const T (&v)[N]) {
  constexpr int E = pack_elements<T, N>();
#pragma unroll
  for (int k = 0; k < N; k += E) {
    Pack<T, E> pack;
#pragma unroll
    for (int j = 0; j < E; ++j) pack.v[j] = v[k + j];
    pack_at<E>(p + k) = pack;
  }
}

// p[j] = v[j] rounded to T, j < N, in the same accesses: the counterpart of load_packed, for
// epilogues that finish in the accumulator type.
template <class T, int N>
__device__ __forceinline__ void store_rounded(T* p, const acc_t<T> (&v)[N]) {
  T rounded[N];
#pragma unroll
  for (int j = 0; j < N; ++j) rounded[j] = from_acc<T>(v[j]);
  store_packed<T, N>(p, rounded);
}

// An element of T, loaded from global memory, as an element of a shared-memory operand tile
// of type S: the accumulator type for the CUDA-core tiles (halves become float once, on the
// way in) or T itself for the tensor-core tiles (no conversion at all).
template <class S, class T> struct TileElement {
  static __device__ __forceinline__ S from(T v) { return to_acc(v); }
};
template <class T> struct TileElement<T, T> {
  static __device__ __forceinline__ T from(T v) { return v; }
};
template <class S, class T> __device__ __forceinline__ S to_tile(T v) {
  return TileElement<S, T>::from(v);
}

// The lowest value of the accumulator type: the identity of max pooling. Infinity, not the
// lowest finite value, so that a window of -inf inputs gives -inf as in PyTorch.
template <class A> __device__ __forceinline__ A acc_lowest() { return -static_cast<A>(INFINITY); }

}  // namespace gc
