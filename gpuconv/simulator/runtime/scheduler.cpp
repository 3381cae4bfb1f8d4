// The grid and block scheduler: blocks one after another, a block's threads as fibers run in a
// chosen order (forward, reverse, or seeded random, reshuffled at every barrier) until each
// blocks at a barrier or warp collective, or returns. When nothing can run, the block is
// deadlocked and the error names the block, the barrier and the threads that never reached it.
#include <pthread.h>
#include <time.h>

#include <cstdio>
#include <cstring>
#include <mutex>

#include "runtime_internal.h"

namespace simt {

Grid g;

namespace {

std::mutex launch_mutex;

// A fork while another thread runs a grid would leave the child this mutex locked by a thread it
// does not have, so that its first launch waited forever: the fork waits for the grid in
// progress (the launching thread needs nothing the forking one holds: it runs without the GIL),
// and both processes go on with the mutex free.
void lock_before_fork() { launch_mutex.lock(); }
void unlock_after_fork() { launch_mutex.unlock(); }
[[maybe_unused]] const int fork_handlers =
    pthread_atfork(lock_before_fork, unlock_after_fork, unlock_after_fork);

uint64_t next_random() {  // splitmix64
  uint64_t z = (g.rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

template <class T>
void shuffle(std::vector<T>& v) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[next_random() % i]);
}

const char* barrier_name(int kind) {
  switch (kind) {
    case SIMT_BAR_COUNT: return "__syncthreads_count()";
    case SIMT_BAR_AND: return "__syncthreads_and()";
    case SIMT_BAR_OR: return "__syncthreads_or()";
    default: return "__syncthreads()";
  }
}

void reset_order() {
  g.order.resize(g.nthreads);
  for (unsigned i = 0; i < g.nthreads; ++i)
    g.order[i] = g.config->order == SIMT_ORDER_REVERSE ? g.nthreads - 1 - i : i;
  if (g.config->order == SIMT_ORDER_RANDOM) shuffle(g.order);
}

void release_barrier() {
  int result = 0;
  switch (g.bar_kind) {
    case SIMT_BAR_COUNT: result = static_cast<int>(g.arrived_true); break;
    case SIMT_BAR_AND: result = g.arrived_true == g.nthreads; break;
    case SIMT_BAR_OR: result = g.arrived_true > 0; break;
    default: break;
  }
  for (unsigned i = 0; i < g.nthreads; ++i) {
    Fiber& f = g.fibers[i];
    f.bar_result = result;
    f.state = State::Ready;
  }
  g.arrived = 0;
  g.arrived_true = 0;
  ++g.bar_gen;
  if (g.config->order == SIMT_ORDER_RANDOM) shuffle(g.order);
}

inline bool runnable(const Fiber* f) {
  return f->state == State::Ready || f->state == State::NotStarted;
}

// Runs the pass from f on (fibers hand over to each other directly) until control comes back
// here; serves shared-memory requests on the way.
void run_pass_from(Fiber* f) {
  resume(f);
  while (!g.aborted && g.returned->state == State::Service) {
    Fiber* s = g.returned;
    serve_shared_cell(s);
    if (g.aborted) return;
    s->state = State::Ready;
    resume(s);
  }
  if (g.returned->state == State::Faulted && g.fault_signal) describe_signal_fault(g.returned);
}

void report_deadlock() {
  const Fiber* first_exited = nullptr;
  unsigned exited = 0;
  for (unsigned i = 0; i < g.nthreads; ++i) {
    if (g.fibers[i].state == State::Done) {
      ++exited;
      if (!first_exited) first_exited = &g.fibers[i];
    }
  }
  char warps[2048];
  describe_blocked_warps(warps, sizeof warps);
  char barrier[1024] = "";
  if (g.arrived > 0) {
    const Index3& t = g.fibers[g.bar_first].tid;
    int n = snprintf(barrier, sizeof barrier,
                     " %u of %u threads wait at the barrier %s at %s:%d (first: thread (%u,%u,%u))",
                     g.arrived, g.nthreads, barrier_name(g.bar_kind), g.bar_file, g.bar_line, t.x,
                     t.y, t.z);
    if (exited > 0 && n > 0 && static_cast<size_t>(n) < sizeof barrier) {
      const Index3& e = first_exited->tid;
      snprintf(barrier + n, sizeof barrier - n,
               "; %u thread(s) returned without reaching it (first: thread (%u,%u,%u))", exited, e.x,
               e.y, e.z);
    }
  }
  set_error(SIMT_DEADLOCK, nullptr, "deadlock in block (%u,%u,%u) of %s:%s%s%s", g.block.x,
            g.block.y, g.block.z, g.kernel, barrier, warps[0] && barrier[0] ? ";" : "", warps);
  if (g.arrived > 0) set_error_source(g.bar_file, g.bar_line);
  g.aborted = true;
}

void begin_block(uint64_t linear_block) {
  g.block.x = static_cast<unsigned>(linear_block % g.grid_dim.x);
  g.block.y = static_cast<unsigned>((linear_block / g.grid_dim.x) % g.grid_dim.y);
  g.block.z = static_cast<unsigned>(linear_block / (static_cast<uint64_t>(g.grid_dim.x) * g.grid_dim.y));
  memcpy(g.vars.block_idx, &g.block, sizeof g.block);
  g.in_block = true;
  for (unsigned w = 0; w < g.nwarps; ++w) {
    const unsigned lanes = g.nthreads - w * 32 >= 32 ? 32 : g.nthreads - w * 32;
    g.warp_exited[w] = lanes == 32 ? 0u : ~((1u << lanes) - 1u);
  }
  g.live = g.nthreads;
  g.arrived = g.arrived_true = g.bar_gen = 0;
  begin_block_shared_memory();
  for (unsigned i = 0; i < g.nthreads; ++i) fiber_reset_for_block(&g.fibers[i]);
  tsan_release(&g.block_start_token);
  reset_order();
}

void end_block() {
  g.in_block = false;
  tsan_acquire(&g.block_end_token);
  retire_block_fibers();
  end_block_shared_memory();
}

void run_block() {
  while (g.live > 0) {
    g.ran = false;
    for (unsigned k = 0; k < g.nthreads; ++k) {
      Fiber* f = &g.fibers[g.order[k]];
      if (!runnable(f)) continue;
      g.pass_index = k;
      run_pass_from(f);
      if (g.aborted) return;
      k = g.pass_index;  // the fibers that ran handed over up to this position
    }
    if (g.arrived > 0 && g.arrived == g.nthreads) {
      release_barrier();
      continue;
    }
    if (!g.ran) {
      report_deadlock();
      return;
    }
  }
}

uint64_t block_at(uint64_t i, uint64_t nblocks, const std::vector<uint32_t>& permutation) {
  switch (g.config->order) {
    case SIMT_ORDER_REVERSE: return nblocks - 1 - i;
    case SIMT_ORDER_RANDOM: return permutation[i];
    default: return i;
  }
}

void init_threads() {
  g.nthreads = g.block_dim.x * g.block_dim.y * g.block_dim.z;
  g.nwarps = (g.nthreads + 31) / 32;
  ensure_stacks(g.nthreads, g.config->stack_size);
  for (unsigned i = 0; i < g.nthreads; ++i) {
    Fiber& f = g.fibers[i];
    f.linear = i;
    f.warp = i / 32;
    f.lane = i % 32;
    f.tid.x = i % g.block_dim.x;
    f.tid.y = (i / g.block_dim.x) % g.block_dim.y;
    f.tid.z = i / (g.block_dim.x * g.block_dim.y);
  }
  g.warp_exited.assign(g.nwarps, 0);
  g.warp_tokens.assign(static_cast<size_t>(g.nwarps) * kTokenRing, 0);
  g.warp_completions.assign(g.nwarps, 0);
}

int run_grid() {
  const uint64_t nblocks =
      static_cast<uint64_t>(g.grid_dim.x) * g.grid_dim.y * g.grid_dim.z;
  std::vector<uint32_t> permutation;
  if (g.config->order == SIMT_ORDER_RANDOM) {
    if (nblocks > (1ull << 26)) {
      set_error(SIMT_RESOURCE, nullptr,
                "random order supports grids of at most 2^26 blocks, got %llu",
                static_cast<unsigned long long>(nblocks));
      return g.error->status;
    }
    permutation.resize(nblocks);
    for (uint64_t i = 0; i < nblocks; ++i) permutation[i] = static_cast<uint32_t>(i);
    shuffle(permutation);
  }
  for (uint64_t i = 0; i < nblocks && !g.aborted; ++i) {
    begin_block(block_at(i, nblocks, permutation));
    if (!g.aborted) run_block();
    end_block();
  }
  return g.error->status;
}

}  // namespace

void park(Fiber* f, bool dying) {
  if (!g.aborted) {
    for (unsigned k = g.pass_index + 1; k < g.nthreads; ++k) {
      Fiber* next = &g.fibers[g.order[k]];
      if (runnable(next)) {
        g.pass_index = k;
        transfer(f, next, dying);
        return;
      }
    }
  }
  yield_to_scheduler(f, dying);
}

}  // namespace simt

using namespace simt;

extern "C" int simt_run_grid(const simt_launch_config* config, const simt_index_vars* vars,
                             const char* kernel_name, simt_thread_body body, void* ctx,
                             simt_error* error) {
  std::lock_guard<std::mutex> lock(launch_mutex);
  memset(error, 0, sizeof *error);
  g.config = config;
  g.vars = *vars;
  g.kernel = kernel_name;
  g.body = body;
  g.body_ctx = ctx;
  g.error = error;
  g.aborted = false;
  g.fault_signal = 0;
  g.rng = config->seed ^ 0x6a09e667f3bcc909ull;
  g.block_dim = Index3{config->block[0], config->block[1], config->block[2]};
  g.grid_dim = Index3{config->grid[0], config->grid[1], config->grid[2]};
  memcpy(vars->block_dim, &g.block_dim, sizeof g.block_dim);
  memcpy(vars->grid_dim, &g.grid_dim, sizeof g.grid_dim);
  g.os_thread = pthread_self();
#if defined(SIMT_TSAN)
  g.sched_tsan_fiber = __tsan_get_current_fiber();
#endif
  init_threads();
  if (config->handle_faults) install_fault_handlers();
  const int status = run_grid();
  if (config->handle_faults) remove_fault_handlers();
  g.current = nullptr;
  return status;
}

extern "C" int simt_barrier(int kind, int predicate, const char* file, int line) {
  Fiber* f = require_fiber("__syncthreads()");
  if (g.arrived == 0) {
    g.bar_kind = kind;
    g.bar_file = file;
    g.bar_line = line;
    g.bar_first = f->linear;
  } else if (kind != g.bar_kind || line != g.bar_line ||
             (file != g.bar_file && strcmp(file, g.bar_file) != 0)) {
    const Index3& t = g.fibers[g.bar_first].tid;
    set_error(SIMT_FAULT, f,
              "threads of one block reach different barriers: thread (%u,%u,%u) waits at %s at "
              "%s:%d, this thread reaches %s at %s:%d (a barrier in divergent code)",
              t.x, t.y, t.z, barrier_name(g.bar_kind), g.bar_file, g.bar_line,
              barrier_name(kind), file, line);
    set_error_source(file, line);
    fault_in_fiber(f);
  }
  ++g.arrived;
  if (predicate) ++g.arrived_true;
  f->state = State::AtBarrier;
  f->bar_gen = g.bar_gen;
  tsan_release(&g.bar_tokens[f->bar_gen & 1]);
  park(f, false);
  tsan_acquire(&g.bar_tokens[f->bar_gen & 1]);
  return f->bar_result;
}

extern "C" unsigned simt_activemask(void) {
  const Fiber* f = require_fiber("__activemask()");
  return ~g.warp_exited[f->warp];
}

extern "C" uint64_t simt_clock(void) {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}
