// Faults in kernel code: errors that name the CUDA block and thread, and (in the plain build)
// signal handlers that turn a segfault, bus error, arithmetic exception or illegal instruction in
// a fiber into such an error instead of killing the process. The handler runs on an alternate
// stack (a stack overflow faults in the guard page), records the signal and switches straight
// back to the scheduler, abandoning the faulting fiber; the scheduler then ends the launch.
#include <dlfcn.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "runtime_internal.h"

namespace simt {
namespace {

constexpr int kSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
constexpr int kNumSignals = sizeof kSignals / sizeof kSignals[0];
struct sigaction previous[kNumSignals];
stack_t previous_altstack;
char* altstack_memory = nullptr;
constexpr size_t kAltstackSize = 64 * 1024;

int signal_slot(int sig) {
  for (int i = 0; i < kNumSignals; ++i)
    if (kSignals[i] == sig) return i;
  return -1;
}

void on_fault_signal(int sig, siginfo_t* info, void* ucontext) {
  Fiber* f = g.current;
  const int slot = signal_slot(sig);
  if (!f || !pthread_equal(pthread_self(), g.os_thread) || slot < 0) {
    // Not a kernel's fault: give the signal back to whoever handled it before; returning
    // re-executes the faulting instruction under that handler.
    sigaction(sig, &previous[slot < 0 ? 0 : slot], nullptr);
    return;
  }
  g.fault_signal = sig;
  g.fault_code = info->si_code;
  g.fault_addr = info->si_addr;
  const auto* uc = static_cast<const ucontext_t*>(ucontext);
#if defined(__x86_64__)
  g.fault_pc = reinterpret_cast<void*>(uc->uc_mcontext.gregs[REG_RIP]);
  g.fault_sp = reinterpret_cast<void*>(uc->uc_mcontext.gregs[REG_RSP]);
#elif defined(__aarch64__)
  g.fault_pc = reinterpret_cast<void*>(uc->uc_mcontext.pc);
  g.fault_sp = reinterpret_cast<void*>(uc->uc_mcontext.sp);
#else
  (void)uc;
  g.fault_pc = g.fault_sp = nullptr;
#endif
  f->state = State::Faulted;
  g.aborted = true;
  escape_to_scheduler(f);
}

const char* signal_description(int sig, int code) {
  switch (sig) {
    case SIGSEGV: return "invalid memory access (SIGSEGV)";
    case SIGBUS: return "misaligned or invalid memory access (SIGBUS)";
    case SIGILL: return "illegal instruction (SIGILL)";
    case SIGFPE:
      return code == FPE_INTDIV ? "integer division by zero (SIGFPE)"
                                : "arithmetic exception (SIGFPE)";
    default: return "signal";
  }
}

void fill_thread(const Fiber* f) {
  simt_error* e = g.error;
  e->has_thread = 1;
  e->thread[0] = f->tid.x;
  e->thread[1] = f->tid.y;
  e->thread[2] = f->tid.z;
}

}  // namespace

void install_fault_handlers() {
  if (!altstack_memory) {
    altstack_memory = static_cast<char*>(malloc(kAltstackSize));
    if (!altstack_memory) return;  // no handlers: a fault then kills the process as usual
  }
  stack_t alt{};
  alt.ss_sp = altstack_memory;
  alt.ss_size = kAltstackSize;
  sigaltstack(&alt, &previous_altstack);
  struct sigaction action {};
  action.sa_sigaction = &on_fault_signal;
  action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&action.sa_mask);
  for (int i = 0; i < kNumSignals; ++i) sigaction(kSignals[i], &action, &previous[i]);
}

void remove_fault_handlers() {
  for (int i = 0; i < kNumSignals; ++i) sigaction(kSignals[i], &previous[i], nullptr);
  sigaltstack(&previous_altstack, nullptr);
}

void set_error(int status, const Fiber* f, const char* fmt, ...) {
  simt_error* e = g.error;
  if (e->status != SIMT_OK) return;  // keep the first error
  e->status = status;
  if (g.in_block) {
    e->has_block = 1;
    e->block[0] = g.block.x;
    e->block[1] = g.block.y;
    e->block[2] = g.block.z;
  }
  if (f) fill_thread(f);
  va_list args;
  va_start(args, fmt);
  vsnprintf(e->message, sizeof e->message, fmt, args);
  va_end(args);
}

void set_error_source(const char* file, int line) {
  snprintf(g.error->source, sizeof g.error->source, "%s:%d", file, line);
}

void fault_in_fiber(Fiber* f) {
  f->state = State::Faulted;
  g.aborted = true;
  yield_to_scheduler(f, /*dying=*/true);
  abort();  // an aborted fiber is never resumed
}

Fiber* require_fiber(const char* what) {
  if (!g.current) {
    fprintf(stderr,
            "gpuconv simulator: %s called outside a kernel launch (from host code or a static "
            "initializer); device functions run only inside a launch\n",
            what);
    abort();
  }
  return g.current;
}

void describe_signal_fault(Fiber* f) {
  f->stack_dirty = true;
  const bool overflow =
      g.fault_signal == SIGSEGV && stack_overflowed(g.fault_addr, g.fault_sp, f);
  if (overflow) {
    set_error(SIMT_FAULT, f,
              "stack overflow in block (%u,%u,%u) thread (%u,%u,%u) of %s: the thread used more "
              "than its %zu KiB stack (large per-thread arrays or deep recursion; "
              "GPUCONV_SIMULATE_STACK_KB raises the limit)",
              g.block.x, g.block.y, g.block.z, f->tid.x, f->tid.y, f->tid.z, g.kernel,
              f->stack_size / 1024);
  } else {
    char address[48] = "";
    if (g.fault_signal == SIGSEGV || g.fault_signal == SIGBUS)
      snprintf(address, sizeof address, " at address %p", g.fault_addr);
    set_error(SIMT_FAULT, f, "%s%s in block (%u,%u,%u) thread (%u,%u,%u) of %s",
              signal_description(g.fault_signal, g.fault_code), address, g.block.x, g.block.y,
              g.block.z, f->tid.x, f->tid.y, f->tid.z, g.kernel);
  }
  simt_error* e = g.error;
  e->signal = g.fault_signal;
  Dl_info where;
  if (g.fault_pc && dladdr(g.fault_pc, &where) && where.dli_fname) {
    e->has_pc = 1;
    e->pc_offset = static_cast<uint64_t>(static_cast<char*>(g.fault_pc) -
                                         static_cast<char*>(where.dli_fbase));
    snprintf(e->pc_object, sizeof e->pc_object, "%s", where.dli_fname);
  }
}

}  // namespace simt

using namespace simt;

extern "C" void simt_trap(const char* what, const char* file, int line, const char* function) {
  Fiber* f = g.current;
  if (!f) {
    fprintf(stderr, "gpuconv simulator: %s at %s:%d outside a kernel launch\n", what,
            file, line);
    abort();
  }
  set_error(SIMT_FAULT, f, "%s at %s:%d in %s, block (%u,%u,%u) thread (%u,%u,%u) of %s",
            what, file, line, function, g.block.x, g.block.y, g.block.z, f->tid.x, f->tid.y,
            f->tid.z, g.kernel);
  set_error_source(file, line);
  fault_in_fiber(f);
}

extern "C" void simt_launch_bounds_exceeded(long long bound, const char* function,
                                            const char* file, int line) {
  Fiber* f = require_fiber("a __launch_bounds__ check");
  const unsigned long long threads = static_cast<unsigned long long>(g.config->block[0]) *
                                     g.config->block[1] * g.config->block[2];
  set_error(SIMT_LAUNCH_BOUNDS, f,
            "%s was launched with %llu threads per block, more than its __launch_bounds__ (%lld) "
            "at %s:%d in %s: a GPU refuses the launch (too many resources requested)",
            g.kernel, threads, bound, file, line, function);
  set_error_source(file, line);
  fault_in_fiber(f);
}
