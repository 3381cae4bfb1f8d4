// Atomics under contention. Every thread of every block updates the same few words; the CAS
// loops read first, wait for the whole warp (__syncwarp) so that all lanes hold the same stale
// value, and only then retry until their compare-and-swap succeeds.
extern "C" __global__ void atomics(int* ints, unsigned* uints, unsigned long long* ull,
                                   float* floats, double* doubles) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  atomicAdd(&ints[0], 1);
  atomicAdd(&ints[1], t);
  atomicMax(&ints[2], (t * 37) % 1001);
  atomicMin(&ints[3], 500 - (t * 53) % 997);
  atomicSub(&ints[4], 2);
  atomicOr(&uints[0], 1u << (t % 32));
  atomicAnd(&uints[1], ~(1u << (t % 32)));
  atomicInc(&uints[2], 9u);  // counts 0..9 and wraps
  atomicAdd(&ull[0], 1ull << 33);
  atomicAdd(&floats[0], 1.0f);
  atomicAdd(&floats[1], 0.5f * (t % 4));
  atomicAdd(&doubles[0], 0.25);
  atomicExch(&ints[5], 7);

  // CAS loop: add t + 1 to ints[6] (integer) and multiply doubles[1] by 1 + 2^-10 (float bits).
  int old = ints[6];
  __syncwarp();
  for (;;) {
    const int assumed = old;
    old = atomicCAS(&ints[6], assumed, assumed + t + 1);
    if (old == assumed) break;
  }
  unsigned long long* bits = reinterpret_cast<unsigned long long*>(&doubles[1]);
  unsigned long long seen = *bits;
  __syncwarp();
  for (;;) {
    const unsigned long long assumed = seen;
    const double next = __longlong_as_double(static_cast<long long>(assumed)) * (1.0 + 1.0 / 1024);
    seen = atomicCAS(bits, assumed, static_cast<unsigned long long>(__double_as_longlong(next)));
    if (seen == assumed) break;
  }
}

// atomicAdd on __half accumulates with half rounding at each step.
#include <cuda_fp16.h>
extern "C" __global__ void half_atomic(__half* acc, __half value) { atomicAdd(acc, value); }

// Only atomic read-modify-writes on shared words: no data race, so ThreadSanitizer must be quiet.
extern "C" __global__ void contended_adds(int* ints, float* floats, double* doubles) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  atomicAdd(&ints[0], 1);
  atomicMax(&ints[1], t);
  atomicAdd(&floats[0], 1.0f);
  atomicAdd(&doubles[0], 0.5);
}
