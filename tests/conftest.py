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


def script_module(name: str):
    """The module of scripts/<name>.py (the scripts are not a package)."""
    import importlib

    scripts = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")
    sys.path.insert(0, scripts)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(scripts)


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


def prototypes_npz(path, classes: int, features: int, n_train: int, n_test: int, flip: float) -> str:
    """A Random-Prototypes-like npz:PATH dataset (seed 0): each sample its class's +-1 prototype with each bit
    flipped with probability `flip`. Quicker to load than generating the real dataset."""
    rng = np.random.default_rng(0)
    protos = rng.choice(np.array([-1, 1], dtype=np.int8), size=(classes, features))
    y = rng.integers(0, classes, n_train + n_test)
    x = protos[y] * np.where(rng.random((n_train + n_test, features)) < flip, -1, 1).astype(np.int8)
    np.savez(path, x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:], y_test=y[n_train:])
    return f"npz:{path}"
