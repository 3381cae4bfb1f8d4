"""Audit 16 (threads, tasks, forks and the process-wide settings). Findings, each fixed and pinned:

1. A gradient front read the process-wide deterministic mode twice (its plan's key, then its
   path): another thread's set_deterministic in between filed the atomic launches under the
   deterministic key, for good (deterministic=True calls then replayed them). The mode is read
   once per call (``_state.resolving_deterministic``), and gpuconv.torch pins the one its own
   key holds around the front it calls.
2. simulate() kept a per-thread stack: an asyncio task that never entered a block ran on the
   simulator while another task's block waited, and leaving a block popped the innermost entry,
   not its own. The blocks are a context variable (as numpy.errstate's), each removing its own.
3. After a fork while another thread was inside a simulated launch, the child's first launch
   waited forever on the runtime's launch mutex; the sanitizer runners were shared with the
   parent (both blamed a correct kernel). The fork waits for the launch; a child starts its own
   runners.
4. GPUCONV_SIMULATE=false (no, off) turned simulation on; an invalid GPUCONV_SIMULATE_SEED was
   int()'s error naming nothing.
"""
import asyncio
import os
import sys
import threading

import numpy as np
import pytest

import gpuconv
from gpuconv import _call_plans, _state
from gpuconv.simulator import SanitizerUnavailable

RNG = np.random.default_rng(0)
X = RNG.standard_normal((1, 1, 9, 9)).astype(np.float32)
G = RNG.standard_normal((1, 1, 7, 7)).astype(np.float32)


@pytest.fixture
def process_wide_mode():
    before = _state.is_deterministic()
    yield
    gpuconv.set_deterministic(before)


def _plan_kernels(front: str) -> list:
    keys = [k for k in _call_plans.PLANS._plans if k[0] == front]
    assert len(keys) == 1, keys
    return [step[2] for step in _call_plans.PLANS._plans[keys[0]].steps if step[0] == 3]


def test_a_mode_flipped_during_a_gradient_does_not_reach_its_plan(process_wide_mode,
                                                                  monkeypatch):
    monkeypatch.setattr(_call_plans, "PLANS", type(_call_plans.PLANS)())

    def other_thread(frame, event, arg):
        # set_deterministic(False) "in another thread" once the key is made, before the path
        if event == "call" and frame.f_code.co_name == "_checked":
            gpuconv.set_deterministic(False)

    gpuconv.set_deterministic(True)
    with gpuconv.simulate():
        sys.settrace(other_thread)
        try:
            gpuconv.grad.max_pool2d(G, X, 3, 1)
        finally:
            sys.settrace(None)
    kernels = _plan_kernels("grad.max_pool2d")
    # the deterministic gather, not the atomic scatter the mode read second would choose
    assert not any("scatter" in k for k in kernels), kernels


def test_the_bridge_pins_the_mode_its_key_holds(process_wide_mode):
    torch = pytest.importorskip("torch")
    from gpuconv.torch import _plans as bridge
    gpuconv.set_deterministic(True)
    call = bridge.BridgeCall("grad.avg_pool2d", {"x": torch.ones(1, 1, 4, 4)}, (2,))
    seen = []

    def compute(arrays):
        gpuconv.set_deterministic(False)      # another thread, meanwhile
        seen.append(_state.is_deterministic())
        return arrays["x"]
    call.run("NCHW", ("x",), compute)
    assert seen == [True] and not _state.is_deterministic()


def test_simulate_applies_to_its_own_asyncio_task():
    seen = {}

    async def inside():
        with gpuconv.simulate(order="reverse"):
            await asyncio.sleep(0.02)
            seen["inside"] = _state.active_simulation()

    async def plain():
        await asyncio.sleep(0.005)
        seen["plain"] = _state.executor_for("numpy")

    async def own_block():
        await asyncio.sleep(0.01)
        with gpuconv.simulate(order="random", seed=5):
            await asyncio.sleep(0.03)
            seen["own"] = _state.active_simulation()

    async def main():
        await asyncio.gather(inside(), plain(), own_block())
    asyncio.run(main())
    assert seen["plain"] == "reference"
    assert seen["inside"].order == "reverse"
    assert (seen["own"].order, seen["own"].seed) == ("random", 5)
    assert _state.active_simulation() is None


def test_blocks_left_out_of_order_each_remove_their_own():
    def block(order):
        with gpuconv.simulate(order=order):
            yield
            yield _state.active_simulation().order

    a, b = block("reverse"), block("random")
    next(a), next(b)
    assert next(a) == "random"          # b's block is the innermost
    next(a, None)                       # a's block ends first
    assert next(b) == "random"
    next(b, None)
    assert _state.active_simulation() is None


@pytest.mark.parametrize("value", ["false", "False", "no", "OFF", " 0 "])
def test_gpuconv_simulate_off_spellings(monkeypatch, value):
    monkeypatch.setenv("GPUCONV_SIMULATE", value)
    assert _state.executor_for("numpy") == "reference"


@pytest.mark.parametrize("variable, value", [("GPUCONV_SIMULATE_SEED", "abc"),
                                             ("GPUCONV_SIMULATE_ORDER", "sideways")])
def test_invalid_simulation_variables_are_named(monkeypatch, variable, value):
    monkeypatch.setenv("GPUCONV_SIMULATE", "1")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=f"{variable}={value!r}"):
        gpuconv.max_pool2d(X, 2)
    monkeypatch.setenv("GPUCONV_SIMULATE_ORDER", "Random")    # case is not a mistake
    monkeypatch.setenv("GPUCONV_SIMULATE_SEED", "3")
    assert _state.active_simulation().order == "random"


def _forked(child) -> int:
    """The exit code of ``child()`` run in a forked child (a hang is killed after 20 s)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            import signal
            signal.alarm(20)
            code = child()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_fork_during_another_threads_launch_leaves_the_child_able_to_launch():
    w = RNG.standard_normal((2, 1, 3, 3)).astype(np.float32)
    stop = threading.Event()

    def launching():
        while not stop.is_set():
            with gpuconv.simulate():
                gpuconv.conv2d(X, w, padding=1, algorithm="direct")

    with gpuconv.simulate():
        expected = gpuconv.max_pool2d(X, 2)
    thread = threading.Thread(target=launching, daemon=True)
    thread.start()
    try:
        for _ in range(3):      # before the fix, ~9 forks in 10 left the child hanging
            def child():
                with gpuconv.simulate():
                    return 0 if np.array_equal(gpuconv.max_pool2d(X, 2), expected) else 2
            assert _forked(child) == 0
    finally:
        stop.set()
        thread.join()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_runs_its_own_sanitizer_runner():
    def run():
        with gpuconv.simulate(sanitize="address"):
            return gpuconv.max_pool2d(X, 2)
    try:
        expected = run()        # the parent's runner, started
    except SanitizerUnavailable as error:
        pytest.skip(str(error))
    pid = os.fork()
    if pid == 0:                # the child and the parent use their runners at the same time
        code = 1
        try:
            code = 0 if all(np.array_equal(run(), expected) for _ in range(10)) else 2
        finally:
            os._exit(code)
    parent_ok = all(np.array_equal(run(), expected) for _ in range(10))
    _, status = os.waitpid(pid, 0)
    assert parent_ok and os.waitstatus_to_exitcode(status) == 0
