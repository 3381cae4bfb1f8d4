"""Audit 20 (utilities, environment variables, the simulator's toolchain). Findings, each fixed
and pinned:

1. GPUCONV_AUTOTUNE took anything but 1/true/yes/on as "off", GPUCONV_SIMULATE anything but
   0/false/no/off as "on" (GPUCONV_SIMULATE=none simulated): both now take the same spellings
   and refuse any other value naming the variable.
2. GPUCONV_SIMULATE_STACK_KB=abc (or 8) fell back to the default without a word.
3. GPUCONV_CACHE_DIR naming a file failed deep inside pathlib with a bare FileExistsError; a
   compiler that fails without printing anything (GPUCONV_SIM_CXX=false) gave "failed:" and
   nothing after it; on a machine other than x86-64 the runtime's assembly failed to build.
4. pool2d_output_shape called its input_shape "x" in its messages.
"""
import numpy as np
import pytest

import gpuconv
from gpuconv import _state
from gpuconv.conv import autotune
from gpuconv.simulator import _module, _toolchain


@pytest.mark.parametrize("text, on", [(None, False), ("", False), (" OFF ", False), ("no", False),
                                      ("0", False), ("1", True), ("Yes", True), ("on", True),
                                      ("TRUE", True)])
def test_flag_spellings(text, on):
    assert _state.flag_value("GPUCONV_X", text) is on


@pytest.mark.parametrize("variable, read", [
    ("GPUCONV_SIMULATE", lambda: _state.executor_for("numpy")),
    ("GPUCONV_AUTOTUNE", autotune.enabled)])
@pytest.mark.parametrize("value", ["none", "2", "maybe", "disabled"])
def test_an_unknown_flag_value_is_refused_naming_the_variable(monkeypatch, variable, read,
                                                               value):
    monkeypatch.setattr(autotune, "_enabled", None)     # follow the environment
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=f"{variable}={value!r} is invalid"):
        read()


def test_gpuconv_simulate_none_no_longer_simulates(monkeypatch):
    monkeypatch.setenv("GPUCONV_SIMULATE", "none")
    with pytest.raises(ValueError, match="GPUCONV_SIMULATE"):
        gpuconv.max_pool2d(np.ones((1, 1, 2, 2), np.float32), 2)
    monkeypatch.setenv("GPUCONV_SIMULATE", "off")
    assert gpuconv.max_pool2d(np.ones((1, 1, 2, 2), np.float32), 2).shape == (1, 1, 1, 1)


@pytest.mark.parametrize("value", ["abc", "8", "64k", "-32"])
def test_a_bad_simulated_stack_size_is_refused(monkeypatch, value):
    monkeypatch.setenv("GPUCONV_SIMULATE_STACK_KB", value)
    with pytest.raises(ValueError, match=f"GPUCONV_SIMULATE_STACK_KB={value!r}"):
        _module._stack_bytes(None)
    monkeypatch.setenv("GPUCONV_SIMULATE_STACK_KB", "101")
    assert _module._stack_bytes(None) == 104 * 1024           # whole 4 KiB pages
    monkeypatch.setenv("GPUCONV_SIMULATE_STACK_KB", " ")
    assert _module._stack_bytes("address") == 256 * 1024


def test_a_cache_dir_that_is_a_file_is_named(monkeypatch, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("GPUCONV_CACHE_DIR", str(blocker))
    with pytest.raises(_toolchain.ToolchainError, match="GPUCONV_CACHE_DIR"):
        _toolchain.cache_dir()


def test_a_silent_compiler_failure_names_the_compiler(monkeypatch):
    import subprocess
    monkeypatch.setenv("GPUCONV_SIM_CXX", "false")
    failed = subprocess.CompletedProcess(["false"], 1, stdout="", stderr="")
    message = _toolchain.compiler_failure("building the simulator runtime (plain)", failed)
    assert "'false' (GPUCONV_SIM_CXX" in message and "status 1" in message
    assert "printed nothing" in message


def test_pool2d_output_shape_names_input_shape():
    with pytest.raises(ValueError, match="^input_shape is too small for kernel_size"):
        gpuconv.pool2d_output_shape((1, 3, 1, 1), 3)


def test_a_machine_other_than_x86_64_is_told_the_simulator_needs_one(monkeypatch):
    import platform
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    _toolchain.compiler_identity.cache_clear()
    try:
        with pytest.raises(_toolchain.ToolchainError, match="x86-64 machines only; this one is "
                                                            "aarch64"):
            _toolchain.compiler_identity(_toolchain.compiler())
    finally:
        _toolchain.compiler_identity.cache_clear()
