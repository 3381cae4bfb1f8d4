// The binary interface between a compiled kernel module, the simulator runtime library and the
// Python side (gpuconv/simulator/_abi.py mirrors these structs with ctypes: keep them in step and
// bump SIMT_ABI_VERSION on any change).
//
// A kernel module exports, for the i-th name expression, `__simt_launch_<i>` and
// `__simt_params_<i>`. The runtime library (scheduler.cpp and friends) exports the `simt_*`
// functions that the force-included header calls from kernel code.
#pragma once

#include <stddef.h>
#include <stdint.h>

#define SIMT_ABI_VERSION 7

#pragma GCC visibility push(default)
#ifdef __cplusplus
extern "C" {
#endif

// Thread orders between barriers (simulator.md, "Scheduling order").
enum simt_order { SIMT_ORDER_FORWARD = 0, SIMT_ORDER_REVERSE = 1, SIMT_ORDER_RANDOM = 2 };

struct simt_launch_config {
  uint32_t grid[3];
  uint32_t block[3];
  uint64_t shared_mem;       // dynamic shared memory bytes per block
  uint64_t seed;             // for SIMT_ORDER_RANDOM
  uint64_t stack_size;       // bytes per CUDA thread (fiber), a multiple of the page size
  uint32_t order;            // enum simt_order
  uint32_t handle_faults;    // 1: turn SIGSEGV/SIGBUS/SIGFPE/SIGILL in a kernel into an error
  uint64_t shared_opt_in;    // the kernel's max_dynamic_shared_size_bytes once set, else 0
};

// Result codes of a launch.
enum simt_status {
  SIMT_OK = 0,
  SIMT_FAULT = 1,      // signal, __trap(), assert(), misuse of a collective
  SIMT_DEADLOCK = 2,   // threads blocked forever at a barrier or warp collective
  SIMT_RESOURCE = 3,   // a hardware limit of a real GPU exceeded (shared memory size)
  SIMT_INTERNAL = 4,   // the simulator itself failed (out of memory for stacks...)
  SIMT_LAUNCH_BOUNDS = 5,  // more threads per block than the kernel's __launch_bounds__
};

struct simt_error {
  int32_t status;            // enum simt_status
  int32_t has_block;         // block below is meaningful
  int32_t has_thread;        // thread below is meaningful
  uint32_t block[3];
  uint32_t thread[3];
  int32_t has_pc;            // pc_offset/pc_object name the faulting instruction
  int32_t signal;
  uint64_t pc_offset;        // offset of the faulting pc inside pc_object
  char pc_object[512];       // path of the shared object holding the faulting pc
  char source[256];          // "file:line" when the runtime knows it (trap, assert, barrier)
  char message[4096];
};

// One kernel parameter, as the C++ compiler sees it (template deduction on the kernel pointer).
// kind: 'i' signed integer, 'u' unsigned integer, 'c' plain char, 'f' floating point (float,
// double, __half), 'B' __nv_bfloat16, 'b' bool, 'p' pointer, 'V' any other type (struct...).
// For pointers, pointee_kind is the same code for the pointed-to type, 'v' for void.
struct simt_param_desc {
  uint32_t size;
  uint32_t pointee_size;
  char kind;
  char pointee_kind;
  uint8_t pointee_const;
  uint8_t pointee_align;     // alignof the pointed-to type (0: void)
  char type_name[116];
};

// Pointers to one module's built-in index variables (hidden in each module so that kernel code
// reads them without indirection); the scheduler writes them at every fiber switch.
struct simt_index_vars {
  void* thread_idx;   // uint3*
  void* block_idx;    // uint3*
  void* block_dim;    // dim3*
  void* grid_dim;     // dim3*
};

typedef void (*simt_thread_body)(void* ctx);

int simt_run_grid(const struct simt_launch_config* config, const struct simt_index_vars* vars,
                  const char* kernel_name, simt_thread_body body, void* ctx,
                  struct simt_error* error);

// Kinds of barrier (simt_barrier) and of warp collective (simt_warp_op).
enum simt_barrier_kind {
  SIMT_BAR_SYNC = 0, SIMT_BAR_COUNT = 1, SIMT_BAR_AND = 2, SIMT_BAR_OR = 3
};
enum simt_warp_kind {
  SIMT_WARP_SYNC = 0,        // __syncwarp
  SIMT_SHFL_IDX = 1, SIMT_SHFL_UP = 2, SIMT_SHFL_DOWN = 3, SIMT_SHFL_BFLY = 4,
  SIMT_VOTE_BALLOT = 5, SIMT_VOTE_ANY = 6, SIMT_VOTE_ALL = 7,
  SIMT_MATCH_ANY = 8, SIMT_MATCH_ALL = 9,
  SIMT_REDUCE_ADD = 10, SIMT_REDUCE_MIN = 11, SIMT_REDUCE_MAX = 12,
  SIMT_REDUCE_AND = 13, SIMT_REDUCE_OR = 14, SIMT_REDUCE_XOR = 15,
  SIMT_ALLGATHER = 16,       // every lane receives every participating lane's bytes
  SIMT_WARP_KIND_COUNT = 17
};

// A warp collective as one lane sees it. `in` points at `size` bytes (the lane's value, or an
// int predicate for votes); `out` receives the lane's result: `size` bytes for shuffles and
// reductions, an unsigned for ballot/any/all/match_any, {unsigned mask; int pred} for match_all,
// 32 * size bytes for SIMT_ALLGATHER. `b` is the shuffle's lane/offset operand (or, for
// reductions, 1 when the operands are signed), `c` the PTX clamp/segment-mask operand.
struct simt_warp_call {
  int32_t kind;
  uint32_t mask;
  const void* in;
  void* out;
  uint32_t size;
  int32_t b;
  int32_t c;
  int32_t line;
  const char* file;
};

int simt_barrier(int kind, int predicate, const char* file, int line);
void simt_warp_op(const struct simt_warp_call* call);
unsigned simt_activemask(void);
void* simt_shared_cell(const void* key, size_t size, size_t align, const char* name,
                       const char* function, const char* file, int line);
void* simt_dynamic_shared(void);
__attribute__((noreturn)) void simt_trap(const char* what, const char* file, int line,
                                         const char* function);
__attribute__((noreturn)) void simt_launch_bounds_exceeded(long long bound, const char* function,
                                                           const char* file, int line);
uint64_t simt_clock(void);

// Asynchronous global->shared copies (cp.async; the model is in simt_async_copy.h). The header
// reads a copy's source and poisons its destination itself, so that the sanitizers see those
// accesses as the CUDA thread's; the runtime only keeps each thread's queue of issued copies.
struct simt_async_copy_record {
  void* dst;                 // shared memory, aligned to bytes
  uint32_t bytes;            // 4, 8 or 16
  uint32_t reserved;
  unsigned char data[16];    // the bytes to land in dst (source bytes read at issue, then zeros)
};
// Queues a copy in the thread's open (not yet committed) group; a destination outside the
// block's shared memory fails the launch, naming file:line.
void simt_async_enqueue(const struct simt_async_copy_record* copy, const char* file, int line);
// cp.async.commit_group: the open group (possibly empty) becomes the newest committed group.
void simt_async_commit_group(void);
// cp.async.wait_group: moves up to `capacity` copies of the committed groups older than the
// newest `pending` ones into out[], oldest first, and forgets them; returns how many it moved
// (call again while it returns `capacity`). The caller writes them to their destinations.
unsigned simt_async_complete(unsigned pending, struct simt_async_copy_record* out,
                             unsigned capacity);

// Hopper's warpgroup multiply-adds (wgmma.mma_async; the model is in simt_wgmma.h): the
// runtime keeps each thread's queue of issued operations, the header computes them at the wait.
struct simt_wgmma_record {
  float* d;                  // the issuing thread's accumulators (n / 2 floats)
  const void* a;             // the descriptors' start addresses: A (64 x 16) and B (n x 16)
  const void* b;
  uint64_t fields_a;         // the descriptors' other bits (LBO, SBO, base offset, swizzle mode)
  uint64_t fields_b;
  uint32_t trans_a;          // imm-trans-a, imm-trans-b: 1 = the operand is MN-major
  uint32_t trans_b;
  uint32_t n;                // the instruction's N
  uint32_t bf16;             // 1: __nv_bfloat16 operands, 0: __half
};
// Queues an operation in the thread's open group.
void simt_wgmma_enqueue(const struct simt_wgmma_record* op);
// wgmma.commit_group: the open group (possibly empty) becomes the newest committed group.
void simt_wgmma_commit_group(void);
// wgmma.wait_group: as simt_async_complete, for the thread's wgmma groups.
unsigned simt_wgmma_complete(unsigned pending, struct simt_wgmma_record* out, unsigned capacity);

// For the sanitizer runner's death callback: the CUDA thread running now ("block (x,y,z) thread
// (x,y,z) of KERNEL"), and the shared memory nearest to an address (*distance: 0 inside, else
// bytes outside). Return 0 when unknown.
int simt_describe_current(char* out, size_t capacity);
int simt_describe_address(const void* address, char* out, size_t capacity, size_t* distance);

#ifdef __cplusplus
}
#endif
#pragma GCC visibility pop
