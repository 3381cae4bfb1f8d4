"""NVRTC from the PyPI wheels through ctypes: the offline compiler of ``python -m gpuconv compile``.

No GPU, driver or system CUDA is needed: ``nvidia-cuda-nvrtc`` (CUDA 13) ships libnvrtc,
``nvidia-cuda-runtime`` the ``cuda_fp16.h``/``cuda_bf16.h`` headers that NVRTC does not build in,
and ``nvidia-cuda-cccl`` libcu++ (``<cuda/std/...>``); all three install under
``site-packages/nvidia/cu13`` (the ``test`` extra of setup.py).
"""
from __future__ import annotations

import ctypes
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

_WHEEL_DIR = "cu13"
_LIBRARY = "libnvrtc.so.13"
_SUCCESS = 0


class NvrtcUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class NvrtcOutput:
    succeeded: bool
    log: str
    lowered_names: dict[str, str]   # name expression -> mangled kernel name (empty on failure)
    cubin: bytes = b""              # the machine code, when asked for (a real -arch=sm_XX only)


class Nvrtc:
    def __init__(self, library: Path, include_dirs: list[Path]):
        self.include_dirs = include_dirs
        self._lib = lib = ctypes.CDLL(str(library))
        p, c_int_p = ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        lib.nvrtcGetErrorString.argtypes = [ctypes.c_int]
        lib.nvrtcVersion.argtypes = [c_int_p, c_int_p]
        lib.nvrtcGetNumSupportedArchs.argtypes = [c_int_p]
        lib.nvrtcGetSupportedArchs.argtypes = [c_int_p]
        lib.nvrtcCreateProgram.argtypes = [ctypes.POINTER(p), ctypes.c_char_p, ctypes.c_char_p,
                                           ctypes.c_int, p, p]
        lib.nvrtcAddNameExpression.argtypes = [p, ctypes.c_char_p]
        lib.nvrtcCompileProgram.argtypes = [p, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
        lib.nvrtcGetProgramLogSize.argtypes = [p, ctypes.POINTER(ctypes.c_size_t)]
        lib.nvrtcGetProgramLog.argtypes = [p, ctypes.c_char_p]
        lib.nvrtcGetLoweredName.argtypes = [p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)]
        lib.nvrtcDestroyProgram.argtypes = [ctypes.POINTER(p)]
        lib.nvrtcGetCUBINSize.argtypes = [p, ctypes.POINTER(ctypes.c_size_t)]
        lib.nvrtcGetCUBIN.argtypes = [p, ctypes.c_char_p]

    def _call(self, function: str, *args) -> None:
        result = getattr(self._lib, function)(*args)
        if result != _SUCCESS:
            raise RuntimeError(f"{function} failed: "
                               f"{self._lib.nvrtcGetErrorString(result).decode()}")

    def version(self) -> tuple[int, int]:
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._call("nvrtcVersion", ctypes.byref(major), ctypes.byref(minor))
        return major.value, minor.value

    def supported_archs(self) -> list[int]:
        count = ctypes.c_int()
        self._call("nvrtcGetNumSupportedArchs", ctypes.byref(count))
        archs = (ctypes.c_int * count.value)()
        self._call("nvrtcGetSupportedArchs", archs)
        return list(archs)

    def compile(self, code: str, program_name: str, options: list[str],
                name_expressions: tuple[str, ...], cubin: bool = False) -> NvrtcOutput:
        lib, program = self._lib, ctypes.c_void_p()
        self._call("nvrtcCreateProgram", ctypes.byref(program), code.encode(),
                   program_name.encode(), 0, None, None)
        try:
            for name in name_expressions:
                self._call("nvrtcAddNameExpression", program, name.encode())
            encoded = [o.encode() for o in options]
            result = lib.nvrtcCompileProgram(program, len(encoded),
                                             (ctypes.c_char_p * len(encoded))(*encoded))
            size = ctypes.c_size_t()
            self._call("nvrtcGetProgramLogSize", program, ctypes.byref(size))
            buffer = ctypes.create_string_buffer(size.value)
            self._call("nvrtcGetProgramLog", program, buffer)
            log = buffer.value.decode(errors="replace")
            if result != _SUCCESS:
                # A source error or a bad option (-D from a family): both leave the reason in
                # the log, which the caller raises as a KernelCompileError.
                reason = lib.nvrtcGetErrorString(result).decode()
                return NvrtcOutput(False, log or f"nvrtcCompileProgram: {reason}", {})
            lowered = {}
            for name in name_expressions:
                mangled = ctypes.c_char_p()
                self._call("nvrtcGetLoweredName", program, name.encode(), ctypes.byref(mangled))
                lowered[name] = mangled.value.decode()
            code = b""
            if cubin:    # bench/sass_schedule.py disassembles it
                self._call("nvrtcGetCUBINSize", program, ctypes.byref(size))
                buffer = ctypes.create_string_buffer(size.value)
                self._call("nvrtcGetCUBIN", program, buffer)
                code = buffer.raw
            return NvrtcOutput(True, log, lowered, code)
        finally:
            lib.nvrtcDestroyProgram(ctypes.byref(program))


def wheel_roots() -> list[Path]:
    """The folders the CUDA 13 wheels install into (site-packages/nvidia/cu13), where found:
    NVRTC's here, and cuobjdump's for bench/sass_schedule.py."""
    spec = importlib.util.find_spec("nvidia")
    return [Path(p) / _WHEEL_DIR for p in (spec.submodule_search_locations or [])] if spec else []


@functools.lru_cache(maxsize=None)
def load() -> Nvrtc:
    """The NVRTC of the CUDA 13 wheels, with their header folders."""
    for root in wheel_roots():
        library = root / "lib" / _LIBRARY
        headers = root / "include"
        if library.is_file():
            needed = ("cuda_fp16.h", "cccl/cuda/std/cstdint")
            missing = [h for h in needed if not (headers / h).is_file()]
            if missing:
                raise NvrtcUnavailable(
                    f"{library} is installed but {', '.join(missing)} is not under {headers}: "
                    "pip install 'nvidia-cuda-runtime>=13,<14' 'nvidia-cuda-cccl>=13,<14'")
            return Nvrtc(library, [headers, headers / "cccl"])
    raise NvrtcUnavailable(
        f"NVRTC was not found ({_LIBRARY} under site-packages/nvidia/{_WHEEL_DIR}/lib): "
        "pip install 'gpuconv[test]' (or 'nvidia-cuda-nvrtc>=13,<14' 'nvidia-cuda-runtime>=13,<14' "
        "'nvidia-cuda-cccl>=13,<14')")
