"""Launch plans: the kernel launches of one call, recorded once and replayed by later calls of
the same signature (kernels/conv/NOTES.md "Host time: launch plans").

Why: what a front does on the host (argument checks, the geometry, the algorithm's choice, tile
and split choices, argument packing) is a pure function of the call's *signature*: its arrays'
types, dtypes, shapes, strides, alignment and device, and its scalar arguments. On the H100's
host that work took 40-60 us of a conv2d call, against 5-10 us for PyTorch with cuDNN, and the
benchmark's event timing of one call counts all of it. A signature seen before now costs a
dictionary lookup, the allocations and the launches.

How: the first call of a signature runs the whole path under a ``Recorder``. Every launch of a
kernel handed out by ``_loader.get_function`` is noted, and each array argument is named by
where it came from:
- a role: an array the call was handed (x, weight, ...);
- made by ``fresh`` (an allocation: the output, a workspace) or ``derived`` (an array computed
  from named ones, e.g. a transposed weight): made again on replay, in the recorded order;
- a view (reshape, slice) of exactly one named array: rebuilt from its byte offset, shape and
  strides;
- persistent: a placeholder registered with ``persistent`` that outlives every call.
``apply`` notes an operation done for its effect (a fill of the output before the kernels).
Everything else a launch takes (NumPy scalars, ints, floats) is a constant. An array argument of
any other origin makes the signature unplannable: it keeps the full path. So does GPU work that
bypasses these channels (an elementwise CuPy operation), which the recorder cannot see: the
caller records only launch paths audited to do none (``Recorder.finish``'s ``allowed``).
A plan holds no array of the call it was recorded from.
"""
from __future__ import annotations

import functools
import sys
import threading
from typing import Any, Callable

import numpy as np

# _loader imports this module too; each side reads the other's names only when called.
from . import _loader

_local = threading.local()
# Arrays that outlive every call (the kernels' never-read placeholders), by id; kept alive here.
_persistent: dict[int, Any] = {}
# Entries a cache keeps; a full cache answers from what it has and records no more.
MAX_PLANS = 4096


def recorder() -> "Recorder | None":
    """The recorder of the call in progress on this thread, if it is being recorded."""
    return getattr(_local, "recorder", None)


def fresh(make: Callable[[], Any]):
    """``make()`` (a new array, e.g. ``partial(xp.empty, shape, dtype=...)``), noted as made by
    ``make`` when recording."""
    array = make()
    rec = recorder()
    if rec is not None:
        rec.made(array, make, ())
    return array


def empty(xp, shape, dtype):
    """``fresh`` uninitialized array of module ``xp`` (every element written by the kernels)."""
    return fresh(functools.partial(xp.empty, shape, dtype=dtype))


def zeros(xp, shape, dtype):
    """``fresh`` zeroed array of module ``xp`` (a scatter's target, an accumulator)."""
    return fresh(functools.partial(xp.zeros, shape, dtype=dtype))


def output(xp, shape, dtype, executor: str):
    """A ``fresh`` buffer the kernels of ``executor`` will fill completely: uninitialized on a
    GPU, NaN-poisoned under the simulator, so that an element no kernel writes shows in the
    tests."""
    if executor == "simulator":
        return fresh(functools.partial(xp.full, shape, np.nan, dtype=dtype))
    return empty(xp, shape, dtype)


def derived(fn: Callable, *args):
    """``fn(*args)``, a new array computed from ``args`` (arrays among them are the call's),
    noted as such when recording."""
    array = fn(*args)
    rec = recorder()
    if rec is not None:
        rec.made(array, fn, args)
    return array


def apply(fn: Callable, *args) -> None:
    """``fn(*args)`` for its effect on arrays among ``args`` (a fill of the call's output),
    noted as a step of the plan when recording."""
    fn(*args)
    rec = recorder()
    if rec is not None:
        rec.made(None, fn, args)


def note(what) -> None:
    """Tells the recorder (if any) what the launch path ran: the front decides from it whether
    the path is one whose GPU work the recorder sees whole."""
    rec = recorder()
    if rec is not None:
        rec.note = what


def persistent(array):
    """Marks ``array`` (kept alive by its owner for the life of the process) as a constant
    that plans may hold."""
    _persistent[id(array)] = array
    return array


@functools.lru_cache(maxsize=None)
def placeholder(library: str, device: int | None, dtype) -> Any:
    """A one-element zeroed array of ``dtype`` (``library`` "cupy": on CuPy device ``device``;
    else NumPy) for a kernel argument that is typed but never read: one per (library, device,
    dtype), persistent, so that such a launch allocates nothing. Its memory comes from the
    device itself (CuPy's raw allocator), not from the allocator of the call that first needs
    it: a memory pool would lend a block for the life of the process (torch's: one a CUDA graph
    pool could be checking for leaks)."""
    if library == "cupy":
        import cupy
        with cupy.cuda.Device(device), cupy.cuda.using_allocator(None):
            return persistent(cupy.zeros(1, dtype=dtype))
    return persistent(np.zeros(1, dtype=dtype))


def unused_argument(xp, dtype):
    """The ``placeholder`` of ``dtype`` for array module ``xp`` (CuPy: on its current device):
    what a kernel takes for a typed argument its instantiation or mode never reads."""
    if xp.__name__ == "cupy":
        return placeholder("cupy", xp.cuda.runtime.getDevice(), np.dtype(dtype))
    return placeholder("numpy", None, np.dtype(dtype))


def _is_array(value) -> bool:
    if isinstance(value, np.ndarray):
        return True
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(value, cupy.ndarray)


def _address(a) -> int:
    return a.ctypes.data if isinstance(a, np.ndarray) else a.data.ptr


def _extent(a) -> tuple[int, int]:
    """[first byte, last byte + 1) that ``a`` can touch."""
    start = end = _address(a)
    for size, stride in zip(a.shape, a.strides):
        if stride >= 0:
            end += (size - 1) * stride
        else:
            start += (size - 1) * stride
    return start, end + a.dtype.itemsize


def _view(base, offset: int, shape, strides, dtype):
    """The view of ``base``'s memory at byte ``offset`` (from its first element) with
    ``shape``/``strides``/``dtype``."""
    if isinstance(base, np.ndarray):
        start, end = _extent(base)
        memory = np.asarray(_Memory(start, end - start, base))
        return np.ndarray(shape, dtype, buffer=memory, offset=_address(base) - start + offset,
                          strides=strides)
    import cupy
    return cupy.ndarray(shape, dtype, memptr=base.data + offset, strides=strides)


class _Memory:
    """Bytes [start, start + length) of NumPy array ``owner``'s memory, as an object NumPy can
    wrap (``np.ndarray``'s ``buffer=`` wants a contiguous exporter; a strided array is not)."""

    def __init__(self, start: int, length: int, owner):
        self.__array_interface__ = {"data": (start, False), "shape": (length,),
                                    "typestr": "|u1", "version": 3}
        self.owner = owner   # alive as long as a view of it is


class Unplannable(Exception):
    """An argument whose origin the recorder cannot name."""


# Step kinds of a plan.
_ROLE, _MAKE, _VIEW, _LAUNCH = range(4)


class Recorder:
    """The launches of one call, as steps over numbered slots (module docstring)."""

    def __init__(self, roles: dict[str, Any]):
        self._slots: dict[int, int] = {}     # id(array) -> slot
        self._arrays: list = []              # slot -> array (alive while recording)
        self._views: set[int] = set()        # slots that are views of another slot
        self.steps: list[tuple] = []
        self.ok = True
        self.aliased = False                 # one array in two roles (this call's, not the key's)
        self.note = None                     # what the launch path says it ran (the caller's)
        for name, array in roles.items():
            if array is None:
                continue
            if id(array) in self._slots:     # one array in two roles: slots would be ambiguous
                self.ok, self.aliased = False, True
                continue
            self.steps.append((_ROLE, self._new_slot(array), name))

    def _new_slot(self, array) -> int:
        slot = len(self._arrays)
        self._arrays.append(array)
        self._slots[id(array)] = slot
        return slot

    def _slot_of(self, array) -> int:
        slot = self._slots.get(id(array))
        if slot is not None:
            return slot
        if array.size == 0:
            raise Unplannable("an empty array argument")
        # The one array (not itself a view) whose memory holds it: a view of a view is rebuilt
        # from the root, and two overlapping inputs leave the origin ambiguous.
        start, end = _extent(array)
        owners = [s for s, a in enumerate(self._arrays)
                  if s not in self._views and type(a) is type(array) and a.size
                  and _extent(a)[0] <= start and end <= _extent(a)[1]]
        if len(owners) != 1:
            raise Unplannable("an array argument of unknown origin")
        owner = owners[0]
        offset = _address(array) - _address(self._arrays[owner])
        slot = self._new_slot(array)
        self._views.add(slot)
        self.steps.append((_VIEW, slot, owner, offset, tuple(array.shape),
                           tuple(array.strides), array.dtype))
        return slot

    def _spec(self, values) -> tuple:
        """Each value as (True, slot) for an array, (False, value) for a constant."""
        spec = []
        for v in values:
            if _is_array(v) and id(v) not in _persistent:
                spec.append((True, self._slot_of(v)))
            else:
                spec.append((False, v))
        return tuple(spec)

    def made(self, array, fn, args) -> None:
        """``array`` = fn(*args) (None: fn was applied for its effect)."""
        if not self.ok:
            return
        try:
            spec = self._spec(args)
        except Unplannable:
            self.ok = False
            return
        self.steps.append((_MAKE, None if array is None else self._new_slot(array), fn, spec))

    def launcher(self, fn, family, name: str, executor: str, opt_in: int):
        """``fn`` (a kernel ``get_function(family, name, executor, opt_in)`` handed out), its
        launches noted."""
        def launch(grid, block, args, shared_mem=0, **kwargs):
            if self.ok and not kwargs:
                try:
                    spec = self._spec(args)
                except Unplannable:
                    self.ok = False
                else:
                    self.steps.append((_LAUNCH, family, name, executor, opt_in,
                                       tuple(int(g) for g in grid),
                                       tuple(int(b) for b in block), int(shared_mem), spec))
            else:
                self.ok = False
            return fn(grid, block, args, shared_mem=shared_mem, **kwargs)
        return launch

    def finish(self, result, allowed: bool) -> "Plan | None":
        """The plan that makes ``result`` (an array, or a tuple of arrays: values and indices)
        again, or None when the call cannot be replayed (``allowed``: the caller's verdict on
        its launch path)."""
        if not (self.ok and allowed):
            return None
        if type(result) is tuple:
            slots = tuple(self._result_slot(r) for r in result)
            return None if None in slots else Plan(tuple(self.steps), len(self._arrays), slots)
        slot = self._result_slot(result)
        return None if slot is None else Plan(tuple(self.steps), len(self._arrays), slot)

    def _result_slot(self, result) -> int | None:
        """The slot of a result array (None: not an array the plan makes)."""
        return self._slots.get(id(result)) if _is_array(result) else None


class Plan:
    """Recorded steps; ``replay(roles)`` runs them over a new call's arrays. ``result``: the
    result's slot, or a tuple of slots for a tuple of arrays."""

    __slots__ = ("steps", "slots", "result")

    def __init__(self, steps, slots: int, result: int):
        self.steps, self.slots, self.result = steps, slots, result

    def replay(self, roles: dict[str, Any]):
        get_function = _loader.get_function
        arrays = [None] * self.slots
        for step in self.steps:
            kind = step[0]
            if kind == _LAUNCH:
                _, family, name, executor, opt_in, grid, block, smem, spec = step
                args = [arrays[v] if is_slot else v for is_slot, v in spec]
                get_function(family, name, executor, opt_in)(grid, block, args, shared_mem=smem)
            elif kind == _ROLE:
                arrays[step[1]] = roles[step[2]]
            elif kind == _MAKE:
                _, slot, fn, spec = step
                made = fn(*[arrays[v] if is_slot else v for is_slot, v in spec])
                if slot is not None:
                    arrays[slot] = made
            else:
                _, slot, owner, offset, shape, strides, dtype = step
                arrays[slot] = _view(arrays[owner], offset, shape, strides, dtype)
        if type(self.result) is tuple:
            return tuple(arrays[slot] for slot in self.result)
        return arrays[self.result]


class PlanCache:
    """Plans by signature; a signature that cannot be replayed is remembered as such."""

    _UNPLANNABLE = object()

    def __init__(self):
        self._plans: dict = {}
        self.replays = 0       # calls answered by a plan (tests read it)

    def clear(self) -> None:
        self._plans.clear()
        self.replays = 0

    def __len__(self) -> int:
        return len(self._plans)

    def replay(self, key, roles: dict[str, Any]):
        """The result of replaying ``key``'s plan over ``roles``, or None without one."""
        plan = self._plans.get(key)
        if plan is None or plan is self._UNPLANNABLE:
            return None
        self.replays += 1
        return plan.replay(roles)

    def has_plan(self, key) -> bool:
        """Whether ``key`` has a plan to replay (not unseen, not unplannable)."""
        plan = self._plans.get(key)
        return plan is not None and plan is not self._UNPLANNABLE

    def wants(self, key) -> bool:
        """Whether a call of ``key`` should be recorded (not seen, and room left)."""
        return key is not None and key not in self._plans and len(self._plans) < MAX_PLANS

    def record(self, key, roles: dict[str, Any]) -> "_Recording":
        return _Recording(self, key, roles)


class _Recording:
    """``with cache.record(key, roles) as rec: result = ...; rec.keep(result, allowed)``."""

    def __init__(self, cache: PlanCache, key, roles):
        self.cache, self.key, self.recorder = cache, key, Recorder(roles)

    def __enter__(self) -> "_Recording":
        if recorder() is not None:       # a nested front: only the outermost call records
            self.recorder.ok = False
            self.outer = True
        else:
            self.outer = False
            _local.recorder = self.recorder
        return self

    @property
    def ran(self):
        """What the launch path said it ran (``note``), or None."""
        return self.recorder.note

    def keep(self, result, allowed: bool) -> None:
        if self.outer or self.recorder.aliased:
            # Recorded nowhere: a later call of the signature (its own, or one whose roles are
            # distinct arrays) may still be. A plan replays over aliased roles all the same.
            return
        plan = self.recorder.finish(result, allowed)
        self.cache._plans[self.key] = plan if plan is not None else PlanCache._UNPLANNABLE

    def __exit__(self, *exc) -> None:
        if not self.outer:
            _local.recorder = None
        self.recorder = None
