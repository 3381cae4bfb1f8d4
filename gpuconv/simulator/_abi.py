"""ctypes mirrors of runtime/simt_abi.h (keep in step with it, including SIMT_ABI_VERSION)."""
from __future__ import annotations

import ctypes

ABI_VERSION = 7

ORDER_CODES = {"forward": 0, "reverse": 1, "random": 2}

(STATUS_OK, STATUS_FAULT, STATUS_DEADLOCK, STATUS_RESOURCE, STATUS_INTERNAL,
 STATUS_LAUNCH_BOUNDS) = range(6)


class LaunchConfig(ctypes.Structure):
    _fields_ = [("grid", ctypes.c_uint32 * 3),
                ("block", ctypes.c_uint32 * 3),
                ("shared_mem", ctypes.c_uint64),
                ("seed", ctypes.c_uint64),
                ("stack_size", ctypes.c_uint64),
                ("order", ctypes.c_uint32),
                ("handle_faults", ctypes.c_uint32),
                ("shared_opt_in", ctypes.c_uint64)]


class Error(ctypes.Structure):
    _fields_ = [("status", ctypes.c_int32),
                ("has_block", ctypes.c_int32),
                ("has_thread", ctypes.c_int32),
                ("block", ctypes.c_uint32 * 3),
                ("thread", ctypes.c_uint32 * 3),
                ("has_pc", ctypes.c_int32),
                ("signal", ctypes.c_int32),
                ("pc_offset", ctypes.c_uint64),
                ("pc_object", ctypes.c_char * 512),
                ("source", ctypes.c_char * 256),
                ("message", ctypes.c_char * 4096)]


class ParamDesc(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32),
                ("pointee_size", ctypes.c_uint32),
                ("kind", ctypes.c_char),
                ("pointee_kind", ctypes.c_char),
                ("pointee_const", ctypes.c_uint8),
                ("pointee_align", ctypes.c_uint8),
                ("type_name", ctypes.c_char * 116)]


LAUNCH_PROTOTYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(LaunchConfig),
                                    ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(Error))
PARAMS_PROTOTYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ParamDesc), ctypes.c_int)
