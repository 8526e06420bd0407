"""NVTX ranges for Nsight; a no-op when the optional `nvtx` package is absent."""
from __future__ import annotations

import contextlib

try:
    import nvtx as _nvtx
except ImportError:  # optional dependency (extra [profiling])
    _nvtx = None

_DOMAIN = "bep"


def nvtx_range(name: str):
    """Context manager marking a phase (forward, trigger, targets, masks, update, reinforcement, data)."""
    if _nvtx is None:
        return contextlib.nullcontext()
    return _nvtx.annotate(name, domain=_DOMAIN)
