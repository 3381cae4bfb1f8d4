"""Bridge plans (gpuconv/torch/_plans.py): a gpuconv.torch convolution whose torch signature was
seen before replays its gpuconv launch plan without the bridge's and the front's checks. Under
the simulator: the second call of a signature replays and gives the full path's bits; what the
fronts' keys read outside the arguments (simulation, autotuning, the deterministic mode) and
what the tensors' arrays are (views, not copies) decide whether a call may replay."""
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import gpuconv  # noqa: E402
import gpuconv.torch as G  # noqa: E402
from gpuconv import _call_plans  # noqa: E402
from gpuconv.conv import autotune  # noqa: E402
from gpuconv.torch import _bridge, _plans  # noqa: E402

PLANS = _call_plans.PLANS


@pytest.fixture(autouse=True)
def fresh_plans():
    _plans.clear()
    PLANS.clear()
    yield
    _plans.clear()
    PLANS.clear()


def randn(*shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)


def front_calls(monkeypatch, module, name):
    """The calls that reach gpuconv front ``module.name`` (a replayed call does not)."""
    calls = []
    real = getattr(module, name)

    def spy(*args, **kwargs):
        calls.append(name)
        return real(*args, **kwargs)
    monkeypatch.setattr(module, name, spy)
    return calls


# (input, weight, bias, conv2d keywords): NCHW; channels_last input and weights (NHWC); a
# strided depthwise layer with a fused residual and activation.
CASES = {
    "nchw": (lambda s: randn(2, 4, 7, 6, seed=s), randn(6, 2, 3, 3, seed=9), randn(6, seed=8),
             dict(stride=2, padding=1, groups=2)),
    "channels_last": (
        lambda s: randn(2, 8, 6, 5, seed=s).contiguous(memory_format=torch.channels_last),
        randn(8, 8, 3, 3, seed=9).contiguous(memory_format=torch.channels_last), None,
        dict(padding=1)),
    "depthwise_residual": (lambda s: randn(2, 4, 6, 6, seed=s), randn(4, 1, 3, 3, seed=9),
                           randn(4, seed=8), dict(padding=1, groups=4, activation="relu")),
}


def _call(case, seed):
    make_x, w, b, kwargs = CASES[case]
    x = make_x(seed)
    kwargs = dict(kwargs)
    if kwargs.get("activation"):
        kwargs["residual"] = randn(*x.shape, seed=seed + 100).contiguous(
            memory_format=torch.channels_last if _bridge.is_channels_last(x)
            else torch.contiguous_format)
    return x, w, b, kwargs


def _expected(x, w, b, kwargs):
    y = F.conv2d(x, w, b, kwargs.get("stride", 1), kwargs.get("padding", 0), 1,
                 kwargs.get("groups", 1))
    if "residual" in kwargs:
        y = y + kwargs["residual"]
    return torch.relu(y) if kwargs.get("activation") == "relu" else y


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_second_call_of_a_signature_replays_with_the_full_paths_bits(monkeypatch, case):
    calls = front_calls(monkeypatch, gpuconv, "conv2d")
    with gpuconv.simulate():
        first_inputs, second_inputs = _call(case, 0), _call(case, 1)
        first = G.conv2d(*first_inputs[:3], **first_inputs[3])
        replays = PLANS.replays
        second = G.conv2d(*second_inputs[:3], **second_inputs[3])
        assert calls == ["conv2d"] and PLANS.replays == replays + 1
        # The same call on the full path (the entry forgotten) gives the same bits.
        _plans.clear()
        again = G.conv2d(*second_inputs[:3], **second_inputs[3])
    assert calls == ["conv2d", "conv2d"]
    assert torch.equal(again, second)
    assert second.is_contiguous(memory_format=torch.channels_last) == (case == "channels_last")
    for y, (x, w, b, kwargs) in ((first, first_inputs), (second, second_inputs)):
        torch.testing.assert_close(y, _expected(x, w, b, kwargs), rtol=1e-5, atol=1e-5)


def test_a_model_converted_replays_its_forward_and_backward():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(8, 4, 1, stride=2)).double()
    reference = [p.detach().clone() for p in model.parameters()]
    G.convert(model)

    def step(seed):
        model.zero_grad()
        out = model(randn(2, 3, 8, 8, seed=seed, dtype=torch.float64))
        out.backward(torch.ones_like(out))
        return out.detach(), [p.grad.clone() for p in model.parameters()]

    with gpuconv.simulate():
        step(0)
        replays = PLANS.replays
        out, grads = step(1)
    # Two forwards, and per layer the input gradient (not the first layer's: its input needs
    # none), the weight and the bias gradients.
    assert PLANS.replays - replays == 2 + 1 + 2 * 2
    native = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                 torch.nn.Conv2d(8, 4, 1, stride=2)).double()
    with torch.no_grad():
        for p, r in zip(native.parameters(), reference):
            p.copy_(r)
    x = randn(2, 3, 8, 8, seed=1, dtype=torch.float64)
    expected = native(x)
    expected.backward(torch.ones_like(expected))
    torch.testing.assert_close(out, expected.detach(), rtol=1e-12, atol=1e-12)
    for got, p in zip(grads, native.parameters()):
        torch.testing.assert_close(got, p.grad, rtol=1e-12, atol=1e-12)


def test_outside_the_simulator_the_reference_computes_again(monkeypatch):
    from gpuconv.reference import conv as reference
    calls = front_calls(monkeypatch, reference, "conv2d")
    x, w = randn(1, 2, 5, 5), randn(3, 2, 3, 3, seed=1)
    with gpuconv.simulate():
        G.conv2d(x, w)
        G.conv2d(x, w)
    assert calls == []
    G.conv2d(x, w)
    assert calls == ["conv2d"]


def test_autotuning_turned_on_takes_the_full_path(monkeypatch, tmp_path):
    monkeypatch.setenv(autotune.ENV_CACHE, str(tmp_path / "autotune.json"))
    calls = front_calls(monkeypatch, gpuconv, "conv2d")
    x, w = randn(1, 2, 5, 5), randn(3, 2, 3, 3, seed=1)
    with gpuconv.simulate():
        G.conv2d(x, w)
        monkeypatch.setattr(autotune, "_enabled", True)
        replays = PLANS.replays
        G.conv2d(x, w)
        assert PLANS.replays == replays
    assert calls == ["conv2d", "conv2d"]


def test_the_deterministic_mode_is_part_of_a_gradients_signature(monkeypatch):
    calls = front_calls(monkeypatch, gpuconv.grad, "conv2d_weight")
    x, w = randn(2, 3, 6, 6), randn(4, 3, 3, 3, seed=1).requires_grad_()

    def weight_grad():
        w.grad = None
        G.conv2d(x, w, padding=1).sum().backward()
        return w.grad

    with gpuconv.simulate():
        weight_grad()
        weight_grad()
        assert calls == ["conv2d_weight"]
        monkeypatch.setattr(gpuconv._state, "_deterministic", True)
        deterministic = weight_grad()
        assert calls == ["conv2d_weight"] * 2
        weight_grad()
        assert calls == ["conv2d_weight"] * 2
    expected = torch.nn.grad.conv2d_weight(x, w.shape, torch.ones(2, 4, 6, 6), padding=1)
    torch.testing.assert_close(deterministic, expected, rtol=1e-5, atol=1e-5)


def test_an_input_off_alignment_is_a_signature_of_its_own(monkeypatch):
    calls = front_calls(monkeypatch, gpuconv, "conv2d")
    w = randn(8, 8, 1, 1, seed=1)
    storage = randn(2 * 8 * 4 * 4 + 1)
    aligned = storage[:-1].view(2, 8, 4, 4)
    shifted = storage[1:].view(2, 8, 4, 4)
    assert (shifted.data_ptr() - aligned.data_ptr()) % 16 != 0
    with gpuconv.simulate():
        G.conv2d(aligned, w)
        y = G.conv2d(shifted, w)
    assert calls == ["conv2d", "conv2d"]
    torch.testing.assert_close(y, F.conv2d(shifted, w), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("copied", ["neg_view", "bfloat16_without_ml_dtypes"])
def test_inputs_the_bridge_copies_are_never_remembered(monkeypatch, copied):
    """A neg-bit tensor is copied (its bit resolved): it neither replays the entry of a plain
    tensor of its layout nor is remembered; nor is bfloat16 on the CPU without ml_dtypes."""
    calls = front_calls(monkeypatch, gpuconv, "conv2d")
    plain, w = randn(1, 2, 5, 5), randn(3, 2, 3, 3, seed=1)
    if copied == "neg_view":
        x = torch._neg_view(-plain)
        assert x.is_neg() and x.stride() == plain.stride()
        remembered = 1
    else:
        monkeypatch.setattr(_bridge, "ml_dtypes", None)
        plain, w = plain.to(torch.bfloat16), w.to(torch.bfloat16)
        x, remembered = plain, 0
    with gpuconv.simulate():
        G.conv2d(plain, w)
        y = G.conv2d(x, w)
        G.conv2d(x, w)
    assert calls == ["conv2d"] * 3 and len(_plans._ENTRIES) == remembered
    torch.testing.assert_close(y, F.conv2d(x, w), rtol=1e-2, atol=1e-2)


def test_invalid_calls_still_get_the_full_paths_errors():
    x, w = randn(1, 2, 5, 5), randn(3, 2, 3, 3, seed=1)
    with gpuconv.simulate():
        G.conv2d(x, w)
        with pytest.raises(TypeError, match="weight must be a torch.Tensor"):
            G.conv2d(x, w.numpy())
        with pytest.raises(ValueError, match="stride"):
            G.conv2d(x, w, stride=0)
        with pytest.raises(TypeError, match="stride"):
            G.conv2d(x, w, stride=1.5)
        # An NHWC call's residual of another rank reaches gpuconv's check as it is.
        x_cl = x.contiguous(memory_format=torch.channels_last)
        for residual in (randn(3, 3, 3), randn(1, 3, 3, 3, 1)):
            with pytest.raises(ValueError, match="residual must be 4-D"):
                G.conv2d(x_cl, w, residual=residual)


@pytest.mark.parametrize("channels_last", [False, True])
def test_poolings_replay_their_forwards_and_gradients(monkeypatch, channels_last):
    """avg_pool2d's forward and gradient and max_pool2d's forward replay; max_pool2d's gradient
    (a front that reads its index scan's answer after a replay) always takes the full path."""
    grads = front_calls(monkeypatch, gpuconv.grad, "avg_pool2d")

    def step(seed):
        x = randn(2, 3, 7, 8, seed=seed)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x.requires_grad_()
        y = G.avg_pool2d(G.max_pool2d(x, 3, 2, 1), 2, count_include_pad=False)
        y.backward(torch.ones_like(y))
        expected_x = x.detach().clone().requires_grad_()
        expected = F.avg_pool2d(F.max_pool2d(expected_x, 3, 2, 1), 2, count_include_pad=False)
        expected.backward(torch.ones_like(expected))
        torch.testing.assert_close(y, expected, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(x.grad, expected_x.grad, rtol=1e-6, atol=1e-6)

    with gpuconv.simulate():
        step(0)
        replays = PLANS.replays
        step(1)
    assert grads == ["avg_pool2d"]
    # Two forwards and avg_pool2d's gradient from the bridge; max_pool2d's gradient from its
    # front (its full path), which replays its own plan after checking the call.
    assert PLANS.replays - replays == 4
    assert {key[0] for key in _plans._ENTRIES} == {"max_pool2d", "avg_pool2d",
                                                   "grad.avg_pool2d"}


def test_a_key_is_remembered_only_for_the_front_that_noted_it():
    """The plan key noted in a call is its front's own: a BridgeCall named for another front,
    or around a front whose replay is not its result, remembers nothing."""
    x, w = randn(1, 2, 5, 5), randn(3, 2, 3, 3, seed=1)
    with gpuconv.simulate():
        _plans.BridgeCall("conv2d_input", {"x": x, "weight": w}, ()).run(
            "NCHW", ("x",), lambda a: gpuconv.conv2d(a["x"], a["weight"]))
        assert not _plans._ENTRIES
        values, indices = gpuconv.max_pool2d(x.numpy(), 2, return_indices=True)
        with _call_plans.noting_key() as noted:
            gpuconv.grad.max_pool2d(values, x.numpy(), 2, indices=indices)
    assert noted == [None]


def test_cuda_views_take_the_tensors_layout_without_a_torch_op(monkeypatch):
    """``_bridge._cupy_view``'s arithmetic on a stand-in for CuPy: the view of a tensor in
    each layout has the shape and byte strides of NumPy's view of the same memory, starts at
    the tensor's first element and spans its last (the GPU tests check the real CuPy)."""
    from types import SimpleNamespace
    fake = SimpleNamespace(
        cuda=SimpleNamespace(UnownedMemory=lambda ptr, size, owner, device: (ptr, size, owner),
                             MemoryPointer=lambda memory, offset: memory),
        ndarray=lambda shape, dtype, memptr, strides: SimpleNamespace(
            shape=shape, dtype=dtype, memory=memptr, strides=strides))
    monkeypatch.setattr(_bridge, "_cupy", lambda: fake)
    base = randn(3, 6, 5, 7)
    tensors = [base, base.contiguous(memory_format=torch.channels_last),
               base[:, 1:5, :, 2:6], base.permute(0, 1, 3, 2), base[0]]
    for t in tensors:
        for fmt in ("NCHW", "NHWC"):
            view, expected = _bridge._cupy_view(t, fmt), _bridge._array_of(t, fmt)
            assert (view.shape, view.strides) == (expected.shape, expected.strides)
            ptr, size, owner = view.memory
            last = max(sum((n - 1) * s for n, s in zip(t.shape, t.stride())), 0)
            assert ptr == t.data_ptr() and size == (last + 1) * 4 and owner is t


def test_a_max_pool_with_and_without_indices_are_two_signatures():
    """Inference asks gpuconv.max_pool2d for values alone, training for values and indices:
    the bridge keeps their plans apart (the keywords are part of its key)."""
    with gpuconv.simulate():
        for _ in range(2):
            for seed in (0, 1):
                x = randn(2, 3, 7, 8, seed=seed)
                with torch.no_grad():
                    torch.testing.assert_close(G.max_pool2d(x, 3, 2, 1), F.max_pool2d(x, 3, 2, 1))
                leaf = x.clone().requires_grad_()
                y, indices = G.max_pool2d(leaf, 3, 2, 1, return_indices=True)
                assert torch.equal(indices, F.max_pool2d(x, 3, 2, 1, return_indices=True)[1])
                torch.testing.assert_close(y, F.max_pool2d(x, 3, 2, 1))
    assert len([key for key in _plans._ENTRIES if key[0] == "max_pool2d"]) == 2
