// The tensor-core helpers of kernels/common/mma_ptx.cuh on one warp: a (16 x 16) and b (16 x 8)
// of T, row-major in global memory, staged k-major in shared memory as the GEMM tiles store
// them (rows padded by 8 elements), then ldmatrix.x4.trans fragments and one mma.m16n8k16:
// d (16 x 8, float, row-major) = c + a * b. The fragments are written out too (frag_a: 4 per
// lane, frag_b: 4 per lane, the ldmatrix of b covering n 0-15 of a 16 x 16 b tile whose
// columns 8-15 are b's columns again).
#include "mma_ptx.cuh"

template <class T>
__global__ void mma_tile(float* d, unsigned* frag_a, unsigned* frag_b, const T* a, const T* b,
                         const float* c) {
  constexpr int LDA = 16 + 8;  // k-major: tile_a[k * LDA + m]
  constexpr int LDB = 16 + 8;  // k-major: tile_b[k * LDB + n], n 0-15
  __shared__ __align__(16) T tile_a[16 * LDA];
  __shared__ __align__(16) T tile_b[16 * LDB];
  const int lane = threadIdx.x;
  for (int e = lane; e < 16 * 16; e += 32) {
    const int k = e / 16, mn = e % 16;
    tile_a[k * LDA + mn] = a[mn * 16 + k];
    tile_b[k * LDB + mn] = b[k * 8 + mn % 8];
  }
  __syncwarp();
  const int row = lane % 8;
  unsigned fa[4], fb[4];
  gc::ldmatrix_x4_trans(fa, tile_a + ((lane / 16) * 8 + row) * LDA + ((lane / 8) % 2) * 8);
  gc::ldmatrix_x4_trans(fb, tile_b + (((lane / 8) % 2) * 8 + row) * LDB + (lane / 16) * 8);
  float acc[4];
  for (int i = 0; i < 4; ++i) {
    frag_a[4 * lane + i] = fa[i];
    frag_b[4 * lane + i] = fb[i];
    acc[i] = c[(lane / 4 + (i / 2) * 8) * 8 + 2 * (lane % 4) + i % 2];
  }
  const unsigned b_frag[2] = {fb[0], fb[1]};
  gc::mma_m16n8k16<T>(acc, fa, b_frag);
  for (int i = 0; i < 4; ++i) d[(lane / 4 + (i / 2) * 8) * 8 + 2 * (lane % 4) + i % 2] = acc[i];
}
