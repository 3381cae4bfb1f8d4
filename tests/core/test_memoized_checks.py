"""_args.memoized_check: the geometry functions answer repeated plain arguments from a table,
and nothing that the checked path would refuse or treat differently ever comes from it."""
import numpy as np
import pytest

from gpuconv import _args
from gpuconv.conv.geometry import conv2d_geometry
from gpuconv.pool.geometry import pool2d_geometry

X, W = (2, 4, 9, 9), (6, 4, 3, 3)


def test_repeated_plain_arguments_come_from_the_table():
    first = conv2d_geometry(X, W, 2, 1, 1, 1)
    assert conv2d_geometry(X, W, 2, 1, 1, 1) is first
    # a list is read as the tuple of its items, as the checked path does
    assert conv2d_geometry(list(X), W, [2, 2], [1, 1]) == conv2d_geometry(X, W, (2, 2), (1, 1))


def test_a_bool_never_hits_an_int_entry():
    conv2d_geometry(X, W, 1)                         # stride 1 is in the table now
    for _ in range(2):
        with pytest.raises(TypeError, match="stride"):
            conv2d_geometry(X, W, True)              # True == 1 and hash(True) == hash(1)


def test_numpy_integers_take_the_checked_path_and_are_not_stored():
    before = len(conv2d_geometry.memo)
    g = conv2d_geometry(X, W, np.int64(2), np.int32(1))
    assert g == conv2d_geometry(X, W, 2, 1)
    assert len(conv2d_geometry.memo) <= before + 1   # only the plain call's entry


def test_failures_are_never_stored():
    before = dict(pool2d_geometry.memo)
    for _ in range(2):
        with pytest.raises(ValueError, match="kernel_size"):
            pool2d_geometry((1, 1, 4, 4), 0)
    assert pool2d_geometry.memo == before


def test_the_table_is_bounded(monkeypatch):
    @_args.memoized_check
    def double(v):
        return 2 * v
    monkeypatch.setattr(_args, "MEMO_ENTRIES", 3)
    assert [double(i) for i in range(10)] == [2 * i for i in range(10)]
    assert len(double.memo) == 3


def test_bool_flags_are_keys_of_their_own():
    on = pool2d_geometry((1, 1, 5, 5), 2, 2, 0, 1, True)
    off = pool2d_geometry((1, 1, 5, 5), 2, 2, 0, 1, False)
    assert (on.P, off.P) == (3, 2)
    assert pool2d_geometry((1, 1, 5, 5), 2, 2, 0, 1, True) is on
    # 1 == True and hashes alike, but is its own key: the checked path reads it (a ceil_mode of
    # 1 is refused, as torch refuses it, although True is in the table), and a stride of True
    # is still refused although stride 2 is in the table
    with pytest.raises(TypeError, match="ceil_mode"):
        pool2d_geometry((1, 1, 5, 5), 2, 2, 0, 1, 1)
    with pytest.raises(TypeError, match="stride"):
        pool2d_geometry((1, 1, 5, 5), 2, True, 0, 1, True)
