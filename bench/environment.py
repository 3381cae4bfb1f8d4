"""Where a run happened: device, driver, CUDA and library versions, git commit (for the JSON)."""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LIBRARIES = ("gpuconv", "numpy", "cupy", "cupy-cuda12x", "cupy-cuda13x", "torch", "torchvision",
             "ml_dtypes", "matplotlib", "pytest-benchmark")


# Environment variables that change what a run measures: gpuconv's autotuner and workspace
# limit (which algorithm auto picks), TF32 in CuPy's / cuBLAS's float32 GEMMs (the ceilings and
# the cuBLAS baseline), CuPy's reduction backends, launch blocking (host time in every call), and
# the CPU executor's knobs. Only those set are recorded; none set means the defaults.
SETTINGS = ("GPUCONV_AUTOTUNE", "GPUCONV_AUTOTUNE_CACHE", "GPUCONV_WORKSPACE_BYTES",
            "GPUCONV_SIMULATE", "GPUCONV_SIMULATE_ORDER", "GPUCONV_SIMULATE_SEED",
            "GPUCONV_SIMULATE_SANITIZE", "GPUCONV_SIM_CXX", "CUPY_TF32", "NVIDIA_TF32_OVERRIDE",
            "CUPY_ACCELERATORS", "CUDA_LAUNCH_BLOCKING", "CUDA_VISIBLE_DEVICES",
            "CUBLAS_WORKSPACE_CONFIG")


def settings() -> dict[str, str]:
    return {name: os.environ[name] for name in SETTINGS if name in os.environ}


def require(tool: str, *modules: str) -> tuple:
    """The modules a GPU-only tool needs, imported; where one is missing, an exit naming the tool
    and what it needs (a traceback ending in ModuleNotFoundError told neither)."""
    try:
        return tuple(importlib.import_module(name) for name in modules)
    except ImportError as error:
        raise SystemExit(f"python -m {tool} needs {', '.join(modules)} on a CUDA GPU: {error}") from None


def library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


# The device machine gets a copy of the working tree, with no .git or with the .git of the
# session's starting checkout (not the commit sent): whoever starts the run there passes the
# commit in this variable (bench/gpu_session.sh records it too), and it wins over git.
COMMIT_VARIABLE = "GPUCONV_COMMIT"


def git_state() -> dict:
    given = os.environ.get(COMMIT_VARIABLE, "").strip()
    if given:
        # Whether that tree had local changes is not known here.
        return {"commit": given, "dirty": None, "source": COMMIT_VARIABLE}

    def git(*args):
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", False
    if commit:
        return {"commit": commit, "dirty": dirty, "source": "git"}
    return {"commit": "unknown", "dirty": None, "source": None}


def cpu_info() -> dict:
    return {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "cores": os.cpu_count()}


def gpu_info() -> dict:
    import cupy
    rt = cupy.cuda.runtime
    device = cupy.cuda.Device()
    props = rt.getDeviceProperties(device.id)
    name = props["name"]
    info = {
        "name": name.decode() if isinstance(name, bytes) else str(name),
        "compute_capability": device.compute_capability,
        "memory_GiB": round(props["totalGlobalMem"] / 2**30, 1),
        "sm_count": props["multiProcessorCount"],
        "l2_MiB": round(props["l2CacheSize"] / 2**20, 1),
        "driver_api_version": rt.driverGetVersion(),
        "cuda_runtime_version": rt.runtimeGetVersion(),
    }
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm",
                              "--format=csv,noheader", "-i", str(device.id)],
                             capture_output=True, text=True, timeout=20).stdout.strip()
        if smi:
            info["driver_version"], info["max_sm_clock"] = [v.strip() for v in smi.split(",")][:2]
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    try:
        import torch
        info["torch_cuda"] = torch.version.cuda
        info["cudnn_version"] = torch.backends.cudnn.version()
    except ImportError:
        pass
    return info


def gpu_present() -> bool:
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver, or no device: all mean "no GPU here"
        return False


def collect(mode: str) -> dict:
    env = {"python": sys.version.split()[0], "platform": platform.platform(),
           "cpu": cpu_info(), "libraries": library_versions(), "git": git_state(),
           "settings": settings()}
    if mode == "gpu":
        try:
            env["device"] = gpu_info()
        except Exception as error:  # the device failed during the run: still write the results
            env["device"] = {"name": "unknown GPU", "error": f"{type(error).__name__}: {error}"}
    else:
        env["device"] = {"name": f"CPU ({env['cpu']['processor']}, {env['cpu']['cores']} cores)"}
    return env
