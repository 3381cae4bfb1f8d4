// The tensor-core helpers of kernels/common/ptx.cuh on one warp: a (16 x 16) and b (16 x 8)
// of T, row-major in global memory, staged in shared memory both ways the GEMM tiles store
// them (rows padded by 8 elements): k-major (stored rows = k, read with ldmatrix.x4.trans) and
// along k (stored rows = m or n, read with ldmatrix.x4), then one mma.m16n8k16:
// d (16 x 8, float, row-major) = c + a * b. The fragments of both ldmatrix forms are written
// out (frag_*[0..127] transposed, frag_*[128..255] not; 4 per lane; the ldmatrix of b covers
// n 0-15 of a 16 x 16 b tile whose columns 8-15 are b's columns again).
#include "ptx.cuh"

template <class T>
__global__ void mma_tile(float* d, unsigned* frag_a, unsigned* frag_b, const T* a, const T* b,
                         const float* c) {
  constexpr int LD = 16 + 8;
  __shared__ __align__(16) T a_k_major[16 * LD];   // [k * LD + m]
  __shared__ __align__(16) T b_k_major[16 * LD];   // [k * LD + n]
  __shared__ __align__(16) T a_along_k[16 * LD];   // [m * LD + k]
  __shared__ __align__(16) T b_along_k[16 * LD];   // [n * LD + k]
  const int lane = threadIdx.x;
  for (int e = lane; e < 16 * 16; e += 32) {
    const int k = e / 16, mn = e % 16;
    a_k_major[k * LD + mn] = a[mn * 16 + k];
    b_k_major[k * LD + mn] = b[k * 8 + mn % 8];
    a_along_k[mn * LD + k] = a[mn * 16 + k];
    b_along_k[mn * LD + k] = b[k * 8 + mn % 8];
  }
  __syncwarp();
  // Matrix l / 8, stored row l % 8: A's matrices (m 0-7 | 8-15) x (k 0-7 | 8-15) in the order
  // a[0..3]; B's (k 0-7 | 8-15) x (n 0-7 | 8-15) in the order b[0], b[1] of n 0-7, then n 8-15.
  const int row = lane % 8, first = ((lane / 8) % 2) * 8, second = (lane / 16) * 8;
  unsigned fa[4], fb[4], fa_k[4], fb_k[4];
  gc::ldmatrix_x4<true>(fa, a_k_major + (second + row) * LD + first);
  gc::ldmatrix_x4<true>(fb, b_k_major + (first + row) * LD + second);
  gc::ldmatrix_x4<false>(fa_k, a_along_k + (first + row) * LD + second);
  gc::ldmatrix_x4<false>(fb_k, b_along_k + (second + row) * LD + first);
  float acc[4];
  for (int i = 0; i < 4; ++i) {
    frag_a[4 * lane + i] = fa[i];
    frag_b[4 * lane + i] = fb[i];
    frag_a[128 + 4 * lane + i] = fa_k[i];
    frag_b[128 + 4 * lane + i] = fb_k[i];
    acc[i] = c[(lane / 4 + (i / 2) * 8) * 8 + 2 * (lane % 4) + i % 2];
  }
  const unsigned b_frag[2] = {fb[0], fb[1]};
  gc::mma_m16n8k16<T>(acc, fa, b_frag);
  for (int i = 0; i < 4; ++i) d[(lane / 4 + (i / 2) * 8) * 8 + 2 * (lane % 4) + i % 2] = acc[i];
}
