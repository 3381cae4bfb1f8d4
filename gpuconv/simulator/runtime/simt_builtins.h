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
