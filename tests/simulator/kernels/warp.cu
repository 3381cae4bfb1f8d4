// Warp collectives for the simulator's tests. A lane takes part only when its bit is set in
// `mask`; out[] of the other lanes keeps its initial value. Blocks hold several warps.
enum { IDX = 0, UP = 1, DOWN = 2, XOR = 3 };

template <int MODE, class T>
__global__ void shuffle(T* out, const T* in, const int* operand, unsigned mask, int width) {
  const int lane = threadIdx.x % 32;
  if (!((mask >> lane) & 1u)) return;
  const T v = in[threadIdx.x];
  const int b = operand[threadIdx.x];
  T r;
  if (MODE == IDX) r = __shfl_sync(mask, v, b, width);
  else if (MODE == UP) r = __shfl_up_sync(mask, v, static_cast<unsigned>(b), width);
  else if (MODE == DOWN) r = __shfl_down_sync(mask, v, static_cast<unsigned>(b), width);
  else r = __shfl_xor_sync(mask, v, b, width);
  out[threadIdx.x] = r;
}

// votes[3 * t + 0..2] = ballot, any, all over the participating lanes' predicates.
extern "C" __global__ void votes(unsigned* out, const int* predicate, unsigned mask) {
  const int lane = threadIdx.x % 32;
  if (!((mask >> lane) & 1u)) return;
  const int p = predicate[threadIdx.x];
  out[3 * threadIdx.x + 0] = __ballot_sync(mask, p);
  out[3 * threadIdx.x + 1] = static_cast<unsigned>(__any_sync(mask, p));
  out[3 * threadIdx.x + 2] = static_cast<unsigned>(__all_sync(mask, p));
}

// match_any / match_all / reduce_add / reduce_max over the participating lanes.
extern "C" __global__ void match_reduce(unsigned* out, const int* value, unsigned mask) {
  const int lane = threadIdx.x % 32;
  if (!((mask >> lane) & 1u)) return;
  const int v = value[threadIdx.x];
  int pred = -1;
  out[5 * threadIdx.x + 0] = __match_any_sync(mask, v);
  out[5 * threadIdx.x + 1] = __match_all_sync(mask, v, &pred);
  out[5 * threadIdx.x + 2] = static_cast<unsigned>(pred);
  out[5 * threadIdx.x + 3] = static_cast<unsigned>(__reduce_add_sync(mask, v));
  out[5 * threadIdx.x + 4] = static_cast<unsigned>(__reduce_max_sync(mask, v));
}

// Lanes exchange values through shared memory, ordered by __syncwarp (convention 3).
extern "C" __global__ void syncwarp_exchange(int* out) {
  __shared__ int slot[64];
  const int t = threadIdx.x;
  slot[t] = t * 10;
  __syncwarp();
  out[t] = slot[(t / 32) * 32 + (t + 1) % 32];
}

// Lane 0 waits at the block barrier while the others wait for it in a shuffle: a deadlock.
extern "C" __global__ void shuffle_barrier_deadlock(int* out) {
  if (threadIdx.x == 0) {
    __syncthreads();
    return;
  }
  out[threadIdx.x] = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x), 0);
  __syncthreads();
}
