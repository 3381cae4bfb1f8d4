"""Launch-plan replay audit (gpuconv/_plans.py, gpuconv/_call_plans.py): a call whose plan is
replayed must behave as the full path would for the same arguments and process state.

Finding: the convolution plan keys (gpuconv/conv/plans.py -> _call_plans.signature) do not hold
GPUCONV_WORKSPACE_BYTES, which the launchers read on every full-path call (split_k.gemm_splits
-> launch_im2col_gemm.workspace_limit: implicit_gemm, pointwise, the 1x1 data gradient;
launch_winograd's workspace chunks). A plan recorded under one value is replayed under another:
the split-K count and winograd chunks of the recording are kept, and an invalid value, which the
full path refuses with a ValueError naming the variable, is accepted silently.

Runs on both executors (tests/contract/conftest.py); on the NumPy reference neither call has a
plan and the two outcomes agree trivially. The expected outcome is the full path's (the plan
cache cleared), never the replay's.
"""
import numpy as np
import pytest

import gpuconv
from gpuconv import _call_plans

RNG = np.random.default_rng(0)
X = RNG.standard_normal((2, 8, 6, 6)).astype(np.float32)
W3 = RNG.standard_normal((8, 8, 3, 3)).astype(np.float32)
W1 = np.ascontiguousarray(W3[:, :, :1, :1])
GO = RNG.standard_normal((2, 8, 6, 6)).astype(np.float32)

CALLS = {
    # "auto" runs the pointwise kernels for a 1x1 filter
    "conv2d auto 1x1": lambda: gpuconv.conv2d(X, W1),
    "conv2d implicit_gemm": lambda: gpuconv.conv2d(X, W3, padding=1, algorithm="implicit_gemm"),
    "grad.conv2d_input 1x1": lambda: gpuconv.grad.conv2d_input(X.shape, W1, GO),
}


def _outcome(call):
    try:
        return "result", call()
    except ValueError as error:
        return "ValueError", str(error)


@pytest.mark.parametrize("name", list(CALLS))
def test_workspace_limit_is_part_of_the_signature(name, monkeypatch):
    _call_plans.PLANS.clear()
    call = CALLS[name]
    monkeypatch.delenv("GPUCONV_WORKSPACE_BYTES", raising=False)
    call()                                   # records the plan under the default limit
    monkeypatch.setenv("GPUCONV_WORKSPACE_BYTES", "not-a-number")
    replayed = _outcome(call)
    _call_plans.PLANS.clear()
    fresh = _outcome(call)                   # the full path, same arguments and environment
    assert replayed[0] == fresh[0], (f"replay gave {replayed[0]}, the full path "
                                     f"{fresh[0]}: {fresh[1] if fresh[0] != 'result' else ''}")
    if fresh[0] == "result":
        np.testing.assert_array_equal(replayed[1], fresh[1])
    else:
        assert replayed[1] == fresh[1]


def test_workspace_limit_is_part_of_the_torch_bridge_signature(monkeypatch):
    """gpuconv.torch's bridge plans lead a seen signature straight to the front's plan: their key
    holds the variable too (gpuconv/torch/_plans.py ``_context``)."""
    torch = pytest.importorskip("torch")
    import gpuconv.torch as G
    _call_plans.PLANS.clear()
    x, w = torch.from_numpy(X), torch.from_numpy(W1)
    monkeypatch.delenv("GPUCONV_WORKSPACE_BYTES", raising=False)
    with gpuconv.simulate():
        G.conv2d(x, w)                   # records the bridge's and the front's plans
        monkeypatch.setenv("GPUCONV_WORKSPACE_BYTES", "not-a-number")
        with pytest.raises(ValueError, match="GPUCONV_WORKSPACE_BYTES must be an integer"):
            G.conv2d(x, w)
