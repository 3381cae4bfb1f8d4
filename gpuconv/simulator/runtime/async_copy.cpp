// Each CUDA thread's queue of issued cp.async copies (the model: simt_async_copy.h). Only the
// bookkeeping lives here; the force-included header reads the sources, poisons and finally
// writes the destinations, so that those accesses are the CUDA thread's for the sanitizers.
// Copies still queued when a thread returns are never written (as on a GPU, a copy nobody waits
// for is not guaranteed to land); the queue is emptied for every new block.
#include <cstdio>

#include "runtime_internal.h"

namespace simt {

void reset_async_copies(Fiber* f) {
  f->async_copies.reset();
}

}  // namespace simt

using namespace simt;

extern "C" void simt_async_enqueue(const simt_async_copy_record* copy, const char* file,
                                   int line) {
  Fiber* f = require_fiber("cp.async");
  if (!in_shared_memory(copy->dst, copy->bytes)) {
    set_error(SIMT_FAULT, f,
              "cp.async: the destination %p (%u bytes) is not inside the block's shared memory "
              "(cp.async copies global to shared memory) at %s:%d, block (%u,%u,%u) thread "
              "(%u,%u,%u) of %s",
              copy->dst, copy->bytes, file, line, g.block.x, g.block.y, g.block.z, f->tid.x,
              f->tid.y, f->tid.z, g.kernel);
    set_error_source(file, line);
    fault_in_fiber(f);
  }
  f->async_copies.issue(*copy);
}

extern "C" void simt_async_commit_group(void) {
  require_fiber("cp.async.commit_group")->async_copies.commit();
}

extern "C" unsigned simt_async_complete(unsigned pending, simt_async_copy_record* out,
                                        unsigned capacity) {
  return require_fiber("cp.async.wait_group")->async_copies.complete(pending, out, capacity);
}
