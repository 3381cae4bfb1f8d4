// Power-average pooling (torch.nn.functional.lp_pool2d), forward and backward, NCHW and NHWC.
// PyTorch defines it through avg_pool2d (no padding, count_include_pad):
//   f = avg_pool2d(x ** p),  out = (sign(f) * relu(|f|) * R*S) ** (1/p)
// so a ceil_mode window clipped at the border has its mean scaled by the full kernel area. Here
// `scaled` names f * R*S, the quantity raised to 1/p. Design: kernels/pool/NOTES.md.
#include "dtypes.cuh"
#include "pool_shape.cuh"
#include "pool_window.cuh"

namespace {

// The in-bounds window of output (p, q) (no padding) and avg_pool2d's divisor for it: the window
// clipped to the input.
struct LpWindow {
  int hstart, hend, wstart, wend;
  int divisor;
};

__device__ __forceinline__ LpWindow lp_window(int p, int q, int H, int W, int R, int S,
                                              int stride_h, int stride_w) {
  LpWindow win;
  win.hstart = p * stride_h;
  win.wstart = q * stride_w;
  win.hend = min(win.hstart + R, H);
  win.wend = min(win.wstart + S, W);
  win.divisor = (win.hend - win.hstart) * (win.wend - win.wstart);
  return win;
}

// x ** p as PyTorch's pow(tensor, scalar) computes it: its special exponents take arithmetic
// paths whose results differ from pow's at -inf and -0 (sqrt(-inf) is NaN where pow(-inf, 0.5)
// is +inf), and lp_pool2d's powers of p, 1/p and their gradients' p - 1 and 1/p - 1 all go
// through it in PyTorch.
template <class A>
__device__ __forceinline__ A torch_pow(A x, A p) {
  if (p == A(2)) return x * x;
  if (p == A(3)) return x * x * x;
  if (p == A(0.5)) return sqrt(x);
  if (p == A(-0.5)) return A(1) / sqrt(x);
  if (p == A(-1)) return A(1) / x;
  if (p == A(-2)) return A(1) / (x * x);
  return pow(x, p);
}

// torch.sign: 0 for NaN.
template <class A>
__device__ __forceinline__ A torch_sign(A a) {
  return static_cast<A>(a > A(0)) - static_cast<A>(a < A(0));
}

// f * R*S for one window. PyTorch's sign(f) * relu(|f|) is f itself, NaN included (relu(NaN)
// is NaN and NaN * torch_sign's 0 stays NaN), so no special case is needed.
template <class T, bool kNHWC>
__device__ __forceinline__ gc::acc_t<T> lp_scaled(const T* __restrict__ plane, int ps, int W,
                                                  const LpWindow& win, gc::acc_t<T> norm_type,
                                                  int kernel_area) {
  using A = gc::acc_t<T>;
  A sum = A(0);
  for (int h = win.hstart; h < win.hend; ++h) {
    for (int w = win.wstart; w < win.wend; ++w) {
      sum += torch_pow(gc::to_acc(plane[(h * W + w) * ps]), norm_type);
    }
  }
  return sum / static_cast<A>(win.divisor) * static_cast<A>(kernel_area);
}

}  // namespace

// main loop: one thread per output element; see max_pool.cu for the coalescing argument.
// `inverse_norm` is 1 / norm_type taken in double on the host, then rounded: a norm_type past
// float's range rounds to inf, whose reciprocal here would be 0 where PyTorch's is tiny.
template <class T, bool kNHWC>
__global__ void lp_pool2d_forward(const T* __restrict__ x, T* __restrict__ y,
                                  GC_POOL_SHAPE_PARAMS, gc::acc_t<T> norm_type,
                                  gc::acc_t<T> inverse_norm) {
  GC_POOL_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  const int total = N * C * P * Q;
  const int ps = gc::pixel_stride<kNHWC>(C);
  for (long long i = gc::grid_first(); i < total; i += gc::grid_stride()) {
    const gc::Coord4 o = gc::unflatten<kNHWC>((int)i, GC_POOL_SHAPE.output);
    const LpWindow win = lp_window(o.h, o.w, H, W, R, S, stride_h, stride_w);
    const A scaled = lp_scaled<T, kNHWC>(x + gc::plane_offset<kNHWC>(o.n, o.c, C, H, W), ps, W,
                                         win, norm_type, R * S);
    // epilogue
    y[i] = gc::from_acc<T>(torch_pow(scaled, inverse_norm));
  }
}

// The backward's first pass: f * R*S of every window in the accumulator type (float for halves:
// the backward needs it more precisely than the rounded output would give it).
template <class T, bool kNHWC>
__global__ void lp_pool2d_scaled(const T* __restrict__ x, gc::acc_t<T>* __restrict__ scaled,
                                 GC_POOL_SHAPE_PARAMS, gc::acc_t<T> norm_type) {
  GC_POOL_SHAPE_NAMES;
  const int total = N * C * P * Q;
  const int ps = gc::pixel_stride<kNHWC>(C);
  for (long long i = gc::grid_first(); i < total; i += gc::grid_stride()) {
    const gc::Coord4 o = gc::unflatten<kNHWC>((int)i, GC_POOL_SHAPE.output);
    const LpWindow win = lp_window(o.h, o.w, H, W, R, S, stride_h, stride_w);
    scaled[i] = lp_scaled<T, kNHWC>(x + gc::plane_offset<kNHWC>(o.n, o.c, C, H, W), ps, W, win,
                                    norm_type, R * S);
  }
}

// Backward as a gather (no atomics, bitwise reproducible): PyTorch's autograd through the
// expression above. Per window, d out / d f = (1/p) * scaled^(1/p - 1) * R*S, masked where
// relu(|f|) <= 0 (so a window with f = 0 sends nothing back); avg_pool2d's backward divides by
// the divisor; x ** p contributes p * x^(p - 1).
template <class T, bool kNHWC>
__global__ void lp_pool2d_backward(const T* __restrict__ grad_output, const T* __restrict__ x,
                                   const gc::acc_t<T>* __restrict__ scaled,
                                   T* __restrict__ grad_input, GC_POOL_SHAPE_PARAMS,
                                   gc::acc_t<T> norm_type, gc::acc_t<T> inverse_norm) {
  GC_POOL_SHAPE_NAMES;
  using A = gc::acc_t<T>;
  const int total = N * C * H * W;
  const int ps = gc::pixel_stride<kNHWC>(C);
  const A kernel_area = static_cast<A>(R * S);
  for (long long i = gc::grid_first(); i < total; i += gc::grid_stride()) {
    const gc::Coord4 o = gc::unflatten<kNHWC>((int)i, GC_POOL_SHAPE.input);
    const int p0 = gc::window_first_output(o.h, 0, R, stride_h);
    const int p1 = gc::window_last_output(o.h, 0, stride_h, P);
    const int q0 = gc::window_first_output(o.w, 0, S, stride_w);
    const int q1 = gc::window_last_output(o.w, 0, stride_w, Q);
    const int plane = gc::plane_offset<kNHWC>(o.n, o.c, C, P, Q);
    A grad_pow = A(0);  // d loss / d (x ** p)
    for (int p = p0; p < p1; ++p) {
      for (int q = q0; q < q1; ++q) {
        const int j = plane + (p * Q + q) * ps;
        const A s = scaled[j];
        const A f = s / kernel_area;
        const A sign_f = torch_sign(f);
        const A grad_scaled = gc::to_acc(grad_output[j]) * inverse_norm *
                              torch_pow(s, inverse_norm - A(1));
        const A grad_relu = grad_scaled * kernel_area * sign_f;
        const bool relu_passes = !(fabs(f) <= A(0));  // NaN passes, as relu's mask does
        const A grad_f = (relu_passes ? grad_relu : A(0)) * sign_f;
        const int divisor = lp_window(p, q, H, W, R, S, stride_h, stride_w).divisor;
        grad_pow += grad_f / static_cast<A>(divisor);
      }
    }
    const A xv = gc::to_acc(x[i]);
    grad_input[i] = gc::from_acc<T>(grad_pow * (norm_type * torch_pow(xv, norm_type - A(1))));
  }
}
