"""Reader for IDX files (the MNIST / Fashion-MNIST format), plain or gzip-compressed."""
from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from ..errors import UserError

# Type byte of the magic number -> big-endian element type.
_IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            raw = f.read()
        # Decide by content, not name: some mirrors ship gzip data without the .gz suffix or the reverse.
        if raw[:2] == b"\x1f\x8b":
            return gzip.decompress(raw)
        return raw
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise UserError(f"{path}: truncated or corrupt gzip data ({e}); download the file again") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array stored in an IDX file, in native byte order; UserError for a bad magic number or a short file."""
    path = os.fspath(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise UserError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path}: truncated IDX file (header cut short); download the file again")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = len(raw) - header
    if have < need:
        raise UserError(f"{path}: truncated IDX file ({have} of {need} data bytes); download the file again")
    if have > need:
        raise UserError(f"{path}: {have - need} bytes past the end of the IDX data; not a valid IDX file")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))
