// Stub of CUDA's <vector_types.h> for the CPU executor: everything it declares is already provided by the
// force-included simt.h, which every simulated translation unit sees first.
#pragma once
