"""Backend selection: get_backend("numpy" | "cuda" | "auto")."""
from __future__ import annotations

import sys

from ..errors import UserError
from .base import Backend
from .numpy_backend import NumpyBackend

_cache: dict[str, Backend] = {}
_auto_said = False


def cuda_unavailable_reason() -> str | None:
    """None when CuPy and a CUDA device are usable, else why not (one line)."""
    try:
        import cupy
    except Exception as e:  # ImportError, or a broken CUDA install raising at import
        return f"CuPy is not importable ({type(e).__name__}: {e}); install bep-gpu[cuda]"
    try:
        if not cupy.is_available():
            return "CuPy finds no usable CUDA device"
    except Exception as e:
        return f"CuPy cannot query the CUDA runtime ({e})"
    return None


def get_backend(name: str = "auto") -> Backend:
    """The backend called name; "auto" picks CUDA when usable, else NumPy, and says once which and why."""
    global _auto_said
    if name in _cache:
        return _cache[name]
    if name == "numpy":
        backend: Backend = NumpyBackend()
    elif name == "cuda":
        why = cuda_unavailable_reason()
        if why is not None:
            raise UserError(f"--backend cuda: {why}; use --backend numpy or auto")
        from .cuda_backend import CudaBackend

        backend = CudaBackend()
    elif name == "auto":
        why = cuda_unavailable_reason()
        backend = get_backend("numpy" if why else "cuda")
        if not _auto_said:
            msg = f"backend auto: using numpy ({why})" if why else f"backend auto: using cuda ({backend.device})"
            print(msg, file=sys.stderr)
            _auto_said = True
        return backend
    else:
        raise UserError(f"unknown backend {name!r}: choose numpy, cuda or auto")
    _cache[name] = backend
    return backend


__all__ = ["Backend", "NumpyBackend", "get_backend", "cuda_unavailable_reason"]
