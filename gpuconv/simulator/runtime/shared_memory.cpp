// Shared memory of the running block. Each static `__shared__` variable (rewritten by
// _rewrite.py into a simt_shared_cell call) gets a fresh heap cell per block, and dynamic shared
// memory a buffer of exactly the launch's shared_mem bytes; both are filled with 0xFF bytes (NaN
// for floats) so that a read before any write shows up, and are separate heap blocks so that
// AddressSanitizer sees their bounds. The scheduler, not the fiber, allocates a cell: under
// ThreadSanitizer the allocation then happens-before every thread that uses it.
#include <cstdlib>
#include <cstring>

#include "runtime_internal.h"

namespace simt {
namespace {

constexpr size_t kStaticLimit = 48 * 1024;   // static shared memory per block (all GPUs)
// Static + dynamic without the opt-in: the default max_dynamic_shared_size_bytes is 48 KiB less
// the kernel's static bytes.
constexpr size_t kDefaultLimit = 48 * 1024;
constexpr size_t kTotalLimit = 227 * 1024;   // static + dynamic, the most an sm_90 block may opt in
constexpr size_t kCellAlignment = 128;

void* allocate_poisoned(size_t size, size_t align) {
  void* memory = nullptr;
  if (posix_memalign(&memory, align < kCellAlignment ? kCellAlignment : align, size) != 0)
    return nullptr;
  if (memory && size) memset(memory, 0xff, size);
  return memory;
}

}  // namespace

void begin_block_shared_memory() {
  g.cells.clear();
  g.static_bytes = 0;
  g.dynamic_shared = allocate_poisoned(g.config->shared_mem, kCellAlignment);
  if (!g.dynamic_shared && g.config->shared_mem) {
    set_error(SIMT_INTERNAL, nullptr, "cannot allocate %llu bytes of dynamic shared memory",
              static_cast<unsigned long long>(g.config->shared_mem));
    g.aborted = true;
  }
}

void end_block_shared_memory() {
  for (const SharedCell& cell : g.cells) free(cell.memory);
  g.cells.clear();
  free(g.dynamic_shared);
  g.dynamic_shared = nullptr;
}

void serve_shared_cell(Fiber* f) {
  const auto& r = f->request;
  if (g.static_bytes + r.size > kStaticLimit) {
    set_error(SIMT_RESOURCE, f,
              "%s uses more than 48 KiB of static shared memory per block: '%s' (%zu bytes, in %s "
              "at %s:%d) comes on top of %zu bytes",
              g.kernel, r.name, r.size, r.function, r.file, r.line, g.static_bytes);
    set_error_source(r.file, r.line);
    g.aborted = true;
    return;
  }
  const uint64_t opt_in = g.config->shared_opt_in;
  if (!opt_in && g.static_bytes + r.size + g.config->shared_mem > kDefaultLimit) {
    set_error(SIMT_RESOURCE, f,
              "%s uses more than 48 KiB of shared memory per block without the opt-in: %zu "
              "static bytes including '%s' plus %llu dynamic bytes (a GPU's default "
              "max_dynamic_shared_size_bytes is 48 KiB less the static bytes; set it first)",
              g.kernel, g.static_bytes + r.size, r.name,
              static_cast<unsigned long long>(g.config->shared_mem));
    set_error_source(r.file, r.line);
    g.aborted = true;
    return;
  }
  if (g.static_bytes + r.size + (opt_in ? opt_in : g.config->shared_mem) > kTotalLimit) {
    set_error(SIMT_RESOURCE, f,
              "%s uses more than 227 KiB of shared memory per block: %zu static bytes including "
              "'%s' plus %llu dynamic bytes (max_dynamic_shared_size_bytes: a GPU refuses to set "
              "it past 227 KiB less the static bytes)",
              g.kernel, g.static_bytes + r.size, r.name,
              static_cast<unsigned long long>(opt_in ? opt_in : g.config->shared_mem));
    set_error_source(r.file, r.line);
    g.aborted = true;
    return;
  }
  void* memory = allocate_poisoned(r.size, r.align);
  if (!memory) {
    set_error(SIMT_INTERNAL, f, "cannot allocate %zu bytes for the shared variable '%s'", r.size,
              r.name);
    g.aborted = true;
    return;
  }
  g.cells.push_back(SharedCell{r.key, memory, r.size, r.name});
  g.static_bytes += r.size;
  tsan_release(memory);
  f->request.result = memory;
}

bool in_shared_memory(const void* address, size_t size) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(address);
  auto inside = [&](const void* memory, size_t bytes) {
    const uintptr_t lo = reinterpret_cast<uintptr_t>(memory);
    return memory && a >= lo && size <= bytes && a - lo <= bytes - size;
  };
  if (inside(g.dynamic_shared, g.config->shared_mem)) return true;
  for (const SharedCell& cell : g.cells)
    if (inside(cell.memory, cell.size)) return true;
  return false;
}

}  // namespace simt

using namespace simt;

extern "C" void* simt_shared_cell(const void* key, size_t size, size_t align, const char* name,
                                  const char* function, const char* file, int line) {
  for (const SharedCell& cell : g.cells) {
    if (cell.key == key) {
      tsan_acquire(cell.memory);
      return cell.memory;
    }
  }
  Fiber* f = require_fiber("a __shared__ declaration");
  f->request = {key, size, align, name, function, file, line, nullptr};
  f->state = State::Service;
  yield_to_scheduler(f, false);
  tsan_acquire(f->request.result);
  return f->request.result;
}

extern "C" void* simt_dynamic_shared(void) { return g.dynamic_shared; }
