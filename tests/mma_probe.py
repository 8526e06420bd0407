"""Inputs and expected output of tests/mma_layout_probe.cu, shared by the emulated and the GPU tests."""
from pathlib import Path

import numpy as np

PROBE_CU = Path(__file__).resolve().parent / "mma_layout_probe.cu"


def probe_case(seed):
    """Random 16 x 8 and 8 x 8 uint32 operands (32-bit chunks of K) and d = A AND-popc B^T + 7."""
    gen = np.random.default_rng(seed)
    a = gen.integers(0, 2**32, size=(16, 8), dtype=np.uint32)
    b = gen.integers(0, 2**32, size=(8, 8), dtype=np.uint32)
    both = np.ascontiguousarray(a[:, None, :] & b[None, :, :])  # (16, 8, 8) chunks
    want = np.unpackbits(both.view(np.uint8), axis=2).sum(axis=2, dtype=np.int32) + 7  # NumPy 1.x has no bitwise_count
    return a, b, want
