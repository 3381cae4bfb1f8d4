"""The in-process executor: a plain (unsanitized) module loaded with ctypes and launched on the
calling thread. ctypes releases the GIL for the launch; the runtime turns a fault in a kernel
into an error code (its signal handlers), so a bad kernel raises instead of killing Python."""
from __future__ import annotations

import ctypes
from pathlib import Path

from . import _abi
from ._params import PackedArgument, Param

_SLOT = 16  # every argument value starts 16-byte aligned, as a kernel parameter buffer does


class NativeModule:
    def __init__(self, path: Path, entries: int):
        self.path = path
        self._lib = ctypes.CDLL(str(path))
        version = ctypes.CFUNCTYPE(ctypes.c_int)(("__simt_abi_version", self._lib))()
        if version != _abi.ABI_VERSION:
            raise RuntimeError(f"{path} was built for simulator ABI {version}, this is "
                               f"{_abi.ABI_VERSION}; delete the cache folder")
        self._launch = [_abi.LAUNCH_PROTOTYPE((f"__simt_launch_{i}", self._lib))
                        for i in range(entries)]
        self.params = tuple(self._read_params(i) for i in range(entries))

    def _read_params(self, entry: int) -> tuple[Param, ...]:
        describe = _abi.PARAMS_PROTOTYPE((f"__simt_params_{entry}", self._lib))
        count = describe(None, 0)
        descs = (_abi.ParamDesc * max(count, 1))()
        describe(descs, count)
        return tuple(Param.from_desc(i, descs[i]) for i in range(count))

    def launch(self, entry: int, config: _abi.LaunchConfig, args: list[PackedArgument],
               kernel: str = "") -> _abi.Error:
        blob = bytearray()
        offsets = []
        for arg in args:
            offsets.append(len(blob))
            if arg.value is not None:
                data = arg.value
            else:
                pointer = arg.array.__array_interface__["data"][0] if arg.array is not None else 0
                data = pointer.to_bytes(8, "little")
            blob += data + bytes(-len(data) % _SLOT)
        storage = ctypes.create_string_buffer(bytes(blob), max(len(blob), 1))
        base = ctypes.addressof(storage)
        argv = (ctypes.c_void_p * max(len(args), 1))(*(base + o for o in offsets))
        error = _abi.Error()
        config.handle_faults = 1
        self._launch[entry](ctypes.byref(config), argv, ctypes.byref(error))
        return error
