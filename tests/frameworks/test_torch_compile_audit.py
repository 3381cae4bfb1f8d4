"""Regression tests from an audit of gpuconv.torch under torch.compile (aot_eager, tiny shapes):
symbolic arguments of dynamic-shape graphs, gradients whose layout the compiled backward
changes, recompilation, and the arguments a compiled graph cannot hold."""
import pytest

torch = pytest.importorskip("torch")

import gpuconv.torch as G  # noqa: E402
from torch._dynamo.utils import counters  # noqa: E402


def randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def compiled(function, **options):
    return torch.compile(function, fullgraph=True, backend="aot_eager", **options)


def assert_same(function, compiled_function, *inputs):
    """Compiled and eager give the same values, strides and gradients, bit for bit."""
    leaves = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    out, expected = compiled_function(*inputs), function(*inputs)
    grad_out = randn(*out.shape, seed=7)
    grads = torch.autograd.grad(out, leaves, grad_out)
    expected_grads = torch.autograd.grad(expected, leaves, grad_out)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert out.stride() == expected.stride()
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=0)


BOXES = torch.tensor([[0, 1.0, 1.5, 5.0, 6.0], [1, 0.5, 2.0, 6.5, 4.0]], dtype=torch.float64)
WT = randn(3, 2, 2, 2, seed=1)

# Functions whose gpuconv arguments are symbolic in a dynamic-shape graph: a float default
# (spatial_scale=1.0, which Dynamo made a SymFloat) and sizes computed from the input's.
DYNAMIC_CASES = {
    "roi_align_default_scale": lambda x: G.roi_align(x, BOXES, 2, aligned=True),
    "roi_pool_per_image_boxes": lambda x: G.roi_pool(x, [BOXES[:1, 1:], BOXES[:0, 1:]], 2),
    "conv_transpose2d_output_size": lambda x: G.conv_transpose2d(
        x, WT, None, 2, output_size=(2 * x.shape[2] + 1, 2 * x.shape[3])),
    "max_unpool2d_output_size": lambda x: G.max_unpool2d(
        *G.max_pool2d(x, 2, return_indices=True), 2, output_size=x.shape[-2:]),
    "adaptive_max_pool2d_size": lambda x: G.adaptive_max_pool2d(x, (x.shape[2] // 2, None)),
    "max_pool2d_ceil_mode": lambda x: G.max_pool2d(x, 3, 2, 1, ceil_mode=True),
}


@pytest.mark.parametrize("name", sorted(DYNAMIC_CASES))
def test_dynamic_shapes_specialize_symbolic_arguments(name):
    # Symbolic ints and floats in gpuconv's arguments were refused by assume_constant_result
    # (an Unsupported error); they are now the values they have when traced, guarded.
    function = DYNAMIC_CASES[name]
    step = compiled(function, dynamic=True)
    for shape in [(2, 3, 8, 8), (2, 3, 10, 7), (2, 3, 8, 8)]:
        assert_same(function, step, randn(*shape).requires_grad_())
    assert counters["stats"]["unique_graphs"] == 2      # one per size, none per call


def test_a_float_argument_of_a_dynamic_graph_recompiles_for_a_new_value():
    step = compiled(lambda x, scale: G.roi_align(x, BOXES, 2, scale), dynamic=True)
    x = randn(2, 3, 8, 8)
    for scale in (0.5, 0.25, 0.5):
        torch.testing.assert_close(step(x, scale), G.roi_align(x, BOXES, 2, scale),
                                   rtol=0, atol=0)


@pytest.mark.parametrize("weight_channels_last", [False, True])
def test_a_channels_last_bias_gradient_is_eagers(weight_channels_last):
    # AOTAutograd hands the compiled backward the output's gradient in the output's layout
    # (channels_last) where eager's was contiguous: the float64 reference's bias gradient
    # summed in memory order and differed in the last bits.
    x = randn(2, 4, 7, 8).to(memory_format=torch.channels_last).requires_grad_()
    weight = randn(6, 4, 3, 3, seed=1)
    if weight_channels_last:
        weight = weight.to(memory_format=torch.channels_last)
    bias = randn(6, seed=2).requires_grad_()

    def function(x, weight, bias):
        return G.conv2d(x, weight, bias, 2, 1)

    assert_same(function, compiled(function), x, weight.requires_grad_(), bias)


def test_the_same_call_does_not_recompile_and_deterministic_mode_does():
    weight = randn(4, 3, 3, 3, seed=1).requires_grad_()
    step = compiled(lambda x: G.conv2d(x, weight, padding=1).sum() + G.max_pool2d(x, 2).sum())
    x = randn(2, 3, 6, 6).requires_grad_()
    try:
        for deterministic in (False, False, True, True, False):
            torch.use_deterministic_algorithms(deterministic)
            step(x).backward()
    finally:
        torch.use_deterministic_algorithms(False)
    assert counters["stats"]["unique_graphs"] == 2


def test_a_tensor_spelled_argument_runs_eagerly_without_fullgraph():
    # A 0-d tensor kernel_size / norm_type is data-dependent in a graph (torch's own
    # functions refuse it with fullgraph=True too): without fullgraph it is a graph break and
    # eager's values.
    size, norm = torch.tensor(2), torch.tensor(3.0)

    def function(x):
        return G.max_pool2d(x, size) + G.lp_pool2d(x.abs() + 0.5, norm, 2)

    x = randn(1, 2, 6, 6)
    out = torch.compile(function, backend="aot_eager")(x)
    torch.testing.assert_close(out, function(x), rtol=0, atol=0)
