"""The GPU kernel benchmark's and the Nsight workload's calls (scripts/bench_kernels.py primitive_calls) run on
the emulated kernels, so a wrong call fails here and not in the few minutes a device is lent."""
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulator needs g++")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))


def test_primitive_calls_run_and_cover_the_kernels():
    from bench_kernels import primitive_calls
    from bep_gpu.backends.cuda_backend import CudaBackend, kernel_files
    from emu import CountingModule
    from emu.emulator import kernel_signatures

    module = CountingModule()
    bk = CudaBackend(module=module, xp=np)
    calls = primitive_calls(bk, 70, 65, 130)
    module.launches.clear()  # the operands' set-up and the tensor-core layout probe are no benchmark's launches
    for fn in calls.values():
        fn()
    every = set()
    for name, text in kernel_files().items():
        if name.endswith(".cu"):
            every |= set(kernel_signatures(text))
    missing = every - set(module.launches)
    # pack's other input types and counter_uniform have their own tests (not on the training path); every other
    # kernel is benchmarked.
    assert missing <= {k for k in every if k.startswith("pack_")} | {"counter_uniform"}, missing


def test_primitive_calls_leave_out_the_tensor_cores_when_the_layout_probe_refuses(monkeypatch):
    from bench_kernels import primitive_calls
    from bep_gpu.backends.cuda_backend import CudaBackend
    from emu import emulated_module

    def refuse(self):
        raise RuntimeError("fragment layout is wrong here")

    monkeypatch.setattr(CudaBackend, "_check_tensor_core", refuse)
    calls = primitive_calls(CudaBackend(module=emulated_module(), xp=np), 70, 65, 130)
    assert "xnor_matmul" in calls and not [name for name in calls if "tensor cores" in name]
