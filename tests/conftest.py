import os
import sys

# dense_reference and the CPU kernel emulator are test-only modules that live beside the tests.
sys.path.insert(0, os.path.dirname(__file__))

import shutil  # noqa: E402

import numpy as np  # noqa: E402

import pytest  # noqa: E402

# The CPU kernel emulator compiles kernels/*.cu with g++; without it the emulated-kernel tests are skipped.
needs_emulator = pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA kernel emulator needs g++")

# Backends that must give the same integers: `bk` runs a test once on each. The emulated CUDA backend runs the
# real kernels/*.cu on the CPU, once with the CUDA-core products and once with the b1 tensor-core ones (every
# xnor_matmul and fused epilogue then goes through xnor_matmul_tc.cu). A new backend is one more entry here.
BACKENDS = ["numpy", "numba", "cuda-emu", "cuda-emu-tc"]


def make_backend(name: str):
    from bep_gpu.backends.numpy_backend import NumpyBackend

    if name == "numpy":
        return NumpyBackend()
    if name == "numba":
        from bep_gpu.backends.numba_backend import NumbaBackend

        return NumbaBackend()
    from bep_gpu.backends.cuda_backend import CudaBackend
    from emu import emulated_module

    return CudaBackend(module=emulated_module(), xp=np, matmul="tensor_core" if name == "cuda-emu-tc" else "cuda_core")


@pytest.fixture(scope="session", params=[pytest.param(n, marks=needs_emulator if n.startswith("cuda") else ())
                                         for n in BACKENDS])
def bk(request):
    return make_backend(request.param)
