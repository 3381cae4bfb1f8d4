// Shared memory for the simulator's tests: poisoning and dynamic shared memory.

// before[t] = the static shared cell's value read before any write (NaN: 0xFF bytes);
// ibefore[t] likewise for an int cell (-1); after[t] = the value after writes and a barrier.
extern "C" __global__ void poisoned_static(float* before, int* ibefore, float* after) {
  __shared__ float f[64];
  __shared__ int i[64];
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  before[t] = f[threadIdx.x];
  ibefore[t] = i[threadIdx.x];
  __syncthreads();
  f[threadIdx.x] = static_cast<float>(t);
  __syncthreads();
  after[t] = f[(threadIdx.x + 1) % blockDim.x];
}

// Dynamic shared memory of shared_mem bytes: read before writing (NaN), then a reversal.
extern "C" __global__ void dynamic_reverse(float* before, float* out) {
  extern __shared__ __align__(16) float buffer[];
  const int n = blockDim.x;
  const int t = blockIdx.x * n + threadIdx.x;
  before[t] = buffer[threadIdx.x];
  __syncthreads();
  buffer[threadIdx.x] = static_cast<float>(t);
  __syncthreads();
  out[t] = buffer[n - 1 - threadIdx.x];
}

// Two views of one dynamic buffer, as kernels carve several arrays out of it.
extern "C" __global__ void dynamic_carved(int* out, int floats) {
  extern __shared__ __align__(16) unsigned char raw[];
  float* a = reinterpret_cast<float*>(raw);
  int* b = reinterpret_cast<int*>(raw + floats * sizeof(float));
  a[threadIdx.x] = 1.5f * threadIdx.x;
  b[threadIdx.x] = 3 * threadIdx.x;
  __syncthreads();
  const int u = blockDim.x - 1 - threadIdx.x;
  out[threadIdx.x] = static_cast<int>(a[u] * 2.0f) + b[u];
}

// 64 KiB of static shared memory: more than any GPU gives a block without opt-in.
extern "C" __global__ void too_much_static(float* out) {
  __shared__ float big[16384];
  big[threadIdx.x] = 1.0f;
  out[threadIdx.x] = big[threadIdx.x];
}

// A static table (1 KiB) next to dynamic tiles: on a GPU their sum counts against 48 KiB
// unless the kernel's max_dynamic_shared_size_bytes was set.
extern "C" __global__ void static_and_dynamic(float* out) {
  __shared__ float table[256];
  extern __shared__ __align__(16) float tiles[];
  table[threadIdx.x] = 2.0f;
  tiles[threadIdx.x] = 3.0f;
  __syncthreads();
  out[threadIdx.x] = table[threadIdx.x] * tiles[threadIdx.x];
}

// Reads float pairs through a float2*: on a GPU each load needs an 8-byte aligned address.
extern "C" __global__ void pair_sums(float* out, const float2* pairs) {
  out[threadIdx.x] = pairs[threadIdx.x].x + pairs[threadIdx.x].y;
}

// Writes through a pointer only when it is not null (a None argument).
extern "C" __global__ void maybe_null(int* flag, const float* maybe) {
  flag[0] = maybe == nullptr ? 1 : 2;
}

// Every scalar kind, copied out: checks the argument packing and size checks.
extern "C" __global__ void scalars(double* out, signed char a, short b, int c, long long d,
                                   unsigned char e, unsigned short f, unsigned g,
                                   unsigned long long h, float i, double j, bool k) {
  out[0] = a; out[1] = b; out[2] = c; out[3] = static_cast<double>(d); out[4] = e; out[5] = f;
  out[6] = g; out[7] = static_cast<double>(h); out[8] = i; out[9] = j; out[10] = k ? 1.0 : 0.0;
}
