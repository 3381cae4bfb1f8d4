// Block barriers and index built-ins for the simulator's tests.
#include <cuda_runtime.h>

// Each round every thread publishes a value in shared memory, waits at a barrier and reads the
// value of another thread; a second barrier keeps the next round's writes after all reads.
// out[r * n + t] = value read by thread t in round r; counts[r] = __syncthreads_count of
// "t is odd" in round r, flags[2r] / flags[2r+1] = _and / _or of "value read > 0".
extern "C" __global__ void barrier_exchange(int* out, int* counts, int* flags, int rounds) {
  __shared__ int slots[256];
  const int n = blockDim.x;
  const int t = threadIdx.x;
  int value = t + 1;
  for (int r = 0; r < rounds; ++r) {
    slots[t] = value;
    const int odd = __syncthreads_count(t % 2 == 1);
    value = slots[(t * 7 + 3 + r) % n];
    out[r * n + t] = value;
    const int all_positive = __syncthreads_and(value > 0);
    const int any_big = __syncthreads_or(value > n);
    if (t == 0) {
      counts[r] = odd;
      flags[2 * r] = all_positive;
      flags[2 * r + 1] = any_big;
    }
    value = value * 3 + r;
  }
}

// Every thread writes its global linear index and its built-in indices (3-D grid and block).
extern "C" __global__ void indices_3d(int* linear, int* idx) {
  const int block = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  const int thread = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
  const int threads = blockDim.x * blockDim.y * blockDim.z;
  const int i = block * threads + thread;
  linear[i] = i;
  const unsigned v[12] = {threadIdx.x, threadIdx.y, threadIdx.z, blockIdx.x, blockIdx.y,
                          blockIdx.z, blockDim.x, blockDim.y, blockDim.z, gridDim.x, gridDim.y,
                          gridDim.z};
  for (int k = 0; k < 12; ++k) idx[i * 12 + k] = static_cast<int>(v[k]);
}

// Several instantiations of one template in one module.
template <class T, int SCALE>
__global__ void scaled_copy(T* out, const T* in, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = static_cast<T>(static_cast<double>(in[i]) * SCALE);
}

// Reads its left neighbour's shared value with no barrier in between: a deliberate race.
extern "C" __global__ void racy_left_neighbour(float* out) {
  __shared__ float cell[256];
  const int t = threadIdx.x;
  cell[t] = static_cast<float>(t);
  out[t] = t > 0 ? cell[t - 1] : -1.0f;  // missing __syncthreads() before this read
}

// The same with the barrier: right in every order, and clean under ThreadSanitizer.
extern "C" __global__ void synced_left_neighbour(float* out) {
  __shared__ float cell[256];
  const int t = threadIdx.x;
  cell[t] = static_cast<float>(t);
  __syncthreads();
  out[t] = t > 0 ? cell[t - 1] : -1.0f;
}
