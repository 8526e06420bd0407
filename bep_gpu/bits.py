"""Bit layout of docs/ALGORITHM.md section 1, on the host (NumPy).

+1 <-> bit 1, -1 <-> bit 0; element j of a row lives in uint64 word j // 64, bit j % 64 (little-endian);
bits past the row length are 0. A uint64 array viewed as uint32 keeps the same bit order on little-endian
hosts (every platform NumPy and CUDA share), which the CUDA kernels rely on.
"""
from __future__ import annotations

import numpy as np

WORD_BITS = 64


def n_words(n: int) -> int:
    """Number of uint64 words that hold n bits."""
    return (int(n) + WORD_BITS - 1) // WORD_BITS


def pack_bits(x) -> np.ndarray:
    """Pack the last axis of x (x >= 0 -> bit 1) into uint64 words; shape (..., n_words(n))."""
    x = np.asarray(x)
    if x.dtype == np.bool_:
        bits = x
    else:
        bits = x >= 0
    n = bits.shape[-1]
    nw = n_words(n)
    pad = nw * WORD_BITS - n
    if pad:
        bits = np.concatenate([bits, np.zeros(bits.shape[:-1] + (pad,), dtype=bool)], axis=-1)
    # packbits with bitorder="little" puts element j at bit j % 8 of byte j // 8; eight such bytes read as a
    # little-endian uint64 give bit j % 64 of word j // 64.
    packed = np.packbits(bits, axis=-1, bitorder="little")
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64, copy=False).reshape(bits.shape[:-1] + (nw,))


def unpack_bits(words, n: int) -> np.ndarray:
    """Inverse of pack_bits: int8 array of +-1 with last axis n."""
    words = np.ascontiguousarray(np.asarray(words, dtype=np.uint64))
    n = int(n)
    if words.shape[-1] != n_words(n):
        raise ValueError(f"unpack_bits: last axis has {words.shape[-1]} words, {n} bits need {n_words(n)}")
    as_bytes = words.astype("<u8", copy=False).view(np.uint8)
    bits = np.unpackbits(as_bytes, axis=-1, count=n, bitorder="little")
    return (bits.astype(np.int8) * 2 - 1).reshape(words.shape[:-1] + (n,))


def transpose_bits(words, n_rows: int, n_cols: int) -> np.ndarray:
    """Pack the other axis: (n_rows, n_words(n_cols)) -> (n_cols, n_words(n_rows)), same bits."""
    words = np.asarray(words, dtype=np.uint64)
    if words.shape != (n_rows, n_words(n_cols)):
        raise ValueError(f"transpose_bits: expected shape {(n_rows, n_words(n_cols))}, got {words.shape}")
    return pack_bits(unpack_bits(words, n_cols).T)


def row_popcounts(words, k: int | None = None) -> np.ndarray:
    """Set bits per row of (rows, words) as uint32, bits at or past k ignored (k None: every bit counts)."""
    words = np.asarray(words, dtype=np.uint64)
    if k is not None and int(k) % WORD_BITS and words.shape[-1]:
        words = words.copy()
        words[..., -1] &= np.uint64((1 << (int(k) % WORD_BITS)) - 1)
    as_bytes = np.ascontiguousarray(words).view(np.uint8)  # NumPy 1.x has no bitwise_count
    return np.unpackbits(as_bytes, axis=-1).sum(axis=-1, dtype=np.uint32)
