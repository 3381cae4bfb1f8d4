// CUDA declaration qualifiers, as plain C++ (every function is a host function here).
#pragma once

#define __global__
#define __device__
#define __host__
#define __managed__
#define __grid_constant__
#define __device_builtin__
#define __cudart_builtin__
// Writable, so that a launcher could fill it like cudaMemcpyToSymbol would.
#define __constant__
#define __forceinline__ inline __attribute__((always_inline))
// Note: defining __noinline__ breaks <memory> (libstdc++ spells __attribute__((__noinline__)));
// include such headers before any kernel code that uses __noinline__, as with nvcc.
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
// Kept through preprocessing for _rewrite.py, which turns it into a check in the kernel's body.
#define __launch_bounds__(...) __simt_launch_bounds__(__VA_ARGS__)
#define __maxnreg__(n)
#define __align__(n) __attribute__((aligned(n)))
#define __builtin_align__(n) __attribute__((aligned(n)))
#define __builtin_assume(x) ((void)0)
#define __assume(x) ((void)0)
