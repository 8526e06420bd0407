"""CPU emulation of the CUDA kernels for CI (see emulator.py)."""
from .emulator import EmuModule, emulated_module, make_emulated_backend

__all__ = ["EmuModule", "emulated_module", "make_emulated_backend"]
