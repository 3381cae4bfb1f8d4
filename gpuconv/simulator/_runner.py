"""Sanitized launches, run in a helper process (runtime/runner.cpp).

A module built with -fsanitize=address or -fsanitize=thread needs the sanitizer runtime loaded
before anything else in its process, which the Python interpreter cannot offer without
LD_PRELOAD (and TSan under LD_PRELOAD crashed the pyenv Python, simulator.md). So one runner
process per sanitizer mode loads the sanitized modules and runs their launches: the arrays of a
launch are copied to it (each into its own malloc'ed block, so ASan guards both ends; arguments
that overlap in memory share one block, keeping aliasing intact) and copied back from it.

A sanitizer report ends the runner: the report (with the CUDA block/thread its death callback
adds) becomes a ``SanitizerError`` and the next launch starts a fresh runner. The runner is also
restarted after any failed launch, whose abandoned fibers the sanitizers would otherwise see.
"""
from __future__ import annotations

import atexit
import ctypes
import os
import re
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from . import _abi, _toolchain
from ._params import PackedArgument, Param
from .errors import SanitizerError, SanitizerUnavailable

_MAGIC = 0x544D4953
_LOAD, _LAUNCH = 1, 2
_OPTIONS = {
    "address": ("ASAN_OPTIONS", "detect_leaks=0:halt_on_error=1:abort_on_error=0:"
                "detect_stack_use_after_return=0:handle_segv=1:handle_sigfpe=1:handle_sigill=1:"
                "allow_user_segv_handler=0:print_summary=1"),
    "thread": ("TSAN_OPTIONS", "halt_on_error=1:report_signal_unsafe=0:report_thread_leaks=0:"
               "exitcode=66"),
}
_REPORT_MAX_LINES = 60


class _RunnerDied(Exception):
    pass


class RunnerProcess:
    """The runner of one sanitizer mode, started on first use and after each failure."""

    _instances: dict[str, "RunnerProcess"] = {}
    _instances_lock = threading.Lock()

    @classmethod
    def for_mode(cls, sanitize: str) -> "RunnerProcess":
        with cls._instances_lock:
            if sanitize not in cls._instances:
                cls._instances[sanitize] = cls(sanitize)
            return cls._instances[sanitize]

    def __init__(self, sanitize: str):
        self.sanitize = sanitize
        self.lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._log = None
        self._log_offset = 0
        self._handles: dict[Path, int] = {}

    # ---- process lifetime ----
    def _start(self) -> None:
        executable = _toolchain.runner_executable(self.sanitize)
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        self._log = tempfile.TemporaryFile(prefix="gpuconv-sim-runner-")
        self._log_offset = 0
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        variable, defaults = _OPTIONS[self.sanitize]
        env[variable] = defaults + (":" + env[variable] if env.get(variable) else "")
        try:
            self._process = subprocess.Popen(
                [str(executable), str(request_read), str(reply_write)],
                pass_fds=(request_read, reply_write), stdin=subprocess.DEVNULL,
                stderr=self._log, env=env)
        finally:
            os.close(request_read)
            os.close(reply_write)
        self._requests, self._replies = request_write, reply_read
        self._handles = {}
        try:
            magic, version = struct.unpack("<II", self._read(8))
        except _RunnerDied:
            log = self._drain_log()
            self._stop()
            raise SanitizerUnavailable(
                f"sanitize={self.sanitize!r} cannot run on this machine: the "
                f"{self.sanitize} sanitizer runner did not start:\n{log}") from None
        if magic != _MAGIC or version != _abi.ABI_VERSION:
            self._stop()
            raise RuntimeError(f"{executable} speaks ABI {version}, expected {_abi.ABI_VERSION}")

    def _stop(self) -> None:
        if self._process is None:
            return
        for fd in (self._requests, self._replies):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def _ensure_started(self) -> None:
        if self._process is None:
            self._start()

    # ---- pipe I/O ----
    def _write(self, data) -> None:
        view = memoryview(data).cast("B")
        try:
            while view:
                written = os.write(self._requests, view)
                view = view[written:]
        except (BrokenPipeError, OSError):
            raise _RunnerDied() from None

    def _read(self, n: int) -> bytes:
        chunks = []
        while n > 0:
            chunk = os.read(self._replies, min(n, 1 << 20))
            if not chunk:
                raise _RunnerDied()
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _read_into(self, address: int, n: int) -> None:
        view = memoryview((ctypes.c_char * n).from_address(address)).cast("B") if n else None
        done = 0
        while done < n:
            got = os.readv(self._replies, [view[done:]])
            if got == 0:
                raise _RunnerDied()
            done += got

    def _drain_log(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(self._log_offset)
        text = self._log.read().decode(errors="replace")
        self._log_offset = self._log.tell()
        return text

    # ---- requests ----
    def load(self, path: Path, entries: int) -> tuple[int, tuple[tuple[Param, ...], ...]]:
        with self.lock:
            self._ensure_started()
            return self._load(path, entries)

    def _load(self, path: Path, entries: int):
        encoded = str(path).encode()
        try:
            self._write(struct.pack("<II", _LOAD, len(encoded)) + encoded +
                        struct.pack("<I", entries))
            (status,) = struct.unpack("<i", self._read(4))
            if status != 0:
                (length,) = struct.unpack("<I", self._read(4))
                raise RuntimeError(f"the {self.sanitize} runner cannot load {path}: "
                                   f"{self._read(length).decode(errors='replace')}")
            (handle,) = struct.unpack("<I", self._read(4))
            size = ctypes.sizeof(_abi.ParamDesc)
            params = []
            for _ in range(entries):
                (count,) = struct.unpack("<I", self._read(4))
                raw = self._read(count * size)
                params.append(tuple(Param.from_desc(i, _abi.ParamDesc.from_buffer_copy(
                    raw[i * size:(i + 1) * size])) for i in range(count)))
        except _RunnerDied:
            log = self._drain_log()
            self._stop()
            raise SanitizerUnavailable(f"the {self.sanitize} sanitizer runner died while loading "
                                       f"{path}:\n{log}") from None
        self._handles[path] = handle
        return handle, tuple(params)

    def launch(self, path: Path, entries: int, entry: int, config: _abi.LaunchConfig,
               args: list[PackedArgument], kernel: str) -> _abi.Error:
        with self.lock:
            self._ensure_started()
            if path not in self._handles:
                self._load(path, entries)
            request, buffers = _encode_launch(self._handles[path], entry, config, args)
            self._drain_log()
            try:
                for piece in request:
                    self._write(piece)
                error = _abi.Error.from_buffer_copy(self._read(ctypes.sizeof(_abi.Error)))
                if error.status == _abi.STATUS_OK:
                    for address, size, copy_back in buffers:
                        if copy_back:
                            self._read_into(address, size)
            except _RunnerDied:
                report = self._drain_log()
                self._stop()
                raise _sanitizer_error(self.sanitize, report, kernel) from None
            if error.status != _abi.STATUS_OK:
                self._stop()
            else:
                extra = self._drain_log()
                if extra:
                    sys.stderr.write(extra)
            return error

    def close(self) -> None:
        with self.lock:
            self._stop()

    @classmethod
    def _forget_in_child(cls) -> None:
        """After a fork, in the child: the runners are the parent's (its pipes, its log's file
        offset), and two processes writing requests to one runner interleave them, so that
        both saw the runner "die" and blamed a correct kernel. The child drops its copies of
        their pipes and logs; each runner object then starts a process of its own at its next
        use (the modules hold on to these objects)."""
        cls._instances_lock = threading.Lock()
        for runner in cls._instances.values():
            runner.lock = threading.Lock()
            if runner._process is not None:
                for fd in (runner._requests, runner._replies):
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            if runner._log is not None:
                runner._log.close()
            runner._process, runner._log, runner._handles = None, None, {}


os.register_at_fork(after_in_child=RunnerProcess._forget_in_child)


def _encode_launch(handle: int, entry: int, config: _abi.LaunchConfig,
                   args: list[PackedArgument]):
    """The LAUNCH request, and the (address, size, copy back) of each buffer in order.

    Arrays whose memory overlaps (the same array twice, views of one buffer) travel as one
    buffer, so that the kernel sees the same aliasing as in this process.
    """
    spans = []  # [start, end, copy_back]
    for arg in args:
        if arg.array is not None:
            start = arg.array.__array_interface__["data"][0]
            spans.append([start, start + arg.array.nbytes, arg.writes])
    merged: list[list] = []
    for span in sorted(spans):
        if merged and span[0] < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], span[1])
            merged[-1][2] = merged[-1][2] or span[2]
        else:
            merged.append(list(span))
    pieces = [struct.pack("<III", _LAUNCH, handle, entry), bytes(config),
              struct.pack("<I", len(merged))]
    for start, end, copy_back in merged:
        pieces.append(struct.pack("<QB", end - start, int(copy_back)))
        if end > start:
            pieces.append((ctypes.c_char * (end - start)).from_address(start))
    pieces.append(struct.pack("<I", len(args)))
    for arg in args:
        if arg.value is not None:
            pieces.append(struct.pack("<BI", 1, len(arg.value)) + arg.value)
        elif arg.array is None:
            pieces.append(struct.pack("<B", 2))
        else:
            start = arg.array.__array_interface__["data"][0]
            index = next(i for i, m in enumerate(merged)
                         if m[0] <= start and (start < m[1] or m[0] == m[1] == start))
            pieces.append(struct.pack("<BIQ", 0, index, start - merged[index][0]))
    return pieces, [(start, end - start, copy_back) for start, end, copy_back in merged]


_HEADLINE = re.compile(r"^(?:==\d+==)?(?:ERROR|WARNING): (?:Address|Thread)Sanitizer: "
                       r"(?P<kind>[\w-]+(?: [\w-]+)*?)(?: on | \(|$)", re.MULTILINE)
_CUDA_THREAD = re.compile(r"gpuconv-simt: the error happened in CUDA block \((\d+),(\d+),(\d+)\) "
                          r"thread \((\d+),(\d+),(\d+)\)")
_CONTEXT = re.compile(r"^gpuconv-simt: (the address is .*)$", re.MULTILINE)
_PREVIOUS = re.compile(r"^  Previous (?P<access>\w+) of size \d+ at \S+ by thread (?P<tsan>T\d+)"
                       r"[^\n]*\n\s+#0 \S+ (?P<where>\S+)", re.MULTILINE)


_FRAME = re.compile(r"^\s+#\d+ (?:0x[0-9a-f]+ in )?.*? (?P<file>[^\s()]+):(?P<line>\d+)(?::\d+)?(?: |$)",
                    re.MULTILINE)
_NOT_KERNEL_CODE = (str(_toolchain.RUNTIME_DIR), "/usr/", "../../", "<simt-entries>")


def _first_kernel_frame(report: str) -> str | None:
    """``file:line`` of the innermost stack frame in kernel code (not the runtime or libc)."""
    for frame in _FRAME.finditer(report):
        if not frame.group("file").startswith(_NOT_KERNEL_CODE):
            return f"{frame.group('file')}:{frame.group('line')}"
    return None


def _sanitizer_error(sanitize: str, report: str, kernel: str) -> SanitizerError:
    """The exception for a runner that a sanitizer stopped; ``report`` is its stderr."""
    tool = "AddressSanitizer" if sanitize == "address" else "ThreadSanitizer"
    headline = _HEADLINE.search(report)
    kind = headline.group("kind") if headline else "an error (the runner stopped)"
    source = _first_kernel_frame(report)
    kwargs = {"kernel": kernel, "source": source, "report": report, "sanitizer": sanitize}
    facts = [f"{tool}: {kind} in {kernel}" + (f" at {source}" if source else "")]
    cuda = _CUDA_THREAD.search(report)
    if cuda:
        kwargs["block"] = tuple(int(v) for v in cuda.group(1, 2, 3))
        kwargs["thread"] = tuple(int(v) for v in cuda.group(4, 5, 6))
        facts.append(f"CUDA block {kwargs['block']} thread {kwargs['thread']}")
    facts += _CONTEXT.findall(report)
    previous = _PREVIOUS.search(report)
    if previous:
        name = re.search(r"Thread " + previous.group("tsan") + r" '([^']*)'", report)
        who = f"CUDA {name.group(1)}" if name else f"TSan thread {previous.group('tsan')}"
        # The previous access's stack runs to the next blank line; name its kernel line, not a
        # force-included runtime helper's (cp.async's poisoning, say).
        stack = report[previous.start():].split("\n\n", 1)[0]
        where = _first_kernel_frame(stack) or previous.group("where")
        facts.append(f"racing with a {previous.group('access')} by {who} at {where}")
    lines = report.strip().splitlines()
    shown = "\n".join(lines[:_REPORT_MAX_LINES])
    more = (f"\n... ({len(lines) - _REPORT_MAX_LINES} more lines in the exception's .report)"
            if len(lines) > _REPORT_MAX_LINES else "")
    return SanitizerError("; ".join(facts) + "\n" + shown + more, **kwargs)


@atexit.register
def _close_runners() -> None:
    for runner in list(RunnerProcess._instances.values()):
        runner.close()


class RunnerModule:
    """A sanitized module as the Function objects see it (same shape as NativeModule)."""

    def __init__(self, path: Path, entries: int, sanitize: str):
        self.path = path
        self._entries = entries
        self._runner = RunnerProcess.for_mode(sanitize)
        _, self.params = self._runner.load(path, entries)

    def launch(self, entry: int, config: _abi.LaunchConfig, args: list[PackedArgument],
               kernel: str = "") -> _abi.Error:
        config.handle_faults = 0
        return self._runner.launch(self.path, self._entries, entry, config, args, kernel)
