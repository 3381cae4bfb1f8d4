// Deliberately broken kernels: each must become a Python exception naming the CUDA thread.
#include <cassert>

extern "C" __global__ void null_write(int* out, int bad_block, int bad_thread) {
  int* target = out + blockIdx.x * blockDim.x + threadIdx.x;
  if (blockIdx.x == bad_block && threadIdx.x == bad_thread) target = nullptr;
  *target = 1;
}

extern "C" __global__ void traps(int bad_thread) {
  if (threadIdx.x == bad_thread) __trap();
}

extern "C" __global__ void asserts(const int* values) {
  assert(values[threadIdx.x] >= 0);
}

__device__ int deep(int n) {
  volatile char frame[4096];
  frame[n % 4096] = static_cast<char>(n);
  return n == 0 ? 0 : deep(n - 1) + frame[n % 4096];
}
extern "C" __global__ void recursion(int* out, int depth) { out[0] = deep(depth); }

// Thread `leaver` returns early; the others wait at the barrier for it forever.
extern "C" __global__ void early_return(int* out, int leaver) {
  if (static_cast<int>(threadIdx.x) == leaver) return;
  __syncthreads();  // the barrier `leaver` never reaches
  out[threadIdx.x] = 1;
}

// Half the block waits at one barrier, half at another.
extern "C" __global__ void divergent_barrier(int* out) {
  if (threadIdx.x % 2 == 0) {
    __syncthreads();  // even threads' barrier
  } else {
    out[threadIdx.x] = 1;
    __syncthreads();  // odd threads' barrier
  }
}

// Reads one element past the end of `in` (thread n-1) for AddressSanitizer.
extern "C" __global__ void global_overrun(float* out, const float* in, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = in[i + 1];
}

// Reads one element past the end of a static shared array.
extern "C" __global__ void shared_overrun(float* out) {
  __shared__ float tile[32];
  tile[threadIdx.x] = 1.0f;
  __syncthreads();
  out[threadIdx.x] = tile[threadIdx.x + 1];
}

// The project's vector access (kernels/common/dtypes.cuh: gc::pack_at): thread `bad_thread`
// loads 4 floats `offset` elements into `values`, the others at a multiple of 4. A GPU faults
// on a misaligned vector access ("misaligned address"); so does the simulator.
#include "dtypes.cuh"
extern "C" __global__ void vector_load(float* out, const float* values, int bad_thread,
                                       int offset) {
  float v[4];
  const int at = static_cast<int>(threadIdx.x) == bad_thread ? offset : 4 * threadIdx.x;
  gc::load_vector<float, 4>(values + at, v);
  out[threadIdx.x] = v[0] + v[1] + v[2] + v[3];
}
