"""NumPy backend: the executable specification of every kernel in kernels/ (each names its mirror here).

Matrix products unpack bits to +-1 float32 and call BLAS. That is exact: every product is -1, 0 or +1 and every
partial sum is an integer of magnitude <= K, and float32 represents all integers up to 2^24 exactly, so no
rounding can happen while K < 2^24. xnor_matmul splits longer rows into chunks of 2^23 and sums them in int32;
the gated product (over a layer's K units) and the update (over the batch) assume K, N < 2^24.
It is ~3x faster than popcount broadcasting (np.bitwise_count) on the same data.
"""
from __future__ import annotations

import numpy as np

from .. import bits as _bits
from .. import rng as _rng
from .base import Backend, check_int_matmul_width, update_impl

# Largest K summed in one float32 BLAS call (exact below 2^24, see module docstring).
_EXACT_CHUNK_BITS = 1 << 23
_EXACT_CHUNK_WORDS = _EXACT_CHUNK_BITS // 64


def unpack_pm1(words, n: int, dtype=np.float32) -> np.ndarray:
    """Bits -> +-1 values of dtype with last axis n (float for BLAS)."""
    words = np.ascontiguousarray(words, dtype=np.uint64)
    b = np.unpackbits(words.view(np.uint8), axis=-1, count=n, bitorder="little")
    out = b.astype(dtype)
    out *= 2
    out -= 1
    return out


def unpack01(words, n: int, dtype=np.float32) -> np.ndarray:
    """Bits -> 0/1 values of dtype with last axis n."""
    words = np.ascontiguousarray(words, dtype=np.uint64)
    return np.unpackbits(words.view(np.uint8), axis=-1, count=n, bitorder="little").astype(dtype)


def _sparse_delta(sel, t, x, k: int, j: int) -> np.ndarray:
    """update_delta's sum row by row over the samples that selected each unit (kernels/batch_update.cu's sparse
    kernels): the input row of each selection, negated where the target bit is 0, summed per unit."""
    units, samples = np.nonzero(unpack01(sel, k, dtype=bool).T)  # ordered by unit, then sample
    out = np.zeros((k, j), dtype=np.int32)
    if len(units) == 0:
        return out
    sel_t = np.asarray(t, dtype=np.uint64)[samples, units >> 6] >> (units & 63).astype(np.uint64)
    rows = np.asarray(x, dtype=np.uint64)[samples]
    rows[(sel_t & np.uint64(1)) == 0] ^= ~np.uint64(0)  # flipping every bit negates a +-1 row
    ones = np.unpackbits(rows.view(np.uint8), axis=-1, count=j, bitorder="little")
    starts = np.flatnonzero(np.r_[True, units[1:] != units[:-1]])
    counts = np.diff(np.r_[starts, len(units)])
    out[units[starts]] = 2 * np.add.reduceat(ones, starts, axis=0, dtype=np.int32) - counts[:, None]
    return out


class NumpyBackend(Backend):
    name = "numpy"
    xp = np

    def __init__(self, update: str | None = None):
        # "auto" is the BLAS product: on the CPU it beats the sparse form at every training shape measured
        # (BENCHMARKS.md, `bep-bench --sections update`).
        self.update = update_impl(update)

    def variant(self, update: str | None = None) -> "NumpyBackend":
        return NumpyBackend(update=self.update if update is None else update)

    def pack(self, x):
        return _bits.pack_bits(x)

    def transpose_bits(self, words, n_rows, n_cols):
        return _bits.transpose_bits(words, n_rows, n_cols)

    def xnor_matmul(self, a, b, k):
        a = np.asarray(a, dtype=np.uint64)
        b = np.asarray(b, dtype=np.uint64)
        kw = _bits.n_words(k)
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != kw or b.shape[1] != kw:
            raise ValueError(f"xnor_matmul: need (M, {kw}) and (N, {kw}) words for k={k}, got {a.shape}, {b.shape}")
        out = np.zeros((a.shape[0], b.shape[0]), dtype=np.int32)
        for w0 in range(0, kw, _EXACT_CHUNK_WORDS):
            w1 = min(kw, w0 + _EXACT_CHUNK_WORDS)
            n = min(k, w1 * 64) - w0 * 64
            out += (unpack_pm1(a[:, w0:w1], n) @ unpack_pm1(b[:, w0:w1], n).T).astype(np.int32)
        return out

    def gate_pack(self, z, threshold):
        return _bits.pack_bits(np.abs(np.asarray(z)) <= threshold)

    def gated_transposed_product(self, t, g, wt):
        return _bits.pack_bits(self._gated_sum(t, g, wt) >= 0)

    def gated_transposed_sum(self, t, g, wt):
        return self._gated_sum(t, g, wt).astype(np.int32)

    @staticmethod
    def _gated_sum(t, g, wt):
        n = t.shape[-1] * 64  # gate padding is 0, so full words are exact
        gt = unpack_pm1(t, n)
        gt *= unpack01(g, n)
        return gt @ unpack_pm1(wt, n).T  # float32, exact: |s| <= K < 2^24

    def group_select(self, score, cand, gamma):
        score = np.asarray(score)
        n_rows, k = score.shape
        if gamma <= 0 or k % gamma:
            raise ValueError(f"group_select: group size {gamma} does not divide {k}")
        c = unpack01(cand, k, dtype=bool)
        s = np.where(c, score.astype(np.int64), np.iinfo(np.int64).max).reshape(n_rows, k // gamma, gamma)
        idx = np.argmin(s, axis=2)  # first minimum = lowest index on ties
        has = c.reshape(n_rows, k // gamma, gamma).any(axis=2)
        sel = np.zeros((n_rows, k // gamma, gamma), dtype=bool)
        np.put_along_axis(sel, idx[..., None], has[..., None], axis=2)
        return _bits.pack_bits(sel.reshape(n_rows, k))

    def update_delta(self, sel, t, x, k, j, out=None):
        if self.update == "sparse":
            delta = _sparse_delta(sel, t, x, k, j)
        else:
            d = unpack_pm1(t, k)
            d *= unpack01(sel, k)
            delta = (d.T @ unpack_pm1(x, j)).astype(np.int32)  # exact while the batch has < 2^24 rows
        if out is None:
            return delta
        out[...] = delta
        return out

    # batch_update, apply_delta: Backend's (update_delta, then the int32 doubling, add and one clip)

    def reinforce(self, h, threshold, seed, stream, step, layer, clip, active=None):
        if threshold <= 0 or (active is not None and not active[0]):
            return
        step = int(np.asarray(step).reshape(-1)[0])  # an int or a one-element array
        fire = _rng.firing_indices(seed, stream, step, layer, h.size, threshold)  # few: touch only them
        at = np.unravel_index(fire, h.shape)  # row-major flat indices, written through h (any memory layout)
        v = h[at].astype(np.int32)
        v += np.where(v >= 0, 2, -2).astype(np.int32)
        h[at] = np.clip(v, -clip, clip)

    def counter_uniform(self, seed, stream, step, layer, n):
        return _rng.counter_uniform(seed, stream, step, layer, n)

    def int_matmul(self, x, h):
        j = h.shape[1]
        check_int_matmul_width(j)
        # float64 is exact: |sum| <= 32768 * J < 2^53
        return (unpack_pm1(x, j, np.float64) @ np.asarray(h, dtype=np.float64).T).astype(np.int32)
