// State shared by the runtime library's files (not seen by kernel code).
//
// One launch runs at a time in a process (scheduler.cpp holds a mutex): a grid's blocks run one
// after another on the calling OS thread, and a block's CUDA threads are fibers on that thread.
// Built three ways: plain, SIMT_ASAN (fiber-switch annotations for AddressSanitizer) and
// SIMT_TSAN (each CUDA thread a ThreadSanitizer fiber; happens-before only where CUDA gives it).
// The runtime itself is never instrumented, so its own bookkeeping is invisible to TSan.
#pragma once

#include <pthread.h>
#include <signal.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "simt_abi.h"

#if defined(SIMT_TSAN)
#include <sanitizer/tsan_interface.h>
#endif

namespace simt {

struct Index3 {
  unsigned x, y, z;
};

enum class State : uint8_t {
  NotStarted,  // fiber not yet entered in this block
  Ready,       // runnable
  AtBarrier,   // waiting in __syncthreads*
  AtWarp,      // waiting in a warp collective
  Service,     // asked the scheduler for a shared-memory cell; resumed at once
  Done,        // returned from the kernel
  Faulted,     // stopped by a fault; the launch is being aborted
};

constexpr int kTokenRing = 16;  // TSan sync tokens per lane, reused round-robin

// A thread's asynchronous operations of one kind (cp.async copies, wgmma multiply-adds), in
// issue order, each tagged with the commit group it belongs to: `commits` groups committed so
// far in this block; the operations from `head` on are not yet complete (async_copy.cpp,
// wgmma.cpp).
template <class Record>
struct GroupQueue {
  struct Entry {
    Record record;
    uint64_t group;  // the thread's number of commits when it was issued
  };
  std::vector<Entry> entries;
  size_t head = 0;
  uint64_t commits = 0;

  void reset() {
    entries.clear();  // keeps the capacity for the next block
    head = 0;
    commits = 0;
  }
  void issue(const Record& record) { entries.push_back(Entry{record, commits}); }
  void commit() { ++commits; }
  // The wait_group rule shared by cp.async and wgmma: moves up to `capacity` operations of the
  // committed groups older than the newest `pending` ones into out[], oldest first, and forgets
  // them; returns how many (the caller asks again while it gets `capacity`).
  unsigned complete(unsigned pending, Record* out, unsigned capacity) {
    const uint64_t done = commits > pending ? commits - pending : 0;
    unsigned n = 0;
    while (n < capacity && head < entries.size() && entries[head].group < done)
      out[n++] = entries[head++].record;
    if (head == entries.size()) {
      entries.clear();
      head = 0;
    } else if (head >= 64 && 2 * head >= entries.size()) {
      // A pipeline that always leaves groups in flight never empties its queue: drop the
      // completed front now and then so that it does not grow without bound.
      entries.erase(entries.begin(), entries.begin() + static_cast<std::ptrdiff_t>(head));
      head = 0;
    }
    return n;
  }
};

struct Fiber {
  // Touched at every switch: kept together at the front.
  void* sp = nullptr;          // saved stack pointer while switched out
  State state = State::NotStarted;
  bool stack_dirty = false;    // left mid-call: sanitizer poison may remain on the stack
  Index3 tid{};
  unsigned linear = 0, warp = 0, lane = 0;
  int bar_result = 0;
  unsigned bar_gen = 0;
  char* stack_lo = nullptr;    // lowest usable byte (a guard page lies below)
  size_t stack_size = 0;

  // The warp collective this lane waits in.
  simt_warp_call call{};
  unsigned warp_completion = 0;  // which completion of its warp released it (TSan)

  // A shared-memory cell request (State::Service).
  struct {
    const void* key;
    size_t size, align;
    const char* name;
    const char* function;
    const char* file;
    int line;
    void* result;
  } request{};

  // cp.async copies (async_copy.cpp) and wgmma multiply-adds (wgmma.cpp) issued and not yet
  // completed, with the groups committed so far in this block.
  GroupQueue<simt_async_copy_record> async_copies;
  GroupQueue<simt_wgmma_record> wgmma_ops;

  // Sanitizer state, and the ucontext_t of non-x86-64 builds.
  void* tsan_fiber = nullptr;
  void* asan_fake_stack = nullptr;
  unsigned collective_seq = 0;
  char tsan_tokens[kTokenRing] = {};
  void* context = nullptr;
};

struct SharedCell {
  const void* key;
  void* memory;
  size_t size;
  const char* name;
};

struct Grid {
  // The launch.
  const simt_launch_config* config = nullptr;
  simt_index_vars vars{};
  const char* kernel = "";
  simt_thread_body body = nullptr;
  void* body_ctx = nullptr;
  simt_error* error = nullptr;
  unsigned nthreads = 0, nwarps = 0;
  Index3 block_dim{}, grid_dim{}, block{};
  bool in_block = false;          // between begin_block and end_block

  // Threads of the current block, and the order they run in between barriers.
  std::vector<Fiber> fibers;
  std::vector<unsigned> order;
  std::vector<uint32_t> warp_exited;     // lanes that returned (or do not exist)
  unsigned live = 0;
  uint64_t rng = 0;

  // The block barrier: threads that arrived in the current generation.
  unsigned arrived = 0, arrived_true = 0, bar_gen = 0;
  int bar_kind = 0, bar_line = 0;
  const char* bar_file = "";
  unsigned bar_first = 0;

  // Shared memory of the current block.
  std::vector<SharedCell> cells;
  size_t static_bytes = 0;
  void* dynamic_shared = nullptr;

  // Scheduling. A blocked fiber switches straight to the next runnable one of the pass
  // (pass_index is the position in `order` of the running fiber); only at the end of a pass,
  // for a service request or a fault does control return to the scheduler.
  Fiber* current = nullptr;
  Fiber* returned = nullptr;      // the fiber that last switched to the scheduler
  unsigned pass_index = 0;
  bool ran = false;               // some fiber ran in this pass
  bool entered_from_scheduler = false;
  void* sched_sp = nullptr;
  void* sched_context = nullptr;  // ucontext_t on non-x86-64 builds
  bool aborted = false;
  pthread_t os_thread{};

  // Fault recorded by the signal handler, formatted after it returns to the scheduler.
  int fault_signal = 0, fault_code = 0;
  void* fault_addr = nullptr;
  void* fault_pc = nullptr;
  void* fault_sp = nullptr;

  // Sanitizer state of the scheduler side.
  const void* sched_stack_bottom = nullptr;
  size_t sched_stack_size = 0;
  void* sched_fake_stack = nullptr;
  void* sched_tsan_fiber = nullptr;
  char bar_tokens[2] = {};
  char block_start_token = 0;  // the scheduler's block setup -> the block's threads
  char block_end_token = 0;    // the block's threads -> the scheduler's cleanup
  std::vector<char> warp_tokens;  // per warp, kTokenRing completion tokens
  std::vector<unsigned> warp_completions;  // collectives completed per warp (indexes tokens)
};

extern Grid g;

// fibers.cpp
void ensure_stacks(unsigned count, size_t stack_size);
void fiber_reset_for_block(Fiber* f);
void resume(Fiber* f);                        // scheduler -> fiber; returns when one yields
void transfer(Fiber* from, Fiber* to, bool dying);  // fiber -> fiber
void yield_to_scheduler(Fiber* f, bool dying);  // fiber -> scheduler
void escape_to_scheduler(Fiber* f);           // from a signal handler on the fiber's behalf

// scheduler.cpp
void park(Fiber* f, bool dying);  // f cannot go on: run the next fiber of the pass
void retire_block_fibers();
bool stack_overflowed(const void* fault_addr, const void* stack_pointer, const Fiber* f);

// faults.cpp
void install_fault_handlers();
void remove_fault_handlers();
void set_error(int status, const Fiber* f, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));
void set_error_source(const char* file, int line);
[[noreturn]] void fault_in_fiber(Fiber* f);  // after set_error: abandon the launch
Fiber* require_fiber(const char* what);      // the running CUDA thread; aborts outside one
void describe_signal_fault(Fiber* f);

// warp.cpp
void on_lane_exit(Fiber* f);  // a lane returned: collectives waiting on it may complete
const char* warp_kind_name(int kind);
void describe_blocked_warps(char* out, size_t capacity);

// shared_memory.cpp
void begin_block_shared_memory();
void end_block_shared_memory();
void serve_shared_cell(Fiber* f);
bool in_shared_memory(const void* address, size_t size);

// async_copy.cpp
void reset_async_copies(Fiber* f);  // a new block: no copies, no groups
void reset_wgmma(Fiber* f);         // a new block: no wgmma operations, no groups

// Happens-before edges for ThreadSanitizer; nothing in the other builds.
inline void tsan_acquire(const void* addr) {
#if defined(SIMT_TSAN)
  __tsan_acquire(const_cast<void*>(addr));
#else
  (void)addr;
#endif
}
inline void tsan_release(const void* addr) {
#if defined(SIMT_TSAN)
  __tsan_release(const_cast<void*>(addr));
#else
  (void)addr;
#endif
}

}  // namespace simt
