// Force-included (g++ -include) before every CUDA source compiled for the CPU executor.
//
// It turns CUDA C++ into C++17 that g++ accepts: qualifiers, built-in index variables, vector
// types, __half/__nv_bfloat16, intrinsics, atomics, barriers, warp collectives, cp.async
// copies (simt_async_copy.h) and wgmma multiply-adds (simt_wgmma.h). The collectives and
// barriers call into the runtime library (scheduler.cpp), which runs each CUDA thread as a
// fiber. `__shared__` declarations are not handled here: gpuconv/simulator/_rewrite.py rewrites
// them in the preprocessed text.
// __CUDA_ARCH__ stays undefined (simulator.md, convention 4); __SIMT_CPU__ marks this executor.
#pragma once

#ifndef __SIMT_CPU__
#define __SIMT_CPU__ 1
#endif
#ifndef __CUDACC__
#define __CUDACC__ 1
#endif

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmath>
#include <limits>
#include <type_traits>
#include <utility>

#include "simt_abi.h"
#include "simt_qualifiers.h"
#include "simt_vector_types.h"
#include "simt_builtins.h"
#include "simt_fp16.h"
#include "simt_intrinsics.h"
#include "simt_atomics.h"
#include "simt_sync.h"
#include "simt_async_copy.h"
#include "simt_wgmma.h"
#include "simt_launch.h"
