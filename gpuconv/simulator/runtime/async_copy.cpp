// Each CUDA thread's queue of issued cp.async copies (the model: simt_async_copy.h). Only the
// bookkeeping lives here; the force-included header reads the sources, poisons and finally
// writes the destinations, so that those accesses are the CUDA thread's for the sanitizers.
// Copies still queued when a thread returns are never written (as on a GPU, a copy nobody waits
// for is not guaranteed to land); the queue is emptied for every new block.
#include <cstdio>

#include "runtime_internal.h"

namespace simt {

void reset_async_copies(Fiber* f) {
  f->async_copies.clear();  // keeps the capacity for the next block
  f->async_head = 0;
  f->async_commits = 0;
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
  f->async_copies.push_back(AsyncCopy{*copy, f->async_commits});
}

extern "C" void simt_async_commit_group(void) {
  ++require_fiber("cp.async.commit_group")->async_commits;
}

extern "C" unsigned simt_async_complete(unsigned pending, simt_async_copy_record* out,
                                        unsigned capacity) {
  Fiber* f = require_fiber("cp.async.wait_group");
  // Groups numbered below `done` are complete: all committed ones but the newest `pending`.
  const uint64_t done = f->async_commits > pending ? f->async_commits - pending : 0;
  auto& queue = f->async_copies;
  unsigned n = 0;
  while (n < capacity && f->async_head < queue.size() && queue[f->async_head].group < done)
    out[n++] = queue[f->async_head++].copy;
  if (f->async_head == queue.size()) {
    queue.clear();
    f->async_head = 0;
  } else if (f->async_head >= 64 && 2 * f->async_head >= queue.size()) {
    // A pipeline that always leaves groups in flight never empties its queue: drop the
    // completed front now and then so that it does not grow without bound.
    queue.erase(queue.begin(), queue.begin() + static_cast<std::ptrdiff_t>(f->async_head));
    f->async_head = 0;
  }
  return n;
}
