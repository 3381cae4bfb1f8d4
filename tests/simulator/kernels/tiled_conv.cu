// A small tiled 2-D convolution (stride 1, "same" padding), the simulator's benchmark kernel:
// each block computes one TILE x TILE output tile of one (n, k) plane, staging the input tile
// with its halo and the filter in shared memory once per input channel (two barriers each).
template <int TILE, int R>
__global__ void tiled_conv(float* __restrict__ y, const float* __restrict__ x,
                           const float* __restrict__ w, int C, int H, int W, int K) {
  constexpr int HALO = TILE + R - 1;
  __shared__ float tile[HALO][HALO];
  __shared__ float filter[R][R];
  const int n = blockIdx.z / K;
  const int k = blockIdx.z % K;
  const int p0 = blockIdx.y * TILE, q0 = blockIdx.x * TILE;
  const int ty = threadIdx.y, tx = threadIdx.x;
  const int tid = ty * TILE + tx;
  float acc = 0.0f;
  for (int c = 0; c < C; ++c) {
    // main loop: stage the input tile (zero outside the image) and the filter plane
    for (int i = tid; i < HALO * HALO; i += TILE * TILE) {
      const int h = p0 + i / HALO - R / 2, v = q0 + i % HALO - R / 2;
      tile[i / HALO][i % HALO] =
          (h >= 0 && h < H && v >= 0 && v < W) ? x[((n * C + c) * H + h) * W + v] : 0.0f;
    }
    if (tid < R * R) filter[tid / R][tid % R] = w[(k * C + c) * R * R + tid];
    __syncthreads();
    for (int r = 0; r < R; ++r)
      for (int s = 0; s < R; ++s) acc += tile[ty + r][tx + s] * filter[r][s];
    __syncthreads();
  }
  // epilogue
  const int p = p0 + ty, q = q0 + tx;
  if (p < H && q < W) y[((n * K + k) * H + p) * W + q] = acc;
}
