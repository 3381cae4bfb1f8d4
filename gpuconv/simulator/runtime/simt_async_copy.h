// Ampere's asynchronous global->shared copies (PTX cp.async, cp.async.commit_group and
// cp.async.wait_group), for the CPU branches of the project's PTX helpers (simulator.md,
// convention 1). The model makes a pipeline that forgets a wait or a barrier fail under
// simulation instead of working by luck:
//
//  - At issue (simt_async_copy) the source bytes are read at once (a bad address faults there,
//    in the issuing thread) and kept in the thread's queue, tagged with its open group; the
//    destination is filled with 0xFF bytes (NaN for float, half and bfloat16) at once. A thread
//    still reading the old contents of that buffer without a barrier in between (write after
//    read) reads NaN.
//  - The bytes land only when the issuing thread waits for their group (simt_async_wait): a read
//    before that wait, or by another thread before the __syncthreads() that follows it, reads
//    NaN whenever the thread order runs the reader first (hence the forward, reverse and random
//    orders of the test suite).
//  - Copies nobody waits for never land (nor is that guaranteed on a GPU): they are dropped when
//    the thread returns. Not modelled: a kernel that writes a copy's global source between
//    issue and wait (undefined on a GPU) reads the old bytes here.
//
// The memory accesses happen here, in kernel code, so AddressSanitizer checks them and
// ThreadSanitizer sees them as the issuing thread's: the source read and the poisoning at issue,
// the final write at its wait. The runtime only keeps the per-thread queues (async_copy.cpp).
#pragma once

// Fails the launch with the first cp.async rule that the copy breaks, naming the calling thread
// and line (simt_async_copy calls it only when one is broken).
static __attribute__((noreturn, noinline, cold)) void simt_async_violation(
    const void* dst, const void* src, unsigned bytes, unsigned src_bytes, const char* file,
    int line, const char* function) {
  char what[256];
  if (bytes != 4 && bytes != 8 && bytes != 16)
    snprintf(what, sizeof what, "cp.async: the copy size must be 4, 8 or 16 bytes, got %u", bytes);
  else if (src_bytes > bytes)
    snprintf(what, sizeof what,
             "cp.async: src-size must be at most the copy size (%u bytes), got %u", bytes,
             src_bytes);
  else if (reinterpret_cast<uintptr_t>(dst) % bytes != 0)
    snprintf(what, sizeof what,
             "cp.async: the shared-memory destination %p must be aligned to the copy size (%u "
             "bytes)", dst, bytes);
  else
    snprintf(what, sizeof what,
             "cp.async: the global source %p must be aligned to the copy size (%u bytes)", src,
             bytes);
  simt_trap(what, file, line, function);
}

// Starts an asynchronous copy of `bytes` (4, 8 or 16) bytes to shared memory `dst` from global
// `src`: the first `src_bytes` (0..bytes) bytes come from src, the rest are zeros (PTX's
// src-size; with src_bytes == 0 src is not read). dst and src aligned to `bytes`.
static __forceinline__ void simt_async_copy(void* dst, const void* src, unsigned bytes,
                                            unsigned src_bytes,
                                            const char* simt_file = __builtin_FILE(),
                                            int simt_line = __builtin_LINE(),
                                            const char* simt_function = __builtin_FUNCTION()) {
  if ((bytes != 4 && bytes != 8 && bytes != 16) || src_bytes > bytes ||
      (reinterpret_cast<uintptr_t>(dst) | reinterpret_cast<uintptr_t>(src)) % bytes != 0)
    simt_async_violation(dst, src, bytes, src_bytes, simt_file, simt_line, simt_function);
  simt_async_copy_record copy;
  copy.dst = dst;
  copy.bytes = bytes;
  copy.reserved = 0;
  if (src_bytes == 16) {
    __builtin_memcpy(copy.data, src, 16);  // inline loads: a fault names this thread's line
  } else if (src_bytes == 8) {
    __builtin_memcpy(copy.data, src, 8);
  } else if (src_bytes == 4) {
    __builtin_memcpy(copy.data, src, 4);
  } else {
    // volatile: keeps the compiler from turning the loop into a call of libc's memcpy, whose
    // fault would not name the kernel's line.
    const volatile unsigned char* from = static_cast<const volatile unsigned char*>(src);
    for (unsigned i = 0; i < src_bytes; ++i) copy.data[i] = from[i];
  }
  for (unsigned i = src_bytes; i < bytes; ++i) copy.data[i] = 0;
  simt_async_enqueue(&copy, simt_file, simt_line);
  // The poison is copied, not memset: GCC 12 expands a small constant memset after
  // ThreadSanitizer's pass, which then never sees the write.
  const uint64_t poison[2] = {~0ull, ~0ull};
  if (bytes == 16) __builtin_memcpy(dst, poison, 16);
  else if (bytes == 8) __builtin_memcpy(dst, poison, 8);
  else __builtin_memcpy(dst, poison, 4);
}

// cp.async.commit_group: the thread's copies issued since its last commit become one group (an
// empty one if there were none, which wait_group counts like any other).
static __forceinline__ void simt_async_commit() { simt_async_commit_group(); }

// cp.async.wait_group `pending`: every committed group of this thread but the newest `pending`
// is complete (its bytes are in shared memory when this returns), oldest first. Copies not yet
// committed are not waited for.
static __forceinline__ void simt_async_wait(unsigned pending) {
  simt_async_copy_record done[8];
  unsigned n;
  do {
    n = simt_async_complete(pending, done, 8);
    for (unsigned i = 0; i < n; ++i) {
      if (done[i].bytes == 16) __builtin_memcpy(done[i].dst, done[i].data, 16);
      else if (done[i].bytes == 8) __builtin_memcpy(done[i].dst, done[i].data, 8);
      else __builtin_memcpy(done[i].dst, done[i].data, 4);
    }
  } while (n == 8);
}
