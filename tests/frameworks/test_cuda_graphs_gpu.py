"""gpuconv.torch inside CUDA graphs (skipped without a GPU, CuPy and a CUDA build of torch):
memory from torch's caching allocator, a converted model captured with ``torch.cuda.graph``
(inference and a training step) and replayed on new inputs, torch.compile's
mode="reduce-overhead" recording the gpuconv operator in its graphs, and the calls that read a
device value on the host refused under capture with a clear error (gpuconv/_capture.py)."""
import copy

import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("cuda_torch_without_tf32")]

torch = pytest.importorskip("torch")
cupy = pytest.importorskip("cupy")
F = torch.nn.functional

import gpuconv.torch as G  # noqa: E402

from small_cnn import SmallCNN  # noqa: E402


def randn(*shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(device="cuda", dtype=dtype)


def converted_pair(memory_format=torch.contiguous_format):
    torch.manual_seed(0)
    reference = SmallCNN().cuda().to(memory_format=memory_format)
    model = copy.deepcopy(reference)
    G.convert(model)
    return model, reference


def warmed_up(step, *inputs):
    """Runs ``step`` on a side stream three times (torch's recipe before a capture: kernels
    compiled, launch plans recorded, the allocator's blocks in place)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step(*inputs)
    torch.cuda.current_stream().wait_stream(side)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_results_are_torch_tensors_from_its_caching_allocator(dtype):
    x, w = randn(2, 8, 9, 10, dtype=dtype), randn(16, 8, 3, 3, seed=1, dtype=dtype)
    G.conv2d(x, w, padding=1)          # kernels compiled, plan recorded
    torch.cuda.synchronize()
    cupy_pool = cupy.get_default_memory_pool().used_bytes()
    before = torch.cuda.memory_allocated()
    y = G.conv2d(x, w, padding=1)
    # the result's memory is torch's (accounted by its allocator), CuPy's pool is not touched
    assert torch.cuda.memory_allocated() - before >= y.numel() * y.element_size()
    assert cupy.get_default_memory_pool().used_bytes() == cupy_pool
    side = torch.cuda.Stream()
    y.record_stream(side)              # a storage torch's allocator knows
    torch.testing.assert_close(y, F.conv2d(x, w, padding=1), rtol=1e-2 if dtype ==
                               torch.float16 else 1e-4, atol=1e-2 if dtype == torch.float16
                               else 1e-4)
    pooled, indices = G.max_pool2d(y, 2, return_indices=True)
    expected, expected_indices = F.max_pool2d(y, 2, return_indices=True)
    assert torch.equal(pooled, expected) and torch.equal(indices, expected_indices)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last],
                         ids=["NCHW", "channels_last"])
def test_a_converted_model_captured_and_replayed_for_inference(memory_format):
    model, reference = converted_pair(memory_format)
    model.eval()
    reference.eval()
    static_x = randn(4, 3, 16, 16).contiguous(memory_format=memory_format)
    with torch.no_grad():
        warmed_up(model, static_x)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_y = model(static_x)
        for seed in (1, 2, 3):
            x = randn(4, 3, 16, 16, seed=seed)
            static_x.copy_(x)
            graph.replay()
            torch.testing.assert_close(static_y, reference(x), rtol=1e-4, atol=1e-4)


def test_a_training_step_captured_and_replayed():
    model, reference = converted_pair()
    static_x, static_target = randn(4, 3, 16, 16), randn(4, 5, seed=9)

    def step(x, target):
        F.mse_loss(model(x), target).backward()

    warmed_up(step, static_x, static_target)
    model.zero_grad(set_to_none=False)     # the gradients' tensors stay where the graph wrote
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step(static_x, static_target)
    for seed in (1, 2):
        x, target = randn(4, 3, 16, 16, seed=seed), randn(4, 5, seed=seed + 10)
        static_x.copy_(x)
        static_target.copy_(target)
        model.zero_grad(set_to_none=False)
        reference.zero_grad()
        graph.replay()
        F.mse_loss(reference(x), target).backward()
        for (name, p), q in zip(model.named_parameters(), reference.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-4, msg=name)


def test_reduce_overhead_records_the_gpuconv_operator_in_its_graphs(monkeypatch):
    from torch._dynamo.utils import counters

    from gpuconv.torch import _custom_op
    torch._dynamo.reset()
    counters.clear()
    runs = []
    for name in ("conv2d", "max_pool", "pool", "conv_transpose2d"):
        kept = _custom_op._COMPUTATIONS[name]

        def counted(*args, _run=kept.run):
            runs.append(1)
            return _run(*args)
        monkeypatch.setitem(_custom_op._COMPUTATIONS, name, _custom_op.Computation(
            counted, kept.describe, kept.reads_host))
    model, reference = converted_pair()
    model.eval()
    reference.eval()
    step = torch.compile(model, fullgraph=True, mode="reduce-overhead")
    runs_per_call = []
    with torch.no_grad():
        for seed in range(1, 6):
            x = randn(2, 3, 11, 12, seed=seed)
            runs.clear()
            out = step(x).clone()
            runs_per_call.append(len(runs))
            torch.testing.assert_close(out, reference(x), rtol=1e-4, atol=1e-4)
    assert not counters["inductor"]["cudagraph_skips"], dict(counters["inductor"])
    # warm-up and recording run gpuconv's Python; a replay runs the recorded kernels alone
    assert runs_per_call[0] > 0 and runs_per_call[-1] == 0, runs_per_call


@pytest.mark.parametrize("call", ["max_unpool2d", "roi_align"])
def test_a_call_reading_values_on_the_host_is_refused_under_capture(call):
    x = randn(1, 2, 8, 8)
    _, indices = F.max_pool2d(x, 2, return_indices=True)
    boxes = torch.tensor([[0, 0.0, 0.0, 4.0, 4.0]], device="cuda")
    run = {"max_unpool2d": lambda: G.max_unpool2d(F.max_pool2d(x, 2), indices, 2),
           "roi_align": lambda: G.roi_align(x, boxes, 2)}[call]
    run()                                    # compiled and valid outside a capture
    graph = torch.cuda.CUDAGraph()
    with pytest.raises(RuntimeError, match="CUDA graph capture forbids"):
        with torch.cuda.graph(graph):
            run()
    torch.cuda.synchronize()
    # the stream is usable again, and the call still runs outside a capture
    torch.testing.assert_close(G.max_unpool2d(F.max_pool2d(x, 2), indices, 2),
                               F.max_unpool2d(F.max_pool2d(x, 2), indices, 2))
