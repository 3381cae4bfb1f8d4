// The CPU executor's <assert.h>: a failed assert() in a kernel becomes an error naming the CUDA
// thread and the source line (simt_trap), as a device-side assert does on a GPU, instead of
// aborting the process. No include guard: like the C header, every inclusion re-reads NDEBUG.
#include_next <assert.h>
#include "../simt_abi.h"

#undef assert
#ifdef NDEBUG
#define assert(expr) ((void)0)
#else
#define assert(expr) \
  ((expr) ? (void)0 : simt_trap("assertion `" #expr "` failed", __FILE__, __LINE__, __func__))
#endif
