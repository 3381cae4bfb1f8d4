"""gpuconv._external_streams: CuPy's handle on a stream torch or XLA owns, made once per
(pointer, device) and without CuPy 14's DeprecationWarning (under -W error it would fail the
call inside XLA's callback: audit 19 found the JAX path creating one per call, unsilenced)."""
import types
import warnings

from gpuconv import _external_streams


class _ExternalStream:
    made = 0

    def __init__(self, pointer, device):
        warnings.warn("ExternalStream is deprecated", DeprecationWarning)
        type(self).made += 1
        self.ptr, self.device_id = pointer, device


FAKE_CUPY = types.SimpleNamespace(cuda=types.SimpleNamespace(ExternalStream=_ExternalStream))


def test_one_handle_per_stream_and_device_without_warnings(monkeypatch):
    monkeypatch.setattr(_external_streams, "_STREAMS", {})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first = _external_streams.external_stream(FAKE_CUPY, 0x5150, 0)
        assert _external_streams.external_stream(FAKE_CUPY, 0x5150, 0) is first
        other = _external_streams.external_stream(FAKE_CUPY, 0x5150, 1)
    assert (first.ptr, first.device_id, other.device_id) == (0x5150, 0, 1)
    assert _ExternalStream.made == 2


def test_the_cache_stays_bounded(monkeypatch):
    monkeypatch.setattr(_external_streams, "_STREAMS", {})
    for pointer in range(3 * _external_streams._MAX_STREAMS):
        _external_streams.external_stream(FAKE_CUPY, pointer, 0)
    assert len(_external_streams._STREAMS) <= _external_streams._MAX_STREAMS
