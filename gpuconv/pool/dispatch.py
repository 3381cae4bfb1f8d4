"""Send a validated pooling call to its executor (design.md, "One path for data, three executors").

"reference" -> ``reference_calls.<name>``; "simulator" and "cupy" -> ``launch.<name>`` with the
executor as a keyword, recorded as a launch plan when the front passes the call's key
(gpuconv/_call_plans.py; every pooling launcher does its GPU work through channels a plan
names: launch_common's docstring). ``launch`` is imported only on that branch: it loads the
kernel machinery, which a NumPy-only user of the reference never needs.
"""
from __future__ import annotations

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
