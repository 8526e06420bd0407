"""Backend selection: get_backend("numpy" | "numba" | "cuda" | "auto"), a name -> module table imported lazily."""
from __future__ import annotations

import importlib
import sys

from ..errors import UserError
from .base import Backend
from .numpy_backend import NumpyBackend

# name -> (module, class): imported on first use, so that numba and CuPy load only when asked for.
BACKENDS = {
    "numpy": (".numpy_backend", "NumpyBackend"),
    "numba": (".numba_backend", "NumbaBackend"),
    "cuda": (".cuda_backend", "CudaBackend"),
}
AUTO_ORDER = ("cuda", "numba", "numpy")  # what `auto` tries, fastest first

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


def numba_unavailable_reason() -> str | None:
    """None when numba imports, else why not (one line)."""
    try:
        import numba  # noqa: F401 (the import is the check)
    except Exception as e:  # ImportError, or an llvmlite that does not load on this machine
        return f"numba is not importable ({type(e).__name__}: {e})"
    return None


_REASONS = {"cuda": cuda_unavailable_reason, "numba": numba_unavailable_reason, "numpy": lambda: None}


def _make(name: str) -> Backend:
    module, cls = BACKENDS[name]
    return getattr(importlib.import_module(module, __name__), cls)()


def get_backend(name: str = "auto", quiet: bool = False) -> Backend:
    """The backend called name; "auto" picks the first usable of cuda, numba, numpy and says once (on stderr,
    unless quiet) which and why the faster ones were passed over."""
    global _auto_said
    if name in _cache:
        return _cache[name]
    if name == "auto":
        skipped = []
        for candidate in AUTO_ORDER:
            why = _REASONS[candidate]()
            if why is None:
                break
            skipped.append(f"no {candidate}: {why}")
        backend = get_backend(candidate)
        if not _auto_said and not quiet:
            print(f"backend auto: using {candidate} ({backend.device})" + (f"; {'; '.join(skipped)}" if skipped else ""),
                  file=sys.stderr)
            _auto_said = True
        return backend
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r}: choose {', '.join(BACKENDS)} or auto")
    why = _REASONS[name]()
    if why is not None:
        raise UserError(f"--backend {name}: {why}; use --backend auto or numpy")
    backend = _cache[name] = _make(name)
    return backend


__all__ = ["Backend", "NumpyBackend", "get_backend", "cuda_unavailable_reason", "numba_unavailable_reason",
           "BACKENDS"]
