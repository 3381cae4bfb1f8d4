// CUDA threads as fibers: a pool of mmap'ed stacks with a guard page each, reused across blocks
// and launches, and the switches between the scheduler and a fiber with the annotations the
// sanitizers need (simulator.md: "Each CUDA thread is a fiber on a pooled stack...").
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "runtime_internal.h"

#if defined(SIMT_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(SIMT_TSAN)
#include <sanitizer/tsan_interface.h>
#endif
#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#if defined(__x86_64__)
extern "C" void simt_switch_context(void** save_sp, void* new_sp);
extern "C" void simt_fiber_trampoline();
#endif

namespace simt {
namespace {

struct Stack {
  char* base;    // start of the mapping: the guard page
  size_t total;  // guard page + usable stack
};

std::vector<Stack> pool;
size_t pool_stack_size = 0;

size_t page_size() {
  static const size_t size = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return size;
}

// Inaccessible bytes below each stack: large enough that a function with a big frame (a
// per-thread array) cannot jump over it into other memory. Costs address space only.
size_t guard_size() { return page_size() > 65536 ? page_size() : 65536; }

[[noreturn]] void out_of_memory(const char* what) {
  fprintf(stderr, "gpuconv simulator: cannot allocate %s\n", what);
  abort();
}

// After a switch into a fiber: completes the ASan switch and, when the scheduler switched in,
// remembers the scheduler's stack for the switches back to it.
inline void after_switch_in(void* fake_stack) {
#if defined(SIMT_ASAN)
  const void* bottom = nullptr;
  size_t size = 0;
  __sanitizer_finish_switch_fiber(fake_stack, &bottom, &size);
  if (g.entered_from_scheduler) {
    g.sched_stack_bottom = bottom;
    g.sched_stack_size = size;
  }
#else
  (void)fake_stack;
#endif
  g.entered_from_scheduler = false;
}

void fiber_main(Fiber* f) {
  after_switch_in(nullptr);
  tsan_acquire(&g.block_start_token);
  g.body(g.body_ctx);
  f->state = State::Done;
  --g.live;
  tsan_release(&g.block_end_token);
  on_lane_exit(f);
  park(f, /*dying=*/true);
  abort();  // a finished fiber is never resumed
}

// Where a fiber's stack starts below the top of its mapping. Every stack mapping has the same
// alignment, so without an offset the live tops of all fibers would fall into the same cache
// sets and evict each other at every switch; 128 staggered cache lines (at most 8 KiB) avoid it.
inline char* stack_top(const Fiber* f) {
  return f->stack_lo + f->stack_size - static_cast<size_t>((f->linear * 17) % 128) * 64;
}

#if defined(__x86_64__)
void prepare_context(Fiber* f) {
  // The frame simt_switch_context pops: r15 r14 r13 r12 rbx rbp, then the return address.
  // After the `ret`, %rsp = sp + 56 must be 16-byte aligned for the trampoline's call.
  char* top = stack_top(f);
  void** sp = reinterpret_cast<void**>(top - 72);
  memset(sp, 0, 72);
  sp[2] = reinterpret_cast<void*>(&fiber_main);  // r13: function
  sp[3] = f;                                     // r12: its argument
  sp[6] = reinterpret_cast<void*>(&simt_fiber_trampoline);
  f->sp = sp;
}

inline void switch_into(Fiber* f) { simt_switch_context(&g.sched_sp, f->sp); }
inline void switch_out(Fiber* f) { simt_switch_context(&f->sp, g.sched_sp); }
inline void switch_between(Fiber* from, Fiber* to) { simt_switch_context(&from->sp, to->sp); }
#else
void fiber_main_parts(unsigned hi, unsigned lo) {
  fiber_main(reinterpret_cast<Fiber*>((static_cast<uintptr_t>(hi) << 32) | lo));
}

ucontext_t* sched_context() {
  if (!g.sched_context) g.sched_context = new ucontext_t();
  return static_cast<ucontext_t*>(g.sched_context);
}

void prepare_context(Fiber* f) {
  if (!f->context) f->context = new ucontext_t();
  ucontext_t* uc = static_cast<ucontext_t*>(f->context);
  getcontext(uc);
  uc->uc_stack.ss_sp = f->stack_lo;
  uc->uc_stack.ss_size = static_cast<size_t>(stack_top(f) - f->stack_lo);
  uc->uc_link = nullptr;
  const uintptr_t p = reinterpret_cast<uintptr_t>(f);
  makecontext(uc, reinterpret_cast<void (*)()>(&fiber_main_parts), 2,
              static_cast<unsigned>(p >> 32), static_cast<unsigned>(p));
}

inline void switch_into(Fiber* f) {
  swapcontext(sched_context(), static_cast<ucontext_t*>(f->context));
}
inline void switch_out(Fiber* f) {
  swapcontext(static_cast<ucontext_t*>(f->context), sched_context());
}
inline void switch_between(Fiber* from, Fiber* to) {
  swapcontext(static_cast<ucontext_t*>(from->context), static_cast<ucontext_t*>(to->context));
}
#endif

void start_fiber(Fiber* f) {
  if (f->stack_dirty) {
#if defined(SIMT_ASAN)
    __asan_unpoison_memory_region(f->stack_lo, f->stack_size);
#endif
    f->stack_dirty = false;
  }
  prepare_context(f);
  f->collective_seq = 0;
  f->state = State::Ready;
}

}  // namespace

void ensure_stacks(unsigned count, size_t stack_size) {
  if (stack_size != pool_stack_size) {
    for (const Stack& s : pool) munmap(s.base, s.total);
    pool.clear();
    pool_stack_size = stack_size;
  }
  const size_t guard = guard_size();
  while (pool.size() < count) {
    const size_t total = guard + stack_size;
    void* base = mmap(nullptr, total, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) out_of_memory("a fiber stack");
    if (mprotect(base, guard, PROT_NONE) != 0) out_of_memory("a stack guard page");
    pool.push_back(Stack{static_cast<char*>(base), total});
  }
  if (g.fibers.size() < count) g.fibers.resize(count);
  for (unsigned i = 0; i < count; ++i) {
    Fiber& f = g.fibers[i];
    char* lo = pool[i].base + guard;
    if (f.stack_lo != lo) {
      f.stack_lo = lo;
      f.stack_dirty = true;  // another fiber may have used it: clean it before first use
    }
    f.stack_size = stack_size;
  }
}

void fiber_reset_for_block(Fiber* f) {
  f->state = State::NotStarted;
  reset_async_copies(f);
  reset_wgmma(f);
#if defined(SIMT_TSAN)
  // Created by the scheduler, never by the fiber that ran before (TSan orders a fiber after
  // everything its creator did, which would hide every race), and kept for later blocks and
  // launches: creating a TSan fiber costs about a millisecond. A reused fiber starts by
  // acquiring the scheduler's block_start_token, so it happens after the block's setup.
  if (!f->tsan_fiber) f->tsan_fiber = __tsan_create_fiber(0);
  char name[96];
  snprintf(name, sizeof name, "block (%u,%u,%u) thread (%u,%u,%u)", g.block.x, g.block.y,
           g.block.z, f->tid.x, f->tid.y, f->tid.z);
  __tsan_set_fiber_name(f->tsan_fiber, name);
#endif
}

namespace {

inline void enter(Fiber* f) {
  if (f->state == State::NotStarted) start_fiber(f);
  g.current = f;
  g.ran = true;
  memcpy(g.vars.thread_idx, &f->tid, sizeof f->tid);
}

}  // namespace

void resume(Fiber* f) {
  enter(f);
  g.entered_from_scheduler = true;
#if defined(SIMT_ASAN)
  __sanitizer_start_switch_fiber(&g.sched_fake_stack, f->stack_lo, f->stack_size);
#endif
#if defined(SIMT_TSAN)
  __tsan_switch_to_fiber(f->tsan_fiber, __tsan_switch_to_fiber_no_sync);
#endif
  switch_into(f);
#if defined(SIMT_ASAN)
  __sanitizer_finish_switch_fiber(g.sched_fake_stack, nullptr, nullptr);
#endif
  g.current = nullptr;
}

void transfer(Fiber* from, Fiber* to, bool dying) {
  enter(to);
#if defined(SIMT_ASAN)
  __sanitizer_start_switch_fiber(dying ? nullptr : &from->asan_fake_stack, to->stack_lo,
                                 to->stack_size);
#else
  (void)dying;
#endif
#if defined(SIMT_TSAN)
  __tsan_switch_to_fiber(to->tsan_fiber, __tsan_switch_to_fiber_no_sync);
#endif
  switch_between(from, to);
  after_switch_in(from->asan_fake_stack);
}

void yield_to_scheduler(Fiber* f, bool dying) {
  g.returned = f;
#if defined(SIMT_ASAN)
  __sanitizer_start_switch_fiber(dying ? nullptr : &f->asan_fake_stack, g.sched_stack_bottom,
                                 g.sched_stack_size);
#else
  (void)dying;
#endif
#if defined(SIMT_TSAN)
  __tsan_switch_to_fiber(g.sched_tsan_fiber, __tsan_switch_to_fiber_no_sync);
#endif
  switch_out(f);
  after_switch_in(f->asan_fake_stack);
}

void escape_to_scheduler(Fiber* f) {
  g.returned = f;
#if defined(__x86_64__)
  simt_switch_context(&f->sp, g.sched_sp);
#else
  setcontext(sched_context());
#endif
}

void retire_block_fibers() {
  for (unsigned i = 0; i < g.nthreads; ++i) {
    Fiber& f = g.fibers[i];
    if (f.state == State::NotStarted) continue;
    if (f.state != State::Done) f.stack_dirty = true;
    f.state = State::NotStarted;
  }
}

bool stack_overflowed(const void* fault_addr, const void* stack_pointer, const Fiber* f) {
  const char* a = static_cast<const char*>(fault_addr);
  const char* sp = static_cast<const char*>(stack_pointer);
  return (a < f->stack_lo && a >= f->stack_lo - guard_size()) ||
         (sp && sp < f->stack_lo + 256);
}

}  // namespace simt
