// Global average and max pooling (N, C, H, W) -> (N, C, 1, 1) as reductions over H*W, not as a
// window loop, forward and backward. Design and bandwidth arithmetic: kernels/pool/NOTES.md.
#include "dtypes.cuh"
#include "pool_shape.cuh"
#include "pool_window.cuh"
#include "reduce.cuh"

namespace {

constexpr int kNchwBlock = 256;                       // threads per block of the NCHW kernel
constexpr int kNchwWarps = kNchwBlock / gc::kWarpSize;

template <class A, bool kMax>
__device__ __forceinline__ void accumulate(gc::MaxArg<A>& m, A& sum, A value, int index) {
  if (kMax) {
    gc::max_arg_step(m, value, index);
  } else {
    sum += value;
  }
}

}  // namespace

// NCHW: each (n, c) plane is H*W contiguous elements. A group of `warps_per_plane` warps (1, 2, 4
// or 8, chosen by the launcher from H*W) reduces one plane: lanes stride through the plane
// (coalesced), a warp butterfly combines the lanes, and for groups of several warps shared
// memory combines the warps in a fixed order. Block = 256 threads, 8 / warps_per_plane planes.
// Within one thread the scan runs in index order, so the sequential max rule (max_takes) and the
// order-free combine (max_arg_combine) agree.
template <class T, bool kMax, bool kIndices>
__global__ void global_pool2d_nchw(const T* __restrict__ x, T* __restrict__ y,
                                   long long* __restrict__ indices, int planes, int HW,
                                   int warps_per_plane) {
  using A = gc::acc_t<T>;
  __shared__ A partial_value[kNchwWarps];
  __shared__ int partial_index[kNchwWarps];
  const int warp = threadIdx.x / gc::kWarpSize;
  const int lane = threadIdx.x % gc::kWarpSize;
  const int planes_per_block = kNchwWarps / warps_per_plane;
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
      // main loop
      for (int k = group_lane; k < HW; k += group_threads) {
        accumulate<A, kMax>(m, sum, gc::to_acc(src[k]), k);
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
      y[plane] = gc::from_acc<T>(kMax ? m.value : sum / static_cast<A>(HW));
      if (kIndices) indices[plane] = m.index;
    }
  }
}

// NHWC: the H*W pixels of an image are rows of C contiguous channels. Block (32, rows):
// threadIdx.x walks 32 consecutive channels (one coalesced load per pixel and warp), threadIdx.y
// strides over the pixels; shared memory then combines the `rows` partials of each channel in a
// fixed order. Grid (ceil(C / 32), min(N, 65535)); images beyond gridDim.y loop.
template <class T, bool kMax, bool kIndices>
__global__ void global_pool2d_nhwc(const T* __restrict__ x, T* __restrict__ y,
                                   long long* __restrict__ indices, int N, int HW, int C) {
  using A = gc::acc_t<T>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* partial_value = reinterpret_cast<A*>(smem_raw);
  int* partial_index = reinterpret_cast<int*>(partial_value + blockDim.x * blockDim.y);
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  const int slot = threadIdx.y * blockDim.x + threadIdx.x;
  for (int n = blockIdx.y; n < N; n += gridDim.y) {
    gc::MaxArg<A> m = gc::max_arg_empty<A>();
    A sum = A(0);
    if (c < C) {
      const T* src = x + (long long)n * HW * C + c;
      // main loop
      for (int k = threadIdx.y; k < HW; k += blockDim.y) {
        accumulate<A, kMax>(m, sum, gc::to_acc(src[(long long)k * C]), k);
      }
    }
    partial_value[slot] = kMax ? m.value : sum;
    partial_index[slot] = m.index;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
      for (int j = 1; j < (int)blockDim.y; ++j) {
        const int other_slot = j * blockDim.x + threadIdx.x;
        if (kMax) {
          gc::MaxArg<A> other;
          other.value = partial_value[other_slot];
          other.index = partial_index[other_slot];
          m = gc::max_arg_combine(m, other);
        } else {
          sum += partial_value[other_slot];
        }
      }
      // epilogue
      const int out = n * C + c;
      y[out] = gc::from_acc<T>(kMax ? m.value : sum / static_cast<A>(HW));
      if (kIndices) indices[out] = m.index;
    }
    __syncthreads();  // the partials are rewritten by the next image
  }
}

// Backward, one thread per input element: average spreads grad_output / (H*W) over the plane,
// max sends it to the recorded argmax. Elementwise, hence deterministic.
template <class T, bool kNHWC>
__global__ void global_avg_pool2d_backward(const T* __restrict__ grad_output,
                                           T* __restrict__ grad_input,
                                           GC_POOL_SHAPE_PARAMS) {
  GC_POOL_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  const int total = N * C * H * W;
  for (long long i = gc::grid_first(); i < total; i += gc::grid_stride()) {
    const gc::Coord4 o = gc::unflatten<kNHWC>((int)i, GC_POOL_SHAPE.input);
    const A g = gc::to_acc(grad_output[o.n * C + o.c]);
    grad_input[i] = gc::from_acc<T>(g / static_cast<A>(H * W));
  }
}

template <class T, bool kNHWC>
__global__ void global_max_pool2d_backward(const T* __restrict__ grad_output,
                                           const long long* __restrict__ indices,
                                           T* __restrict__ grad_input,
                                           GC_POOL_SHAPE_PARAMS) {
  GC_POOL_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  const int total = N * C * H * W;
  for (long long i = gc::grid_first(); i < total; i += gc::grid_stride()) {
    const gc::Coord4 o = gc::unflatten<kNHWC>((int)i, GC_POOL_SHAPE.input);
    const int plane = o.n * C + o.c;
    const bool is_argmax = indices[plane] == (long long)o.h * W + o.w;
    grad_input[i] = gc::from_acc<T>(is_argmax ? gc::to_acc(grad_output[plane]) : A(0));
  }
}
