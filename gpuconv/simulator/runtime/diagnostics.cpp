// Descriptions for reports written from outside the scheduler: the sanitizer runner's death
// callback asks which CUDA thread was running and which shared variable an address belongs to.
#include <cstdio>

#include "runtime_internal.h"

using namespace simt;

extern "C" int simt_describe_current(char* out, size_t capacity) {
  const Fiber* f = g.current;
  if (!f) return 0;
  snprintf(out, capacity, "block (%u,%u,%u) thread (%u,%u,%u) of %s", g.block.x, g.block.y,
           g.block.z, f->tid.x, f->tid.y, f->tid.z, g.kernel);
  return 1;
}

extern "C" int simt_describe_address(const void* address, char* out, size_t capacity,
                                     size_t* distance) {
  const char* a = static_cast<const char*>(address);
  bool found = false;
  auto consider = [&](const char* what, const void* memory, size_t size) {
    const char* lo = static_cast<const char*>(memory);
    if (!lo) return;
    const size_t d = a < lo ? static_cast<size_t>(lo - a)
                   : a >= lo + size ? static_cast<size_t>(a - (lo + size)) : 0;
    if (d > 4096 || (found && d >= *distance)) return;
    found = true;
    *distance = d;
    if (a < lo)
      snprintf(out, capacity, "%zu bytes before %s (%zu bytes)", d, what, size);
    else if (a >= lo + size)
      snprintf(out, capacity, "%zu bytes after the end of %s (%zu bytes)", d, what, size);
    else
      snprintf(out, capacity, "inside %s (%zu bytes), at offset %zu", what, size,
               static_cast<size_t>(a - lo));
  };
  char what[192];
  for (const SharedCell& cell : g.cells) {
    snprintf(what, sizeof what, "the __shared__ variable '%s'", cell.name);
    consider(what, cell.memory, cell.size);
  }
  if (g.config) consider("the dynamic shared memory (extern __shared__)", g.dynamic_shared,
                         g.config->shared_mem);
  return found ? 1 : 0;
}
