// The wgmma helpers of kernels/common/ptx.cuh on one warpgroup (128 threads): a (64 x W) and
// b (N x W) of T, row-major in global memory (W = ROW_BYTES / 2 elements of k per row), staged
// in shared memory as the PTX ISA's ROW_BYTES swizzle mode lays out a K-major tile (16-byte
// chunk c of row r at chunk c ^ (r / (128 / ROW_BYTES)) % (ROW_BYTES / 16), the stage on a
// 1024-byte boundary; written here from the rule, not from the project's loaders), then one
// wgmma of k16 step `step` (k = 16 step .. 16 step + 15):
// d (64 x N, float, row-major) = c + a[:, k] * b[:, k]^T, through the accumulator layout of the
// PTX ISA (warp w, lane l: d[i] at row 16 w + l / 4 + 8 ((i % 4) / 2), column
// 8 (i / 4) + 2 (l % 4) + i % 2). With `peek`, the accumulators read between the commit and the
// wait go to `early` (the simulator's model computes at the wait: they are still c there; on a
// GPU such a read is undefined, so the GPU test passes peek = 0). `misalign` starts both tiles
// one row late (off the swizzle pattern: the simulator's model traps).
#include "ptx.cuh"

template <class T, int N, int ROW_BYTES>
__global__ void wgmma_tile(float* d, float* early, const T* a, const T* b, const float* c,
                           int step, int peek, int misalign) {
  constexpr int W = ROW_BYTES / 2;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const unsigned misalignment = gc::shared_address(smem_raw) % 1024;
  unsigned char* base = smem_raw + (misalignment ? 1024 - misalignment : 0);
  T* a_tile = reinterpret_cast<T*>(base + misalign * ROW_BYTES);
  T* b_tile = reinterpret_cast<T*>(base + 64 * ROW_BYTES + 1024 + misalign * ROW_BYTES);
  const int tid = threadIdx.x;
  auto swizzled = [](int row, int k) {   // element offset of (row, k) in a tile
    const int chunk = (2 * k) / 16, rows_per_line = 128 / ROW_BYTES;
    const int moved = chunk ^ ((row / rows_per_line) % (ROW_BYTES / 16));
    return row * W + moved * 8 + k % 8;
  };
  for (int e = tid; e < 64 * W; e += 128) a_tile[swizzled(e / W, e % W)] = a[e];
  for (int e = tid; e < N * W; e += 128) b_tile[swizzled(e / W, e % W)] = b[e];
  gc::fence_async_shared();
  __syncthreads();
  const int warp = tid / 32, lane = tid % 32;
  float acc[N / 2];
  for (int i = 0; i < N / 2; ++i) {
    const int row = 16 * warp + lane / 4 + 8 * ((i % 4) / 2);
    const int col = 8 * (i / 4) + 2 * (lane % 4) + i % 2;
    acc[i] = c[row * N + col];
  }
  gc::wgmma_fence_operands(acc);
  gc::wgmma_fence();
  // The k16 step as the kernels reach it: the tile's reference moved by 32 bytes per step.
  gc::wgmma_m64nNk16<T, N, ROW_BYTES>(acc, gc::WgmmaTileRef<ROW_BYTES>(a_tile).at(32 * step),
                                      gc::WgmmaTileRef<ROW_BYTES>(b_tile).at(32 * step));
  gc::wgmma_commit();
  if (peek) {
    for (int i = 0; i < N / 2; ++i) {
      const int row = 16 * warp + lane / 4 + 8 * ((i % 4) / 2);
      const int col = 8 * (i / 4) + 2 * (lane % 4) + i % 2;
      early[row * N + col] = acc[i];
    }
  }
  gc::wgmma_wait<0>(acc);
  for (int i = 0; i < N / 2; ++i) {
    const int row = 16 * warp + lane / 4 + 8 * ((i % 4) / 2);
    const int col = 8 * (i / 4) + 2 * (lane % 4) + i % 2;
    d[row * N + col] = acc[i];
  }
}
