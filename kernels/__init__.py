# CUDA sources of the cuda backend; shipped in the wheel as bep_gpu.kernels (see pyproject.toml).
