# Marks kernels/ as the package-data folder gpuconv.kernels; it holds CUDA sources only.
