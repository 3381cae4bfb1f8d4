"""Send a validated pooling call to its executor (design.md, "One path for data, three executors").

"reference" -> ``reference_calls.<name>``; "simulator" and "cupy" -> ``launch.<name>`` with the
executor as a keyword, recorded as a launch plan when the front passes the call's key
(gpuconv/_call_plans.py; every pooling launcher does its GPU work through channels a plan
names: launch_common's docstring). ``launch`` is imported only on that branch: it loads the
kernel machinery, which a NumPy-only user of the reference never needs.
"""
from __future__ import annotations

from typing import Callable

from .. import _call_plans
from . import reference_calls


def planned(front: str, roles: dict, scalars: tuple, **mode):
    """(plan, the replayed result or None) of a call of ``front`` with arrays ``roles`` and
    the other arguments ``scalars`` (``_call_plans.planned``); ``plan`` goes to ``run``."""
    key, replayed = _call_plans.planned(front, roles, scalars, **mode)
    return (key, roles), replayed


def run(name: str, executor: str, *args, plan=(None, None), **kwargs):
    """``plan``: (key, roles) of ``_call_plans.planned``, or (None, None) for no plan."""
    if executor == "reference":
        return getattr(reference_calls, name)(*args, **kwargs)
    from . import launch
    key, roles = plan
    return _call_plans.run(key, roles, lambda: getattr(launch, name)(*args, executor=executor,
                                                                     **kwargs))


def scanned_call(front: str, roles: dict, scalars: tuple, full_path: Callable[[], tuple],
                 **mode):
    """The result of a front that takes an ``indices`` array (roles["indices"], or None):
    replayed from its launch plan, or ``full_path()``.

    ``full_path()`` checks everything, launches the call's kernels with no plan of its own
    (``run(..., plan=(None, None))``) and returns (result, the ``geometry.IndicesScan`` it
    queued or handed to its launcher, or None where the values are not scanned); this reads the
    scan's answer after the launches (queuing the scan pass there if nothing did). Where the kernels run (CuPy, the simulator) the scan is a kernel of the plan,
    which a replay launches again and reads after the others, as the full path does; a replay
    whose scan finds a bad index runs the full path, which raises the error (the replay's
    result is dropped). The NumPy reference has no plan. ``mode``: as ``planned``'s."""
    key, replayed = _call_plans.planned(front, roles, scalars, replay_is_result=False, **mode)
    if replayed is not None:
        if type(replayed) is not tuple:
            return replayed
        from .launch_indices import first_bad_index
        result, answer = replayed
        if first_bad_index(answer, roles["indices"].size) is None:
            return result
        key = None

    def checked_path():
        result, scan = full_path()
        if scan is None:
            return result
        scan.raise_if_bad()
        return result, scan.answer

    outputs = _call_plans.run(key, roles, checked_path)
    return outputs[0] if type(outputs) is tuple else outputs
