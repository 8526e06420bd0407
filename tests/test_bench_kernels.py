"""The GPU kernel benchmark's and the Nsight workload's calls (scripts/bench_kernels.py primitive_calls) run on
the emulated kernels, so a wrong call fails here and not in the few minutes a device is lent."""
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulator needs g++")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))


class RecordingModule:
    """An emulated kernel module that remembers which kernels were looked up (one lookup per backend)."""

    def __init__(self, module):
        self.module, self.names = module, set()

    def get_function(self, name):
        self.names.add(name)
        return self.module.get_function(name)


def test_primitive_calls_run_and_cover_the_kernels():
    from bench_kernels import primitive_calls
    from bep_gpu.backends.cuda_backend import CudaBackend, kernel_files
    from emu import emulated_module
    from emu.emulator import kernel_signatures

    module = RecordingModule(emulated_module())
    bk = CudaBackend(module=module, xp=np)
    calls = primitive_calls(bk, 70, 65, 130)
    for fn in calls.values():
        fn()
    every = set()
    for name, text in kernel_files().items():
        if name.endswith(".cu"):
            every |= set(kernel_signatures(text))
    missing = every - module.names
    # pack's other input types and counter_uniform have their own tests (not on the training path); every other
    # kernel is benchmarked.
    assert missing <= {k for k in every if k.startswith("pack_")} | {"counter_uniform"}, missing
