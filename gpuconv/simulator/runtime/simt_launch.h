// What the generated entry points (_build.py) call: describe a kernel's parameters and launch a
// grid of it. Both take the kernel as a function pointer, so template deduction supplies the
// parameter types of any name expression (a template instantiation or a plain kernel name).
#pragma once

namespace simt_detail {

template <class T>
constexpr char kind_of() {
  using U = std::remove_cv_t<T>;
  if (std::is_void<U>::value) return 'v';
  if (std::is_pointer<U>::value) return 'p';
  if (std::is_same<U, bool>::value) return 'b';
  if (std::is_same<U, char>::value) return 'c';
  if (std::is_same<U, __half>::value) return 'f';
  if (std::is_same<U, __nv_bfloat16>::value) return 'B';
  if (std::is_floating_point<U>::value) return 'f';
  if (std::is_integral<U>::value) return std::is_signed<U>::value ? 'i' : 'u';
  return 'V';
}

template <class T>
constexpr unsigned size_of() {
  if constexpr (std::is_void<T>::value) return 0;
  else return sizeof(T);
}

template <class T>
constexpr unsigned align_of() {
  if constexpr (std::is_void<T>::value) return 0;
  else return alignof(T);
}

// The C++ spelling of T, taken from __PRETTY_FUNCTION__ ("... [with T = const float*]").
template <class T>
void type_name(char* out, size_t capacity) {
  const char* pretty = __PRETTY_FUNCTION__;
  const char* start = strstr(pretty, "T = ");
  start = start ? start + 4 : pretty;
  size_t n = 0;
  int depth = 0;
  for (const char* p = start; *p && n + 1 < capacity; ++p) {
    const char c = *p;
    if (c == '<' || c == '(' || c == '[') {
      ++depth;
    } else if (c == '>' || c == ')') {
      --depth;
    } else if (c == ']') {
      if (depth == 0) break;
      --depth;
    } else if (c == ';' && depth == 0) {
      break;
    }
    out[n++] = c;
  }
  out[n] = '\0';
}

template <class T>
void describe(simt_param_desc* d) {
  using P = std::decay_t<T>;
  memset(d, 0, sizeof *d);
  d->size = sizeof(P);
  d->kind = kind_of<P>();
  if constexpr (std::is_pointer<P>::value) {
    using Pointee = std::remove_pointer_t<P>;
    d->pointee_kind = kind_of<Pointee>();
    d->pointee_size = size_of<std::remove_cv_t<Pointee>>();
    d->pointee_align = static_cast<uint8_t>(align_of<std::remove_cv_t<Pointee>>());
    d->pointee_const = std::is_const<Pointee>::value;
  }
  type_name<P>(d->type_name, sizeof d->type_name);
}

template <class... A>
int params(void (*)(A...), simt_param_desc* out, int capacity) {
  const int count = static_cast<int>(sizeof...(A));
  if (capacity >= count) {
    int i = 0;
    (describe<A>(out + i++), ...);
    (void)i;
  }
  return count;
}

template <class... A>
struct Launch {
  void (*kernel)(A...);
  void** argv;

  template <size_t... I>
  void call(std::index_sequence<I...>) {
    kernel(*static_cast<std::decay_t<A>*>(argv[I])...);
  }
  static void body(void* self) { static_cast<Launch*>(self)->call(std::index_sequence_for<A...>{}); }
};

template <class... A>
int launch(void (*kernel)(A...), const char* name, const simt_launch_config* config, void** argv,
           simt_error* error) {
  Launch<A...> launch{kernel, argv};
  const simt_index_vars vars = {&threadIdx, &blockIdx, &blockDim, &gridDim};
  return simt_run_grid(config, &vars, name, &Launch<A...>::body, &launch, error);
}

}  // namespace simt_detail
