"""gpuconv: raw CUDA convolution and pooling kernels for Python, compiled at runtime by CuPy.

The CUDA sources live in the top-level ``kernels/`` folder of the repository; they are installed
as the package data folder ``gpuconv/kernels`` so that an installed (non-editable) package finds
them (see ``gpuconv/_paths.py``).
"""
from setuptools import find_packages, setup

CUPY = "cupy>=14.1"

setup(
    name="gpuconv",
    version="0.1.0",
    description="GPU convolution and pooling kernels (raw CUDA via CuPy) with NumPy references "
    "and a CPU executor for the same kernels",
    python_requires=">=3.10",
    packages=find_packages(include=["gpuconv", "gpuconv.*"]) + ["gpuconv.kernels"],
    package_dir={"gpuconv.kernels": "kernels"},
    package_data={"gpuconv.kernels": ["*.cu", "*/*.cu", "*/*.cuh", "*/*.h"],
                  # the simulator's runtime sources, compiled on the user's machine
                  "gpuconv.simulator": ["runtime/*.h", "runtime/*.cpp", "runtime/*.S",
                                        "runtime/include/*"]},
    include_package_data=False,
    install_requires=["numpy>=1.24"],
    extras_require={
        # One extra per CUDA major version; both pin CuPy >= 14.1 (earlier releases recompile
        # templated modules in every process).
        "cuda12": ["cupy-cuda12x>=14.1"],
        "cuda13": ["cupy-cuda13x>=14.1"],
        "test": [
            "pytest>=7",
            "pytest-benchmark>=4",
            "hypothesis>=6",
            "scipy>=1.9",
            # bfloat16 for NumPy arrays (the kernels' __nv_bfloat16 instantiations are tested with it).
            "ml_dtypes>=0.3",
            "matplotlib>=3.6",
            # The offline compile check of every kernel (python -m gpuconv compile), no GPU or
            # system CUDA needed: NVRTC, plus the cuda_fp16.h/cuda_bf16.h headers it does not
            # build in and libcu++ (gpuconv/_nvrtc.py). CUDA 13: sm_75 and newer.
            "nvidia-cuda-nvrtc>=13.0,<14",
            "nvidia-cuda-runtime>=13.0,<14",
            "nvidia-cuda-cccl>=13.0,<14",
        ],
        "bench": ["matplotlib>=3.6"],
        "torch": ["torch>=2.4"],     # torch.library.register_fake
        "jax": ["jax>=0.4.35"],
    },
)
