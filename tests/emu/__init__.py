"""CPU emulation of the CUDA kernels for CI (see emulator.py)."""
from .emulator import CountingModule, EmuModule, emulated_module, make_emulated_backend

__all__ = ["CountingModule", "EmuModule", "emulated_module", "make_emulated_backend"]
