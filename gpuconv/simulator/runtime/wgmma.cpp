// Each CUDA thread's queue of issued wgmma.mma_async operations (the model: simt_wgmma.h). As
// for cp.async (async_copy.cpp) only the bookkeeping lives here; the force-included header
// reads the operands and writes the accumulators at the wait, as the CUDA thread's accesses.
// Operations still queued when a thread returns are never computed.
#include "runtime_internal.h"

namespace simt {

void reset_wgmma(Fiber* f) { f->wgmma_ops.reset(); }

}  // namespace simt

using namespace simt;

extern "C" void simt_wgmma_enqueue(const simt_wgmma_record* op) {
  require_fiber("wgmma.mma_async")->wgmma_ops.issue(*op);
}

extern "C" void simt_wgmma_commit_group(void) {
  require_fiber("wgmma.commit_group")->wgmma_ops.commit();
}

extern "C" unsigned simt_wgmma_complete(unsigned pending, simt_wgmma_record* out,
                                        unsigned capacity) {
  return require_fiber("wgmma.wait_group")->wgmma_ops.complete(pending, out, capacity);
}
