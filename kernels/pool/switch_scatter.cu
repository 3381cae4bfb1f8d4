// The backward of max pooling (windowed or adaptive) as a scatter through the forward's switches:
// one thread per output element adds its gradient to the input element its index names, into a
// zero-filled grad_input. PyTorch's formulation; the launcher (gpuconv/pool/launch_switches.py)
// takes it instead of the gathers of max_pool.cu / adaptive_pool.cu where it is exact or allowed:
//   kAtomic false: windows or bins that do not overlap, so no two outputs name the same input:
//                  plain stores, bitwise reproducible (the deterministic mode takes it too);
//   kAtomic true:  overlapping windows in the default mode: float atomics into D = the
//                  accumulator type (float for half types, rounded once afterwards by
//                  roi/accumulator.cu), as PyTorch does.
// The gather visits every input element and tests each window that covers it (~100 instructions
// per input on the H100, 9-18 % of the copy bandwidth); the scatter touches each output once plus
// a zero-fill at memset speed (kernels/pool/NOTES.md "Max-pooling backward as a scatter").
// The indices a caller handed over are checked here as they are read (`window` >= 0: the rule
// of pool_indices.cuh, the first bad one noted in outputs_after_first_bad as by
// indices_check.cu, whose separate pass over the indices this saves); the front reads that
// answer after the launches and drops a bad call's result. The forward's own indices
// (`window` -1) are not checked. Either way an index outside the plane is skipped (memory
// safety); -1 (a window wholly in the padding) names nothing.
#include "dtypes.cuh"
#include "pool_indices.cuh"
#include "pool_shape.cuh"
#include "pool_window.cuh"

template <class T, class D, bool kNHWC, bool kAtomic>
__global__ void pool_switch_scatter(const T* __restrict__ grad_output,
                                    const long long* __restrict__ indices, D* grad_input,
                                    GC_POOL_SHAPE_PARAMS, int* outputs_after_first_bad,
                                    int window, int allow_no_index) {
  GC_POOL_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  const int total = N * C * P * Q;
  const int ps = gc::pixel_stride<kNHWC>(C);
  for (long long i = gc::grid_first(); i < total; i += gc::grid_stride()) {
    const long long index = indices[i];
    const gc::Coord4 o = gc::unflatten<kNHWC>((int)i, GC_POOL_SHAPE.output);
    if (window >= 0 &&
        !gc::pool_index_is_good(index, o, GC_POOL_SHAPE, window, allow_no_index != 0)) {
      gc::note_bad_index(outputs_after_first_bad, total, (int)i);
      continue;
    }
    if ((unsigned long long)index >= (unsigned long long)H * W) continue;
    // index < H * W < 2^31 (the launchers refuse larger tensors)
    D* target = grad_input + gc::plane_offset<kNHWC>(o.n, o.c, C, H, W) + (int)index * ps;
    // + 0: the gather's sum starts from +0, so a -0 gradient lands as +0 in both
    const A g = gc::to_acc(grad_output[i]) + A(0);
    if (kAtomic) {
      atomicAdd(target, static_cast<D>(g));
    } else {
      *target = gc::from_acc<D>(g);
    }
  }
}
