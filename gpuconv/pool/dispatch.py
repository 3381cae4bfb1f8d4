"""Send a validated pooling call to its executor (design.md, "One path for data, three executors").

"reference" -> ``reference_calls.<name>``; "simulator" and "cupy" -> ``launch.<name>`` with the
executor as a keyword. ``launch`` is imported only on that branch: it loads the kernel machinery,
which a NumPy-only user of the reference never needs.
"""
from __future__ import annotations

from . import reference_calls


def run(name: str, executor: str, *args, **kwargs):
    if executor == "reference":
        return getattr(reference_calls, name)(*args, **kwargs)
    from . import launch
    return getattr(launch, name)(*args, executor=executor, **kwargs)
