// Stub of CUDA's <cuda_runtime.h> for the CPU executor: everything it declares is already provided by the
// force-included simt.h, which every simulated translation unit sees first.
#pragma once
