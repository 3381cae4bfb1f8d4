// __half and __nv_bfloat16 conversions and arithmetic, raw bits out, for comparison with NumPy.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

extern "C" __global__ void float_to_half(unsigned short* bits, float* back, const float* x, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const __half h = __float2half_rn(x[i]);
  bits[i] = __half_as_ushort(h);
  back[i] = __half2float(h);
}

extern "C" __global__ void double_to_half(unsigned short* bits, const double* x, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) bits[i] = __half_as_ushort(__double2half(x[i]));
}

extern "C" __global__ void float_to_bf16(unsigned short* bits, float* back, const float* x, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const __nv_bfloat16 h = __float2bfloat16_rn(x[i]);
  bits[i] = __bfloat16_as_ushort(h);
  back[i] = __bfloat162float(h);
}

// sum/product/quotient of half pairs, computed in half precision.
extern "C" __global__ void half_arithmetic(__half* out, const __half* a, const __half* b, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  out[3 * i + 0] = __hadd(a[i], b[i]);
  out[3 * i + 1] = __hmul(a[i], b[i]);
  out[3 * i + 2] = a[i] / b[i];
}

// The project's conversion helpers (kernels/common/dtypes.cuh) as a kernel would use them.
#include "dtypes.cuh"
template <class T>
__global__ void round_trip(T* out, const T* in, float scale, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = gc::from_acc<T>(gc::to_acc<T>(in[i]) * scale);
}
