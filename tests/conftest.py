import os
import sys

# dense_reference and the CPU kernel emulator are test-only modules that live beside the tests.
sys.path.insert(0, os.path.dirname(__file__))

import shutil  # noqa: E402

import pytest  # noqa: E402

# The CPU kernel emulator compiles kernels/*.cu with g++; without it the emulated-kernel tests are skipped.
needs_emulator = pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA kernel emulator needs g++")
