// The simulator's model of cp.async (gpuconv/simulator/runtime/simt_async_copy.h). These kernels
// call the simulator's functions directly, as the CPU branches of kernels/common/mma_ptx.cuh do;
// they compile for the CPU executor only (a GPU runs the helpers' inline PTX instead).
#include <cuda_runtime.h>

// How pipeline() breaks the rules (0: it does not).
enum PipelineBug {
  kCorrect = 0,
  kNoWait = 1,                // consumes tiles without cp.async.wait_group
  kShortWait = 2,             // waits for one group too few
  kNoBarrierAfterWait = 3,    // reads other threads' copies before the barrier that follows their
                              // waits (the barrier comes after the reads instead)
  kIssueBeforeBarrier = 4,    // refills a stage that other threads may still read
};

constexpr int kMaxTile = 256;  // floats per tile (blockDim.x * BYTES / 4)

// A STAGES-deep cp.async pipeline over `tiles` tiles per block of BYTES-byte copies (one per
// thread and tile), as a multistage GEMM loads its operands: prologue of STAGES-1 groups, then
// per tile wait_group<STAGES-2>, __syncthreads, refill the stage read in the previous iteration,
// commit, consume. The input is `n` floats; copies past its end are zero-filled (src-size
// shorter than the copy, 0 for a copy wholly past the end). Each thread writes its positions of
// the tile in reverse order, so it reads elements that other threads copied:
// out[tile * TILE + j] = padded input[tile * TILE + TILE - 1 - j].
template <int BYTES, int STAGES>
__global__ void pipeline(float* out, const float* in, int n, int tiles, int bug) {
  constexpr int E = BYTES / 4;  // floats per copy
  __shared__ __align__(16) float stage[STAGES * kMaxTile];
  const int tile_size = blockDim.x * E;
  const int t0 = blockIdx.x * tiles;
  auto issue = [&](int t) {
    const int first = (t0 + t) * tile_size + threadIdx.x * E;
    const int valid = n - first < 0 ? 0 : n - first > E ? E : n - first;
    simt_async_copy(&stage[(t % STAGES) * tile_size + threadIdx.x * E], in + first, BYTES,
                    4 * valid);
  };
  for (int t = 0; t < STAGES - 1; ++t) {
    if (t < tiles) issue(t);
    simt_async_commit();  // empty groups past the last tile keep the count of groups right
  }
  for (int t = 0; t < tiles; ++t) {
    const int refill = t + STAGES - 1;  // goes to the stage that iteration t - 1 read
    if (bug == kIssueBeforeBarrier) {
      if (refill < tiles) issue(refill);
      simt_async_commit();
    }
    if (bug != kNoWait) simt_async_wait(bug == kShortWait ? STAGES - 1 : STAGES - 2);
    if (bug != kNoBarrierAfterWait) __syncthreads();
    if (bug != kIssueBeforeBarrier) {
      if (refill < tiles) issue(refill);
      simt_async_commit();
    }
    const float* current = &stage[(t % STAGES) * tile_size];
    for (int e = 0; e < E; ++e) {
      const int j = threadIdx.x * E + e;
      out[(t0 + t) * tile_size + j] = current[tile_size - 1 - j];
    }
    if (bug == kNoBarrierAfterWait) __syncthreads();  // the refills stay after all reads
  }
}

// One copy per thread into its own 32-byte slot of shared memory, waited for, then the whole
// slot written to out[32 * thread ..]: the copy's bytes at dst_offset, the untouched rest still
// the 0xFF bytes of fresh shared memory. The source is src + 16 * thread + src_offset, or a null
// pointer when null_src is set.
extern "C" __global__ void single_copy(unsigned char* out, const unsigned char* src,
                                       int dst_offset, int src_offset, int bytes, int src_bytes,
                                       int null_src) {
  __shared__ __align__(16) unsigned char slots[32 * 64];
  unsigned char* slot = &slots[threadIdx.x * 32];
  const unsigned char* from = null_src ? nullptr : src + threadIdx.x * 16 + src_offset;
  simt_async_copy(slot + dst_offset, from, bytes, src_bytes);  // the copy under test
  simt_async_commit();
  simt_async_wait(0);
  for (int i = 0; i < 32; ++i) out[threadIdx.x * 32 + i] = slot[i];
}

// Per thread, 16-byte copies of src[0..15], src[16..31], src[32..47] into slots 0, 1, 2 of four:
// the first and second each committed as a group (with an empty group after the second when
// empty_group is set), the third never committed. After wait_group `pending` the four slots go to
// out[64 * thread ..] (slot 3 is never written).
extern "C" __global__ void group_accounting(unsigned char* out, const unsigned char* src,
                                            int pending, int empty_group) {
  __shared__ __align__(16) unsigned char slots[64 * 64];
  unsigned char* mine = &slots[threadIdx.x * 64];
  simt_async_copy(mine, src, 16, 16);
  simt_async_commit();
  simt_async_copy(mine + 16, src + 16, 16, 16);
  simt_async_commit();
  if (empty_group) simt_async_commit();
  simt_async_copy(mine + 32, src + 32, 16, 16);
  simt_async_wait(static_cast<unsigned>(pending));
  for (int i = 0; i < 64; ++i) out[threadIdx.x * 64 + i] = mine[i];
}

// cp.async copies to shared memory only: this one targets global memory.
extern "C" __global__ void copy_to_global(float* out, const float* in) {
  simt_async_copy(out + threadIdx.x * 4, in + threadIdx.x * 4, 16, 16);  // not shared memory
  simt_async_commit();
  simt_async_wait(0);
}

// Block 0's threads issue and commit copies and return without waiting; the later blocks wait
// with nothing of their own in flight, then write their (never filled) cell: NaN. A copy that
// outlived its block would land in memory the block no longer owns.
extern "C" __global__ void abandoned_copies(float* out, const float* in) {
  __shared__ __align__(16) float cell[64 * 4];
  const int t = threadIdx.x;
  if (blockIdx.x == 0) {
    simt_async_copy(&cell[t * 4], in + t * 4, 16, 16);
    simt_async_commit();
    return;  // no wait: the copy is dropped
  }
  simt_async_wait(0);
  for (int e = 0; e < 4; ++e) out[(blockIdx.x * blockDim.x + t) * 4 + e] = cell[t * 4 + e];
}
