// Global average and max pooling (N, C, H, W) -> (N, C, 1, 1) as reductions over H*W, not as a
// window loop, forward and backward. Design and bandwidth arithmetic: kernels/pool/NOTES.md.
#include "dtypes.cuh"
#include "pool_shape.cuh"
#include "pool_window.cuh"
#include "reduce.cuh"

namespace {

// Threads per block of every forward kernel below (the launchers use the same constant:
// gpuconv/pool/launch_global.py BLOCK).
constexpr int kGlobalBlock = 256;
// Global loads a thread issues before it uses any: the reductions are bound by memory latency
// unless each thread keeps several loads in flight (kernels/pool/NOTES.md "Global pooling:
// loads in flight").
constexpr int kBatch = 8;

template <class A, bool kMax>
__device__ __forceinline__ void accumulate(gc::MaxArg<A>& m, A& sum, A value, int index) {
  if (kMax) {
    gc::max_arg_step(m, value, index);
  } else {
    sum += value;
  }
}

template <class A, bool kMax>
__device__ __forceinline__ A result_of(const gc::MaxArg<A>& m, A sum, int HW) {
  return kMax ? m.value : sum / static_cast<A>(HW);
}

// The (plane, position) of a thread's element in a run of consecutive planes of HW elements,
// moved on by one step of the block (kGlobalBlock elements) without a division.
struct RunCursor {
  int plane, k, step_planes, step_k, HW;

  __device__ explicit RunCursor(int hw)
      : plane(threadIdx.x / hw), k(threadIdx.x % hw), step_planes(kGlobalBlock / hw),
        step_k(kGlobalBlock % hw), HW(hw) {}

  __device__ __forceinline__ void advance() {
    k += step_k;
    plane += step_planes;
    if (k >= HW) {
      k -= HW;
      ++plane;
    }
  }
};

}  // namespace

// NCHW, small planes (the launcher's STAGE_BYTES rule; ResNet's 7x7 among them): the block's
// `planes_per_block` consecutive planes are one contiguous run of planes_per_block * HW elements.
// Phase 1 copies the run into shared memory as the accumulator type: consecutive threads load
// consecutive elements (coalesced whatever HW is), kBatch loads in flight per thread. Plane j
// sits at j * plane_stride, with plane_stride = HW rounded up to odd so that in phase 2, where
// thread j scans plane j in index order (PyTorch's sequential rule) and writes its output, the
// warp's reads fall in distinct banks. Each thread's (plane, position) moves by a RunCursor.
template <class T, bool kMax, bool kIndices>
__global__ void global_pool2d_nchw_staged(const T* __restrict__ x, T* __restrict__ y,
                                          long long* __restrict__ indices, int planes, int HW,
                                          int planes_per_block, int plane_stride) {
  using A = gc::acc_t<T>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* stage = reinterpret_cast<A*>(smem_raw);
  const RunCursor first(HW);
  for (long long plane0 = (long long)blockIdx.x * planes_per_block; plane0 < planes;
       plane0 += (long long)gridDim.x * planes_per_block) {
    const int run_planes = (int)min((long long)planes_per_block, planes - plane0);
    const int run = run_planes * HW;
    const T* src = x + plane0 * HW;
    RunCursor at = first;
    // main loop
    for (int base = threadIdx.x; base < run; base += kBatch * kGlobalBlock) {
      A v[kBatch];
      int slot[kBatch];
#pragma unroll
      for (int j = 0; j < kBatch; ++j) {
        const int e = base + j * kGlobalBlock;
        v[j] = e < run ? gc::to_acc(src[e]) : A(0);
        slot[j] = at.plane * plane_stride + at.k;
        at.advance();
      }
#pragma unroll
      for (int j = 0; j < kBatch; ++j) {
        if (base + j * kGlobalBlock < run) stage[slot[j]] = v[j];
      }
    }
    __syncthreads();
    // epilogue
    if ((int)threadIdx.x < run_planes) {
      const A* own = stage + threadIdx.x * plane_stride;
      gc::MaxArg<A> m = gc::max_arg_empty<A>();
      A sum = A(0);
      for (int i = 0; i < HW; ++i) accumulate<A, kMax>(m, sum, own[i], i);
      const long long out = plane0 + threadIdx.x;
      y[out] = gc::from_acc<T>(result_of<A, kMax>(m, sum, HW));
      if (kIndices) indices[out] = m.index;
    }
    __syncthreads();  // the stage is rewritten by the next run
  }
}

// NCHW, larger planes: a group of `warps_per_plane` warps (1, 2, 4 or 8, chosen by the launcher
// from H*W) reduces one plane: lanes stride through the plane (coalesced), kBatch loads in flight
// each, a warp butterfly combines the lanes, and for groups of several warps shared memory
// combines the warps in a fixed order. kGlobalBlock / 32 / warps_per_plane planes per block.
// Within one thread the scan runs in index order, so the sequential max rule (max_takes) and the
// order-free combine (max_arg_combine) agree.
template <class T, bool kMax, bool kIndices>
__global__ void global_pool2d_nchw(const T* __restrict__ x, T* __restrict__ y,
                                   long long* __restrict__ indices, int planes, int HW,
                                   int warps_per_plane) {
  using A = gc::acc_t<T>;
  constexpr int kWarps = kGlobalBlock / gc::kWarpSize;
  __shared__ A partial_value[kWarps];
  __shared__ int partial_index[kWarps];
  const int warp = threadIdx.x / gc::kWarpSize;
  const int lane = threadIdx.x % gc::kWarpSize;
  const int planes_per_block = kWarps / warps_per_plane;
  const int group = warp / warps_per_plane;
  const int warp_in_group = warp % warps_per_plane;
  const int group_lane = warp_in_group * gc::kWarpSize + lane;
  const int group_threads = warps_per_plane * gc::kWarpSize;
  // The trip count is uniform over the block, so every thread reaches every barrier.
  for (long long base = (long long)blockIdx.x * planes_per_block; base < planes;
       base += (long long)gridDim.x * planes_per_block) {
    const long long plane = base + group;
    const bool active = plane < planes;
    gc::MaxArg<A> m = gc::max_arg_empty<A>();
    A sum = A(0);
    if (active) {
      const T* src = x + plane * HW;
      // main loop: the lane's elements k0, k0 + group_threads, ... in index order
      for (int k0 = group_lane; k0 < HW; k0 += kBatch * group_threads) {
        A v[kBatch];
#pragma unroll
        for (int j = 0; j < kBatch; ++j) {
          v[j] = j * group_threads < HW - k0 ? gc::to_acc(src[k0 + j * group_threads]) : A(0);
        }
#pragma unroll
        for (int j = 0; j < kBatch; ++j) {
          if (j * group_threads < HW - k0) {
            accumulate<A, kMax>(m, sum, v[j], k0 + j * group_threads);
          }
        }
      }
    }
    if (kMax) {
      m = gc::warp_max_arg(m);
    } else {
      sum = gc::warp_sum(sum);
    }
    if (warps_per_plane > 1) {
      if (lane == 0) {
        partial_value[warp] = kMax ? m.value : sum;
        partial_index[warp] = m.index;
      }
      __syncthreads();
      if (warp_in_group == 0 && lane == 0) {
        for (int j = 1; j < warps_per_plane; ++j) {
          if (kMax) {
            gc::MaxArg<A> other;
            other.value = partial_value[warp + j];
            other.index = partial_index[warp + j];
            m = gc::max_arg_combine(m, other);
          } else {
            sum += partial_value[warp + j];
          }
        }
      }
      __syncthreads();  // the partials are rewritten by the next iteration
    }
    // epilogue
    if (active && group_lane == 0) {
      y[plane] = gc::from_acc<T>(result_of<A, kMax>(m, sum, HW));
      if (kIndices) indices[plane] = m.index;
    }
  }
}

// NHWC: an image's H*W pixels are rows of C contiguous channels. The block's kGlobalBlock threads
// are `lanes` x `rows` (lane fastest; both powers of two, chosen by the launcher): a thread owns
// kVector consecutive channels (kVectors: one access of 16 bytes per pixel, 4 floats, 8 halves
// or 2 doubles, where C and x's alignment allow it; else 1), the lanes of a row cover
// lanes * kVector consecutive channels (coalesced), and the rows stride over the pixels with
// kPixels pixels in flight per thread, each thread's in index order. The rows' partials then
// combine in shared memory in a fixed tree. Grid (ceil(C / (lanes * kVector)), min(N, 65535));
// images beyond gridDim.y loop.
template <class T, bool kMax, bool kIndices, bool kVectors>
__global__ void global_pool2d_nhwc(const T* __restrict__ x, T* __restrict__ y,
                                   long long* __restrict__ indices, int N, int HW, int C,
                                   int lanes) {
  using A = gc::acc_t<T>;
  constexpr int kVector = gc::channel_vector<T, true, kVectors>();
  constexpr int kPixels = kVectors ? 4 : kBatch;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  // [kVector][kGlobalBlock], channel e of thread t at e * kGlobalBlock + t: a warp's stores and
  // loads of one channel are 32 consecutive words (one wavefront). Thread-major ([thread][e])
  // put a warp's accesses kVector words apart: 8-way bank conflicts on every access of the
  // fold with halves, for a fold that is a large share of the work of a small plane (7x7).
  A* partial_value = reinterpret_cast<A*>(smem_raw);
  int* partial_index = reinterpret_cast<int*>(partial_value + kGlobalBlock * kVector);
  const int lane = threadIdx.x % lanes;
  const int row = threadIdx.x / lanes;
  const int rows = kGlobalBlock / lanes;
  const int c0 = (blockIdx.x * lanes + lane) * kVector;
  // With vectors C % kVector == 0: a vector is wholly inside the channels or wholly outside.
  const bool active = c0 < C;
  for (int n = blockIdx.y; n < N; n += gridDim.y) {
    gc::MaxArg<A> m[kVector];
    A sum[kVector];
#pragma unroll
    for (int e = 0; e < kVector; ++e) {
      m[e] = gc::max_arg_empty<A>();
      sum[e] = A(0);
    }
    if (active) {
      const T* src = x + (long long)n * HW * C + c0;
      // main loop
      for (int k0 = row; k0 < HW; k0 += kPixels * rows) {
        A v[kPixels][kVector];
#pragma unroll
        for (int j = 0; j < kPixels; ++j) {
          const int k = k0 + j * rows;
          if (j * rows < HW - k0) {
            if constexpr (kVectors) {
              gc::load_packed<T, kVector>(src + (long long)k * C, v[j]);
            } else {
              v[j][0] = gc::to_acc(src[(long long)k * C]);
            }
          }
        }
#pragma unroll
        for (int j = 0; j < kPixels; ++j) {
          if (j * rows < HW - k0) {
#pragma unroll
            for (int e = 0; e < kVector; ++e) {
              accumulate<A, kMax>(m[e], sum[e], v[j][e], k0 + j * rows);
            }
          }
        }
      }
    }
#pragma unroll
    for (int e = 0; e < kVector; ++e) {
      partial_value[e * kGlobalBlock + threadIdx.x] = kMax ? m[e].value : sum[e];
      if (kMax) partial_index[e * kGlobalBlock + threadIdx.x] = m[e].index;
    }
    // Rows [half, 2 * half) fold into rows [0, half): the same tree for every launch of a shape.
    for (int half = rows / 2; half > 0; half /= 2) {
      __syncthreads();
      if (row < half) {
#pragma unroll
        for (int e = 0; e < kVector; ++e) {
          const int own = e * kGlobalBlock + threadIdx.x;
          const int other = own + half * lanes;  // the same lane, row + half
          if (kMax) {
            gc::MaxArg<A> o;
            o.value = partial_value[other];
            o.index = partial_index[other];
            m[e] = gc::max_arg_combine(m[e], o);
            partial_value[own] = m[e].value;
            partial_index[own] = m[e].index;
          } else {
            sum[e] += partial_value[other];
            partial_value[own] = sum[e];
          }
        }
      }
    }
    // epilogue
    if (row == 0 && active) {
#pragma unroll
      for (int e = 0; e < kVector; ++e) {
        const int out = n * C + c0 + e;
        y[out] = gc::from_acc<T>(result_of<A, kMax>(m[e], sum[e], HW));
        if (kIndices) indices[out] = m[e].index;
      }
    }
    __syncthreads();  // the partials are rewritten by the next image
  }
}

// Backward: grad_input is grad_output broadcast over each plane, divided by H*W (average), or
// placed at the recorded argmax with zeros elsewhere (max). Elementwise, hence deterministic; a
// stream of stores, each thread writing many elements from one value per plane it holds.

// The gradient one element of plane `plane` at position k receives.
template <class A, bool kMax>
__device__ __forceinline__ A spread(A g, long long argmax, int k) {
  if (kMax) return argmax == (long long)k ? g : A(0);
  return g;
}

// NCHW: a block writes a run of `planes_per_block` consecutive planes (one contiguous range of
// grad_input). Its first threads read the run's gradients (and argmaxes) into shared memory;
// then consecutive threads store consecutive elements, their (plane, position) tracked by a
// RunCursor as in the staged forward.
template <class T, bool kMax>
__global__ void global_pool2d_backward_nchw(const T* __restrict__ grad_output,
                                            const long long* __restrict__ indices,
                                            T* __restrict__ grad_input, int planes, int HW,
                                            int planes_per_block) {
  using A = gc::acc_t<T>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  long long* run_argmax = reinterpret_cast<long long*>(smem_raw);          // kMax only
  A* run_grad = reinterpret_cast<A*>(smem_raw + (kMax ? planes_per_block * sizeof(long long) : 0));
  const RunCursor first(HW);
  for (long long plane0 = (long long)blockIdx.x * planes_per_block; plane0 < planes;
       plane0 += (long long)gridDim.x * planes_per_block) {
    const int run_planes = (int)min((long long)planes_per_block, planes - plane0);
    for (int j = threadIdx.x; j < run_planes; j += kGlobalBlock) {
      const A g = gc::to_acc(grad_output[plane0 + j]);
      run_grad[j] = kMax ? g : g / static_cast<A>(HW);
      if (kMax) run_argmax[j] = indices[plane0 + j];
    }
    __syncthreads();
    const int run = run_planes * HW;
    T* dst = grad_input + plane0 * HW;
    RunCursor at = first;
    // main loop
    for (int e = threadIdx.x; e < run; e += kGlobalBlock) {
      const long long argmax = kMax ? run_argmax[at.plane] : 0;
      dst[e] = gc::from_acc<T>(spread<A, kMax>(run_grad[at.plane], argmax, at.k));
      at.advance();
    }
    __syncthreads();  // the run's values are rewritten by the next run
  }
}

// NHWC: the forward's geometry (256 threads = channel lanes x pixel rows, grid (channel chunks,
// images)): a thread holds the gradients (and argmaxes) of its kVector channels in registers and
// stores them over its pixels, 16 bytes per pixel with kVectors.
template <class T, bool kMax, bool kVectors>
__global__ void global_pool2d_backward_nhwc(const T* __restrict__ grad_output,
                                            const long long* __restrict__ indices,
                                            T* __restrict__ grad_input, int N, int HW, int C,
                                            int lanes) {
  using A = gc::acc_t<T>;
  constexpr int kVector = gc::channel_vector<T, true, kVectors>();
  const int lane = threadIdx.x % lanes;
  const int row = threadIdx.x / lanes;
  const int rows = kGlobalBlock / lanes;
  const int c0 = (blockIdx.x * lanes + lane) * kVector;
  if (c0 >= C) return;   // no barrier below
  for (int n = blockIdx.y; n < N; n += gridDim.y) {
    A g[kVector];
    long long argmax[kVector];
#pragma unroll
    for (int e = 0; e < kVector; ++e) {
      const int at = n * C + c0 + e;
      const A value = gc::to_acc(grad_output[at]);
      g[e] = kMax ? value : value / static_cast<A>(HW);
      argmax[e] = kMax ? indices[at] : 0;
    }
    T* dst = grad_input + (long long)n * HW * C + c0;
    // main loop
    for (int k = row; k < HW; k += rows) {
      A out[kVector];
#pragma unroll
      for (int e = 0; e < kVector; ++e) out[e] = spread<A, kMax>(g[e], argmax[e], k);
      gc::store_rounded<T, kVector>(dst + (long long)k * C, out);   // one element without vectors
    }
  }
}
