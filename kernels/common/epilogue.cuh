// The fused epilogue of every forward convolution kernel: out = act(conv + bias + residual).
//
// A kernel hands each finished accumulator to Epilogue::store with the logical output
// coordinates (image n, output channel k, output pixel pq = p * Q + q); the strides say where
// that element lives, so one kernel serves NCHW (sK = P*Q, sPQ = 1) and NHWC (sK = 1,
// sPQ = channels) outputs, and an NCHW channel slice of a larger buffer (sN = buffer channels
// * P*Q, the pointer at the slice's first channel) without a copy. The residual is a separate
// tensor of the output's shape in the call's layout, hence its own strides.
//
// Bias, residual and activation are runtime flags, not template parameters: the test is uniform
// across the grid and costs nothing next to the main loop, while templating them would multiply
// every family's instantiations by 16. Offsets are 32-bit: the launchers split the batch so
// that every launch addresses fewer than 2^31 elements of each tensor.
#pragma once

#include "dtypes.cuh"

// The epilogue's kernel parameters, last in every forward kernel's list (in the order of
// gpuconv/conv/launch_common.py `epilogue_args`): output, its strides, bias, residual, its
// strides, flags.
#define GC_EPILOGUE_PARAMS(T)                                                                  \
  T *out, int out_sN, int out_sK, int out_sPQ, const T *bias, const T *residual, int res_sN,  \
      int res_sK, int res_sPQ, int epilogue

// Those parameters gathered into a gc::Epilogue<T> (inside a kernel declared with them).
#define GC_EPILOGUE(T)                                                                        \
  gc::Epilogue<T> {                                                                           \
    out, out_sN, out_sK, out_sPQ, bias, residual, res_sN, res_sK, res_sPQ, epilogue           \
  }

namespace gc {

// Bits of the `epilogue` kernel argument (mirrored in gpuconv/conv/launch_common.py).
constexpr int EPILOGUE_BIAS = 1;
constexpr int EPILOGUE_RESIDUAL = 2;
constexpr int EPILOGUE_ACTIVATION_SHIFT = 2;  // activation code in bits 2..3
constexpr int ACTIVATION_NONE = 0;
constexpr int ACTIVATION_RELU = 1;
constexpr int ACTIVATION_TANH = 2;
constexpr int ACTIVATION_SIGMOID = 3;

__device__ __forceinline__ float tanh_acc(float v) { return tanhf(v); }
__device__ __forceinline__ double tanh_acc(double v) { return tanh(v); }
__device__ __forceinline__ float exp_acc(float v) { return expf(v); }
__device__ __forceinline__ double exp_acc(double v) { return exp(v); }

template <class A>
__device__ __forceinline__ A activate(A v, int activation) {
  switch (activation) {
    case ACTIVATION_RELU:
      // `v < 0 ? 0 : v`, not `v > 0 ? v : 0`: NaN propagates, as in np.maximum and PyTorch.
      return v < A(0) ? A(0) : v;
    case ACTIVATION_TANH:
      return tanh_acc(v);
    case ACTIVATION_SIGMOID: {
      // exp of -|v| only, so that neither branch overflows to inf/inf.
      const A e = exp_acc(v < A(0) ? v : -v);
      return v < A(0) ? e / (A(1) + e) : A(1) / (A(1) + e);
    }
    default:
      return v;
  }
}

template <class T>
struct Epilogue {
  T* out;
  int out_sN, out_sK, out_sPQ;
  const T* bias;      // [K]; read only when flags has EPILOGUE_BIAS
  const T* residual;  // output-shaped; read only when flags has EPILOGUE_RESIDUAL
  int res_sN, res_sK, res_sPQ;
  int flags;

  // The output value of element (n, k, pq) from its accumulator.
  __device__ __forceinline__ T finish(int n, int k, int pq, acc_t<T> v) const {
    if (flags & EPILOGUE_BIAS) v += to_acc(bias[k]);
    if (flags & EPILOGUE_RESIDUAL) v += to_acc(residual[n * res_sN + k * res_sK + pq * res_sPQ]);
    return from_acc<T>(activate(v, flags >> EPILOGUE_ACTIVATION_SHIFT));
  }

  __device__ __forceinline__ void store(int n, int k, int pq, acc_t<T> v) const {
    out[n * out_sN + k * out_sK + pq * out_sPQ] = finish(n, k, pq, v);
  }

  // Whether store_vector<L> may run: output channels contiguous (out_sK == 1: NHWC), and the
  // output, its batch stride and its pixel stride aligned to pack_elements<T, L>() elements;
  // the same of the bias and the residual where the flags read them. The caller also keeps k a
  // multiple of L. Uniform over the grid.
  template <int L>
  __device__ __forceinline__ bool vectors_fit() const {
    constexpr int E = pack_elements<T, L>();
    bool fit = out_sK == 1 && out_sN % E == 0 && out_sPQ % E == 0 && aligned<E>(out);
    if (flags & EPILOGUE_BIAS) fit = fit && aligned<E>(bias);
    if (flags & EPILOGUE_RESIDUAL)
      fit = fit && res_sK == 1 && res_sN % E == 0 && res_sPQ % E == 0 && aligned<E>(residual);
    return fit;
  }

  // Channels k .. k + L - 1 of one output pixel, bias and residual read and the output written
  // in vectors (load_packed / store_rounded), each channel finished as finish() does (same bits):
  // only where vectors_fit<L>() (or the launcher guarantees as much) and k is a multiple of L.
  template <int L>
  __device__ __forceinline__ void store_vector(int n, int k, int pq,
                                               const acc_t<T> (&v)[L]) const {
    acc_t<T> sum[L];
#pragma unroll
    for (int j = 0; j < L; ++j) sum[j] = v[j];
    if (flags & EPILOGUE_BIAS) add_vector(sum, bias + k);
    if (flags & EPILOGUE_RESIDUAL) add_vector(sum, residual + n * res_sN + k + pq * res_sPQ);
#pragma unroll
    for (int j = 0; j < L; ++j) sum[j] = activate(sum[j], flags >> EPILOGUE_ACTIVATION_SHIFT);
    store_rounded<T, L>(out + n * out_sN + k + pq * out_sPQ, sum);
  }

 private:
  template <int E>
  __device__ __forceinline__ static bool aligned(const T* p) {
    return reinterpret_cast<unsigned long long>(p) % (E * sizeof(T)) == 0;
  }

  template <int L>
  __device__ __forceinline__ static void add_vector(acc_t<T> (&sum)[L], const T* p) {
    acc_t<T> terms[L];
    load_packed<T, L>(p, terms);
#pragma unroll
    for (int j = 0; j < L; ++j) sum[j] += terms[j];
  }
};

// Channels k .. k + L - 1 of output pixel (n, pq), of which the first `valid` exist, through an
// Epilogue or a SplitKOutput: one vector store where `packed` (the caller has checked
// out.vectors_fit and keeps k a multiple of L) and all L exist, else one store per channel.
template <int L, class Out, class A>
__device__ __forceinline__ void store_channels(const Out& out, bool packed, int n, int k, int pq,
                                               int valid, const A (&v)[L]) {
  if (packed && valid >= L) {
    out.template store_vector<L>(n, k, pq, v);
    return;
  }
#pragma unroll
  for (int j = 0; j < L; ++j)
    if (j < valid) out.store(n, k + j, pq, v[j]);
}

}  // namespace gc
