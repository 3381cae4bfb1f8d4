"""The __shared__ rewrite (gpuconv/simulator/_rewrite.py) on preprocessed text."""
import numpy as np
import pytest

from gpuconv.simulator import KernelFault, load_module
from gpuconv.simulator._rewrite import SharedDeclarationError, rewrite_launch_bounds, rewrite_shared

MARKER = '# 1 "k.cu"\n'


def test_static_declaration_becomes_a_per_block_cell():
    out = rewrite_shared(MARKER + "void k() {\n  __shared__ __attribute__((aligned(16))) "
                                  "volatile float tile[4][N + 1];\n}\n")
    assert "using __simt_shared_t_0 = volatile float[4][N + 1];" in out
    assert "__simt_shared_t_0& tile = *static_cast<__simt_shared_t_0*>(({ simt_shared_cell(" in out
    assert '"tile", __func__' in out
    assert "__shared__" not in out


def test_dynamic_declaration_becomes_a_pointer():
    out = rewrite_shared(MARKER + "void k() { extern __shared__ __attribute__((aligned(16))) "
                                  "unsigned char raw[]; }")
    assert ("unsigned char* const raw = static_cast<unsigned char*>(({ simt_dynamic_shared(); "
            "}));") in out


def test_dependent_types_and_scalars():
    out = rewrite_shared(MARKER + "template <class T> void k() { static __shared__ "
                                  "typename Traits<T, 2>::Storage storage; }")
    assert "using __simt_shared_t_0 = typename Traits<T, 2>::Storage;" in out
    assert "__simt_shared_t_0& storage =" in out


def test_lines_after_a_multiline_declaration_keep_their_numbers():
    text = MARKER + "void k() {\n  __shared__ float\n      tile[\n 8];\n  int after;\n}\n"
    out = rewrite_shared(text)
    assert out.count("\n") == text.count("\n")
    lines = out.splitlines()
    assert lines[2].lstrip().startswith("static char __simt_shared_key_0;")  # on its own line
    assert lines[5] == "  int after;"


@pytest.mark.parametrize("source,words", [
    ("void k() { __shared__ float a[4], b[4]; }", "one __shared__ variable per statement"),
    ("void k() { __shared__ int a = 0; }", "cannot have an initializer"),
    ("void k() { extern __shared__ float a[8]; }", "extern __shared__ __align__(N) T a[];"),
    ("void k() {\n\n __shared__ float a[]; }", "k.cu:3: a static __shared__ array needs its size"),
])
def test_unsupported_declarations_are_explained(source, words):
    with pytest.raises(SharedDeclarationError, match=words.replace("(", "\\(").replace(
            ")", "\\)").replace("[", "\\[").replace("]", "\\]")):
        rewrite_shared(MARKER + source)


def test_string_literals_are_left_alone():
    text = MARKER + 'void k() { printf("__shared__ is rewritten"); }'
    assert rewrite_shared(text) == text


def test_shared_at_namespace_scope_fails_to_compile():
    from gpuconv._kernel_source import KernelCompileError
    with pytest.raises(KernelCompileError, match="statement-expressions are not allowed outside"):
        load_module("__shared__ float g[4];\nextern \"C\" __global__ void k() { g[0] = 1; }",
                    ["k"], source_name="namespace_scope.cu")


def test_source_lines_stay_exact_after_rewritten_declarations():
    code = """extern "C" __global__ void k(int* out) {
  __shared__ int a
      [32];
  extern __shared__ __align__(16) int dyn[];
  a[threadIdx.x] = dyn[0];
  if (threadIdx.x == 3) __trap();
  out[threadIdx.x] = a[threadIdx.x];
}
"""
    module = load_module(code, ["k"], source_name="lines.cu")
    with pytest.raises(KernelFault) as caught:
        module.get_function("k")(1, 32, (np.zeros(32, np.int32),), shared_mem=4)
    assert caught.value.source == "lines.cu:6"


def test_launch_bounds_become_the_body_s_first_statement():
    text = (MARKER + "template <int W>\nvoid __simt_launch_bounds__(Tile<W,\n 2>::THREADS, 1)\n"
            "k(const float* x, int (*f)(int)) {\n  int a;\n}\nvoid __simt_launch_bounds__(64) "
            "d(int);\n")
    out = rewrite_launch_bounds(text)
    assert out.count("\n") == text.count("\n")
    lines = out.splitlines()
    assert lines[2].split() == ["void"] and lines[3].strip() == ""
    assert lines[4] == "k(const float* x, int (*f)(int)) { simt_launch_bounds(Tile<W, 2>::THREADS, 1);"
    assert lines[5] == "  int a;"
    assert "__simt_launch_bounds__" not in out
    assert lines[7].split() == ["void", "d(int);"]            # a declaration: no check


LAUNCH_BOUNDS_KERNEL = """template <int WARPS>
__global__ void __launch_bounds__(WARPS * 32, 1) scaled(float* out) {
  out[threadIdx.x] = 2.0f * threadIdx.x;
}
"""


def test_a_launch_past_the_kernel_s_launch_bounds_is_refused_as_on_a_gpu():
    from gpuconv.simulator import LaunchBoundsError
    module = load_module(LAUNCH_BOUNDS_KERNEL, ["scaled<2>"], source_name="bounds.cu")
    out = np.zeros(128, np.float32)
    module.get_function("scaled<2>")(1, 64, (out,))
    np.testing.assert_array_equal(out[:64], 2.0 * np.arange(64))
    with pytest.raises(LaunchBoundsError, match=r"launched with 128 threads per block, more "
                       r"than its __launch_bounds__ \(64\) at bounds.cu:2") as caught:
        module.get_function("scaled<2>")(1, (64, 2), (out,))
    assert caught.value.source == "bounds.cu:2"
