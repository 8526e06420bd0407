"""--threads N: one thread count for every CPU path (numba's kernels, the BLAS under NumPy, torch's peers)."""
from __future__ import annotations

from .errors import UserError

_blas_limit = None  # the threadpoolctl limiter in force (kept so that its limit stays applied)


def set_threads(n: int) -> None:
    """Use n threads for numba kernels and BLAS from now on; n = 0: the libraries' defaults (numba's
    NUMBA_NUM_THREADS, BLAS as it started)."""
    global _blas_limit
    n = int(n)
    if n < 0:
        raise UserError(f"--threads must be >= 0 (0: the default), got {n}")
    try:
        import numba
    except Exception:  # no numba: only BLAS threads to set
        numba = None
    if numba is not None:
        if n > numba.config.NUMBA_NUM_THREADS:
            raise UserError(f"--threads {n}: numba was started with at most {numba.config.NUMBA_NUM_THREADS} "
                            "threads (NUMBA_NUM_THREADS); ask for fewer or raise NUMBA_NUM_THREADS")
        numba.set_num_threads(n or numba.config.NUMBA_NUM_THREADS)
    if _blas_limit is not None:
        _blas_limit.restore_original_limits()
        _blas_limit = None
    if n:
        from threadpoolctl import threadpool_limits

        _blas_limit = threadpool_limits(limits=n, user_api="blas")
