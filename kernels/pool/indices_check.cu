// Validation of the indices a max-pooling backward (or max_unpool2d) is handed: one pass that
// finds the first index the forward cannot have produced, so that the front can raise a
// ValueError naming it. The front queues its kernels behind this pass and reads the answer after
// them (one synchronization, the host's work overlapping the GPU's); every kernel that reads
// indices is memory-safe with any value (switch_scatter.cu, max_unpool.cu skip an index outside
// the plane; the gathers only compare), and a bad call's result is dropped.
//
// The rule an index obeys is pool_indices.cuh's (switch_scatter.cu applies it too, as it reads
// the indices, where the backward is a scatter); this kernel replaces ~20 elementwise NumPy-style
// array passes with one read of the indices (GPU: 8 bytes per output).
#include "pool_indices.cuh"
#include "pool_shape.cuh"

// outputs_after_first_bad: (number of outputs) - (the smallest flat output position holding a
// bad index), 0 when there is none: an atomicMax, the same answer in any thread order, into an
// int the launcher zero-fills (a memset, where the smallest position itself would need a fill
// kernel). Outputs of 2^31 or more are refused by the launcher (32-bit offsets, design.md).
template <bool kNHWC, int kWindow>
__global__ void pool_indices_check(const long long* __restrict__ indices,
                                   int* __restrict__ outputs_after_first_bad,
                                   GC_POOL_SHAPE_PARAMS, int allow_no_index) {
  GC_POOL_SHAPE_NAMES;
  const int total = N * C * P * Q;
  for (long long i = gc::grid_first(); i < total; i += gc::grid_stride()) {
    // kWindow is a template argument so that the plane-only scan skips the decoding
    const gc::Coord4 o = kWindow == gc::kIndexInPlane
                             ? gc::Coord4{}
                             : gc::unflatten<kNHWC>((int)i, GC_POOL_SHAPE.output);
    if (!gc::pool_index_is_good(indices[i], o, GC_POOL_SHAPE, kWindow, allow_no_index != 0)) {
      gc::note_bad_index(outputs_after_first_bad, total, (int)i);
    }
  }
}
