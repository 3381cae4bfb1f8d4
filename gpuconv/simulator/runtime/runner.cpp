// The sanitizer runner: a small program linked with -fsanitize=address or -fsanitize=thread that
// loads sanitized kernel modules and launches them for the Python process (_runner.py). A
// sanitized module needs the sanitizer runtime loaded first in the process; running it here means
// the Python interpreter needs no LD_PRELOAD (simulator.md: TSan under LD_PRELOAD crashed it).
//
// Protocol on two pipes (file descriptors argv[1] for requests, argv[2] for replies),
// little-endian, sizes in bytes:
//   hello    -> u32 magic 'SIMT', u32 SIMT_ABI_VERSION
//   LOAD     <- u32 1, u32 path length, path, u32 entry count
//            -> i32 0, u32 handle, per entry: u32 parameter count, simt_param_desc each
//            |  i32 1, u32 length, error text
//   LAUNCH   <- u32 2, u32 handle, u32 entry, simt_launch_config,
//               u32 buffers, per buffer: u64 size, u8 copy back, bytes;
//               u32 arguments, per argument: u8 kind (0 buffer, 1 bytes, 2 null pointer),
//               then u32 buffer + u64 offset | u32 length + bytes | nothing
//            -> simt_error, then (status 0 only) each copy-back buffer's bytes
// Each buffer is its own malloc'ed block of exactly its size, so AddressSanitizer guards both
// of its ends. A sanitizer error ends the process; its report goes to stderr, preceded by the
// CUDA thread and the memory the bad address belongs to (death callback).
#include <dlfcn.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <sanitizer/common_interface_defs.h>
#if defined(SIMT_ASAN)
#include <sanitizer/asan_interface.h>
#endif

#include "simt_abi.h"

namespace {

constexpr uint32_t kMagic = 0x544d4953;  // "SIMT"
constexpr uint32_t kLoad = 1, kLaunch = 2;

int request_fd = -1, reply_fd = -1;

struct Buffer {
  char* data;
  uint64_t size;
  bool copy_back;
  int first_argument;
};

struct Module {
  void* handle;
  std::vector<void*> launch;
};

std::vector<Module> modules;
std::vector<Buffer> buffers;  // of the launch in flight, for the death callback

void read_exact(void* out, size_t n) {
  char* p = static_cast<char*>(out);
  while (n > 0) {
    const ssize_t got = read(request_fd, p, n);
    if (got <= 0) _exit(0);  // the Python side went away
    p += got;
    n -= static_cast<size_t>(got);
  }
}

void write_all(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t put = write(reply_fd, p, n);
    if (put <= 0) _exit(0);
    p += put;
    n -= static_cast<size_t>(put);
  }
}

template <class T>
T read_value() {
  T v;
  read_exact(&v, sizeof v);
  return v;
}

template <class T>
void write_value(const T& v) {
  write_all(&v, sizeof v);
}

// The kernel argument array nearest to `address` (as simt_describe_address does for shared
// memory); returns false when none lies within 4 KiB.
bool describe_buffer_address(const void* address, char* out, size_t capacity, size_t* distance) {
  const char* a = static_cast<const char*>(address);
  bool found = false;
  for (const Buffer& b : buffers) {
    const size_t d = a < b.data ? static_cast<size_t>(b.data - a)
                   : a >= b.data + b.size ? static_cast<size_t>(a - (b.data + b.size)) : 0;
    if (d > 4096 || (found && d >= *distance)) continue;
    found = true;
    *distance = d;
    const unsigned long long size = static_cast<unsigned long long>(b.size);
    if (a < b.data)
      snprintf(out, capacity, "%zu bytes before kernel argument %d (an array of %llu bytes)", d,
               b.first_argument, size);
    else if (a >= b.data + b.size)
      snprintf(out, capacity, "%zu bytes after the end of kernel argument %d (an array of %llu bytes)",
               d, b.first_argument, size);
    else
      snprintf(out, capacity, "inside kernel argument %d (an array of %llu bytes)",
               b.first_argument, size);
  }
  return found;
}

void on_sanitizer_death() {
  char text[768];
  if (simt_describe_current(text, sizeof text))
    fprintf(stderr, "gpuconv-simt: the error happened in CUDA %s\n", text);
#if defined(SIMT_ASAN)
  void* address = __asan_get_report_address();
  char global[512];
  size_t shared_distance = 0, global_distance = 0;
  const bool shared = address && simt_describe_address(address, text, sizeof text, &shared_distance);
  const bool argument =
      address && describe_buffer_address(address, global, sizeof global, &global_distance);
  if (shared && (!argument || shared_distance <= global_distance))
    fprintf(stderr, "gpuconv-simt: the address is %s\n", text);
  else if (argument)
    fprintf(stderr, "gpuconv-simt: the address is %s\n", global);
#endif
  fflush(stderr);
}

void load() {
  const uint32_t length = read_value<uint32_t>();
  std::string path(length, '\0');
  read_exact(&path[0], length);
  const uint32_t entries = read_value<uint32_t>();
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  const char* failure = handle ? nullptr : dlerror();
  Module module{handle, {}};
  std::vector<std::vector<simt_param_desc>> params(entries);
  for (uint32_t i = 0; i < entries && !failure; ++i) {
    const std::string launch = "__simt_launch_" + std::to_string(i);
    const std::string describe = "__simt_params_" + std::to_string(i);
    void* l = dlsym(handle, launch.c_str());
    auto d = reinterpret_cast<int (*)(simt_param_desc*, int)>(dlsym(handle, describe.c_str()));
    if (!l || !d) {
      failure = "a kernel entry point is missing from the module";
      break;
    }
    module.launch.push_back(l);
    params[i].resize(static_cast<size_t>(d(nullptr, 0)));
    d(params[i].data(), static_cast<int>(params[i].size()));
  }
  if (failure) {
    write_value<int32_t>(1);
    write_value<uint32_t>(static_cast<uint32_t>(strlen(failure)));
    write_all(failure, strlen(failure));
    return;
  }
  modules.push_back(module);
  write_value<int32_t>(0);
  write_value<uint32_t>(static_cast<uint32_t>(modules.size() - 1));
  for (const auto& p : params) {
    write_value<uint32_t>(static_cast<uint32_t>(p.size()));
    write_all(p.data(), p.size() * sizeof(simt_param_desc));
  }
}

void launch() {
  const uint32_t handle = read_value<uint32_t>();
  const uint32_t entry = read_value<uint32_t>();
  const simt_launch_config config = read_value<simt_launch_config>();
  buffers.resize(read_value<uint32_t>());
  for (Buffer& b : buffers) {
    b.size = read_value<uint64_t>();
    b.copy_back = read_value<uint8_t>() != 0;
    b.first_argument = -1;
    b.data = static_cast<char*>(malloc(b.size ? b.size : 1));
    if (!b.data) {
      fprintf(stderr, "gpuconv-simt: cannot allocate %llu bytes\n",
              static_cast<unsigned long long>(b.size));
      _exit(3);
    }
    read_exact(b.data, b.size);
  }
  const uint32_t count = read_value<uint32_t>();
  std::vector<std::vector<char>> values(count);
  std::vector<void*> argv(count);
  for (uint32_t i = 0; i < count; ++i) {
    const uint8_t kind = read_value<uint8_t>();
    if (kind == 1) {
      values[i].resize(read_value<uint32_t>());
      read_exact(values[i].data(), values[i].size());
    } else {
      values[i].resize(sizeof(void*));
      void* pointer = nullptr;
      if (kind == 0) {
        const uint32_t index = read_value<uint32_t>();
        const uint64_t offset = read_value<uint64_t>();
        pointer = buffers[index].data + offset;
        if (buffers[index].first_argument < 0) buffers[index].first_argument = static_cast<int>(i);
      }
      memcpy(values[i].data(), &pointer, sizeof pointer);
    }
    argv[i] = values[i].data();
  }
  simt_error error;
  auto function = reinterpret_cast<int (*)(const simt_launch_config*, void**, simt_error*)>(
      modules[handle].launch[entry]);
  function(&config, argv.data(), &error);
  write_value(error);
  if (error.status == SIMT_OK)
    for (const Buffer& b : buffers)
      if (b.copy_back) write_all(b.data, b.size);
  for (Buffer& b : buffers) free(b.data);
  buffers.clear();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s REQUEST_FD REPLY_FD (started by gpuconv.simulator)\n", argv[0]);
    return 2;
  }
  request_fd = atoi(argv[1]);
  reply_fd = atoi(argv[2]);
  __sanitizer_set_death_callback(&on_sanitizer_death);
  write_value(kMagic);
  write_value<uint32_t>(SIMT_ABI_VERSION);
  for (;;) {
    const uint32_t op = read_value<uint32_t>();
    if (op == kLoad) load();
    else if (op == kLaunch) launch();
    else return 2;
  }
}
