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

// __half / __nv_bfloat16 -> integer conversions: cvt saturates (inf to the type's limits) and
// sends NaN to 0; a plain C++ cast of an out-of-range float is undefined (x86 gives INT_MIN).
extern "C" __global__ void half_to_int(int* rz, int* rn, unsigned* urz, long long* llrz, int* brz,
                                       const unsigned short* bits, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const __half h = __ushort_as_half(bits[i]);
  rz[i] = __half2int_rz(h);
  rn[i] = __half2int_rn(h);
  urz[i] = __half2uint_rz(h);
  llrz[i] = __half2ll_rz(h);
  brz[i] = __bfloat162int_rz(__float2bfloat16_rn(__half2float(h)));
}
