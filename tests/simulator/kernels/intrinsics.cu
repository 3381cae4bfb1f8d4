// Built-in types, macros and intrinsics of the force-included runtime header.
#include <cuda_runtime.h>
#include <math_constants.h>

static_assert(sizeof(float4) == 16 && alignof(float4) == 16, "float4 as in CUDA");
static_assert(sizeof(float2) == 8 && alignof(float2) == 8, "float2 as in CUDA");
static_assert(sizeof(float3) == 12 && alignof(float3) == 4, "float3 as in CUDA");
static_assert(sizeof(double2) == 16 && alignof(double2) == 16, "double2 as in CUDA");
static_assert(sizeof(int4) == 16 && sizeof(uchar4) == 4 && sizeof(short2) == 4, "vector sizes");
static_assert(sizeof(__half) == 2 && sizeof(__half2) == 4 && sizeof(__nv_bfloat16) == 2, "halves");
static_assert(warpSize == 32, "warp size");

// out[0..]: which executor macros are set, then intrinsic results for input x.
extern "C" __global__ void intrinsics(float* out, const float* x) {
  int k = 0;
#if defined(__CUDA_ARCH__)
  out[k++] = 1.0f;
#else
  out[k++] = 0.0f;
#endif
#if defined(__SIMT_CPU__) && defined(__CUDACC__)
  out[k++] = 1.0f;
#else
  out[k++] = 0.0f;
#endif
  const float v = x[threadIdx.x];
  const float4 q = make_float4(v, 2 * v, 3 * v, 4 * v);
  out[k++] = q.x + q.y + q.z + q.w;
  out[k++] = __expf(v);
  out[k++] = rsqrtf(v);
  out[k++] = __fdividef(1.0f, v);
  out[k++] = fmaf(v, v, 1.0f);
  out[k++] = static_cast<float>(__float_as_int(v) == *reinterpret_cast<const int*>(&x[threadIdx.x]));
  out[k++] = __int_as_float(__float_as_int(v));
  out[k++] = static_cast<float>(__popc(__float_as_uint(v)));
  out[k++] = static_cast<float>(__clz(static_cast<int>(v)));
  out[k++] = static_cast<float>(__float2int_rn(v + 0.5f));  // ties to even
  out[k++] = static_cast<float>(min(static_cast<int>(v), 2) + max(3u, 1u));
  out[k++] = fminf(v, CUDART_INF_F) + (isinf(INFINITY) ? 1.0f : 0.0f);
  out[k++] = isnan(NAN) ? 1.0f : 0.0f;
  out[k++] = __ldg(&x[threadIdx.x]);
  out[k++] = __saturatef(v - 1.0f);
  out[k++] = static_cast<float>(__brev(1u) == 0x80000000u);
  out[k++] = static_cast<float>(__byte_perm(0x33221100u, 0x77665544u, 0x5140u) == 0x55114400u);
  out[k++] = static_cast<float>(blockDim.x * gridDim.x);
}
