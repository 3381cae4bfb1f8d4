"""gpuconv.torch under torch.compile: Dynamo traces the functions, their autograd Functions and
modules into one graph (fullgraph=True), each computation one ``torch.ops.gpuconv.compute`` node,
and the compiled forward and backward give eager gpuconv's values exactly (the same computations
run) and torch's within rounding. Expected values: eager gpuconv.torch and torch.nn.functional,
double precision, the reference executor (the simulator for the converted model)."""
import copy
import json

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import gpuconv  # noqa: E402
import gpuconv.torch as G  # noqa: E402

from small_cnn import SmallCNN  # noqa: E402


def randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def compiled(function, **options):
    return torch.compile(function, fullgraph=True, backend="aot_eager", **options)


W, WT, B = randn(6, 3, 3, 3, seed=1), randn(6, 2, 2, 3, seed=2), randn(6, seed=3)
W_DEPTHWISE, RESIDUAL = randn(3, 1, 3, 3, seed=5), randn(2, 6, 5, 5, seed=4)
BOXES = torch.tensor([[0, 1.0, 1.5, 7.0, 6.0], [1, 0.5, 2.0, 8.5, 4.0]], dtype=torch.float64)

# name -> a function of x (N, 3, 9, 10) returning one tensor; every gpuconv.torch function with
# the arguments that change its computation's description (output shape, layout, results).
CASES = {
    "conv2d_epilogue": lambda x: G.conv2d(x, W, B, 2, 1, activation="tanh",
                                          residual=RESIDUAL),
    "conv2d_same_dilated": lambda x: G.conv2d(x, W, None, (2, 1), "same", 2),
    "conv2d_pairs_of_pads": lambda x: G.conv2d(x, W, None, 1, ((2, 0), (1, 3))),
    "conv2d_depthwise": lambda x: G.conv2d(x, W_DEPTHWISE, groups=3),
    "conv2d_unbatched": lambda x: G.conv2d(x[0], W, B, padding=1),
    "conv_transpose2d": lambda x: G.conv_transpose2d(G.conv2d(x, W), WT, B[:2], 2, 1, 1,
                                                     groups=1, dilation=2),
    "conv_transpose2d_output_size": lambda x: G.conv_transpose2d(
        G.conv2d(x, W), WT, None, 2, output_size=(15, 18)),
    "max_pool2d": lambda x: G.max_pool2d(x, 3, 2, 1, ceil_mode=True),
    "max_pool2d_indices": lambda x: G.max_pool2d(x, 2, 1, 0, 2, return_indices=True)[0],
    "avg_pool2d": lambda x: G.avg_pool2d(x, 3, 2, 1, True, False, None),
    "avg_pool2d_divisor": lambda x: G.avg_pool2d(x, 2, divisor_override=3),
    "lp_pool2d": lambda x: G.lp_pool2d(x.abs() + 0.5, 3.0, (2, 3)),
    "lp_pool2d_infinite": lambda x: G.lp_pool2d(x, float("inf"), 2),
    "adaptive_avg_pool2d": lambda x: G.adaptive_avg_pool2d(x, (4, None)),
    "adaptive_max_pool2d": lambda x: G.adaptive_max_pool2d(x, 3, return_indices=True)[0],
    "global_pools": lambda x: G.global_avg_pool2d(x) * G.global_max_pool2d(x),
    "spatial_pyramid": lambda x: G.spatial_pyramid_pool2d(x, (1, 2), "max")
    + G.spatial_pyramid_pool2d(x, (1, 2), "avg"),
    "max_unpool2d": lambda x: G.max_unpool2d(*G.max_pool2d(x, 2, return_indices=True), 2,
                                             output_size=(9, 10)),
    "roi_align": lambda x: G.roi_align(x, BOXES, (2, 3), 0.5, -1, True),
    "roi_pool_per_image_boxes": lambda x: G.roi_pool(x, [BOXES[:1, 1:], BOXES[1:, 1:]], 2),
}


@pytest.mark.parametrize("channels_last", [False, True], ids=["NCHW", "channels_last"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_a_compiled_function_gives_eager_values_gradients_and_layout(name, channels_last):
    function = CASES[name]
    x = randn(2, 3, 9, 10)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_()
    out = compiled(function)(x)
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    expected = function(x)
    (expected_grad,) = torch.autograd.grad(expected.square().sum(), x)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=0)
    assert out.stride() == expected.stride() and grad.stride() == expected_grad.stride()


def test_a_model_calling_the_functions_compiles_to_one_graph():
    weight = randn(4, 3, 3, 3, seed=1).requires_grad_()

    def model(x, functions):
        y = functions.conv2d((x * 2).sin(), weight, padding=1).relu()
        return (functions.max_pool2d(y, 2) * 3).sum()

    x = randn(2, 3, 6, 6, seed=2)
    explained = torch._dynamo.explain(model)(x, G)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)
    # The operator's nodes are in the autograd Functions' forward and backward subgraphs: the
    # convolution and the pooling, then the weight's gradient (x needs none) and the pooling's.
    operators = {"fwd": 0, "bwd": 0}
    for graph in explained.graphs:
        for name, module in graph.named_modules():
            if isinstance(module, torch.fx.GraphModule) and name[:3] in operators:
                operators[name[:3]] += sum(str(node.target) == "gpuconv.compute"
                                           for node in module.graph.nodes)
    assert operators == {"fwd": 2, "bwd": 2}
    out = compiled(model)(x, G)
    (gradient,) = torch.autograd.grad(out, weight)
    expected = model(x, F)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(gradient, torch.autograd.grad(expected, weight)[0])


def _check_converted_model(dtype, inputs, **options):
    reference = SmallCNN().to(dtype)
    model = copy.deepcopy(reference)
    G.convert(model)
    step = compiled(model, **options)
    for x in inputs:
        out = step(x)
        out.square().sum().backward()
        expected = reference(x)
        expected.square().sum().backward()
        tolerance = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else {}
        torch.testing.assert_close(out, expected, **tolerance)
        for (name, p), q in zip(model.named_parameters(), reference.parameters()):
            torch.testing.assert_close(p.grad, q.grad, **tolerance, msg=name)
        model.zero_grad()
        reference.zero_grad()


def test_a_converted_model_trains_compiled_in_one_graph():
    _check_converted_model(torch.float64, [randn(2, 3, 16, 16)])


def test_a_converted_model_compiled_with_dynamic_shapes_takes_new_sizes():
    # gpuconv's checks read a symbolic size as its traced value: each size is a guard, and a
    # new one recompiles, with the right values.
    _check_converted_model(torch.float64, [randn(2, 3, 16, 16), randn(3, 3, 20, 12, seed=1)],
                           dynamic=True)


def test_a_converted_model_compiles_on_the_simulated_kernels():
    with gpuconv.simulate():
        _check_converted_model(torch.float32, [randn(1, 3, 8, 8, dtype=torch.float32)])


def test_compiled_inference_under_no_grad():
    reference = SmallCNN().double().eval()
    model = copy.deepcopy(reference)
    G.convert(model)
    x = randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(compiled(model)(x), reference(x))


def test_a_converted_model_exports():
    # torch.export builds on the same tracing: the exported program holds the operator's nodes
    reference = SmallCNN().double().eval()
    model = copy.deepcopy(reference)
    G.convert(model)
    x = randn(2, 3, 16, 16)
    program = torch.export.export(model, (x,))
    targets = [str(node.target) for node in program.graph.nodes]
    # the swapped layers: 4 convolutions, a transposed one, 3 poolings
    assert targets.count("gpuconv.compute.default") == 8
    torch.testing.assert_close(program.module()(x), reference(x))


def test_the_inductor_backend_runs_the_operator():
    weight = randn(4, 3, 3, 3, seed=1)

    def layer(x):
        return G.avg_pool2d(G.conv2d(x, weight, padding=1, activation="relu") + 1, 2)

    x = randn(2, 3, 8, 8)
    out = torch.compile(layer, fullgraph=True)(x)
    torch.testing.assert_close(out, F.avg_pool2d(F.relu(F.conv2d(x, weight, padding=1)) + 1, 2))


def test_an_invalid_argument_fails_while_traced_with_gpuconvs_error():
    with pytest.raises(Exception, match="stride must be >= 1") as raised:
        compiled(lambda x: G.conv2d(x, W, stride=0))(randn(1, 3, 5, 5))
    assert "ValueError" in str(raised.value)
    with pytest.raises(Exception, match="kernel_size"):
        compiled(lambda x: G.max_pool2d(x, 0))(randn(1, 3, 5, 5))


def test_an_argument_json_cannot_hold_runs_eagerly_and_gets_gpuconvs_error():
    function = torch.compile(lambda x: G.conv2d(x, W, stride=object()), backend="aot_eager")
    with pytest.raises(TypeError, match="stride"):
        function(randn(1, 3, 5, 5))


def _operator_arguments(name, tensors, statics):
    return (name, tensors, json.dumps(statics))


@pytest.mark.parametrize("arguments", [
    ("conv2d", [randn(2, 3, 7, 7), W, B, None],
     [dict(stride=2, padding=((1, 0), (2, 1)), dilation=1, groups=1, activation="relu",
           algorithm="auto"), "NCHW"]),
    ("conv2d", [randn(2, 3, 7, 7).to(memory_format=torch.channels_last), W, None, None],
     [dict(stride=1, padding="same", dilation=2, groups=1, activation=None, algorithm="auto"),
      "NHWC"]),
    ("max_pool", [randn(2, 3, 7, 7)], ["max_pool2d", [3, 2, 1, 1, True], "NCHW"]),
    ("pool", [randn(2, 3, 7, 7)], ["spatial_pyramid_pool2d", [[1, 2], "avg"], "NCHW"]),
    ("pool_gradient", [randn(2, 3, 3, 3), randn(2, 3, 7, 7)],
     ["avg_pool2d", [3, 2, 0, False, True, None], None, "NCHW"]),
    ("roi", [randn(2, 3, 7, 7), BOXES], ["roi_align", [2, 1.0, 2, False], "NCHW", False]),
], ids=["conv2d", "conv2d_nhwc", "max_pool", "spatial_pyramid", "pool_gradient", "roi_align"])
def test_the_operator_passes_torchs_custom_op_checks(arguments):
    # schema, fake (the described shapes and strides are the results'), aot dispatch
    results = torch.library.opcheck(torch.ops.gpuconv.compute.default,
                                    _operator_arguments(*arguments))
    assert set(results.values()) == {"SUCCESS"}, results


def test_only_computations_reading_the_host_are_kept_out_of_cuda_graphs():
    # "compute" is recorded by mode="reduce-overhead"; the scans of index and box values wait for
    # the device, so their computations run between its CUDA graphs (gpuconv/_capture.py)
    unsafe = torch.Tag.cudagraph_unsafe
    assert unsafe not in torch.ops.gpuconv.compute.default.tags
    assert unsafe in torch.ops.gpuconv.compute_reading_host.default.tags
    x = randn(2, 3, 8, 8)
    y, indices = F.max_pool2d(x, 2, return_indices=True)

    def model(x, y, indices):
        return (G.roi_align(G.conv2d(x, W, padding=1), BOXES, 2).sum()
                + G.max_unpool2d(G.max_pool2d(y, 1), indices, 2).sum())

    explained = torch._dynamo.explain(model)(x, y, indices)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)
    targets = [str(node.target) for graph in explained.graphs for node in graph.graph.nodes
               if str(node.target).startswith("gpuconv.")]
    assert sorted(targets) == ["gpuconv.compute", "gpuconv.compute", "gpuconv.compute_reading_host",
                               "gpuconv.compute_reading_host"], targets
    torch.testing.assert_close(compiled(model)(x, y, indices), model(x, y, indices))
