// Built-in index variables. Each module owns its copies (hidden, so kernel code reads them
// without indirection); the scheduler writes the running fiber's values through the pointers it
// receives at launch (simt_index_vars), so a value read after any barrier or collective is the
// current thread's.
#pragma once

__attribute__((visibility("hidden"))) uint3 threadIdx;
__attribute__((visibility("hidden"))) uint3 blockIdx;
__attribute__((visibility("hidden"))) dim3 blockDim;
__attribute__((visibility("hidden"))) dim3 gridDim;

static constexpr int warpSize = 32;

// __launch_bounds__(max_threads[, min_blocks[, max_cluster]]): _rewrite.py turns the annotation
// into this call at the top of the kernel's body; a GPU refuses a launch with more threads per
// block than max_threads.
inline void simt_launch_bounds(long long max_threads, long long = 0, long long = 0,
                               const char* function = __builtin_FUNCTION(),
                               const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  if (static_cast<long long>(blockDim.x) * blockDim.y * blockDim.z > max_threads)
    simt_launch_bounds_exceeded(max_threads, function, file, line);
}
