"""numba backend: every primitive of base.Backend as a compiled CPU kernel (numba_kernels.py), bit-exact with NumPy.

This class mirrors cuda_backend.py: argument checks, output allocation and the choice of kernel; the kernels
know nothing of layers. Arrays are NumPy arrays. The three products (forward, the targets' gated transposed
product, the popcount form of the update) share one register-blocked XOR/AND + popcount GEMM with fused
epilogues (int32 values, packed signs, packed gate bits, the in-place state add, the clipped weight update), so
no unpacked +-1 temporaries are made on the hot path. Kernels compile on first use and are cached on disk.
"""
from __future__ import annotations

import numba
import numpy as np

from .. import bits as _bits
from .. import rng as _rng
from . import numba_kernels as nk
from .base import (Backend, _conv_shape, check_int_matmul_width, check_select_wrong, check_update_operands,
                   delta_buffer, group_shape, update_impl)
from .numba_simd import TILE_M

_EMPTY_U8 = np.zeros((1, 1), dtype=np.uint8)
_EMPTY_I32 = np.zeros((1, 1), dtype=np.int32)
_EMPTY_I16 = np.zeros((1, 1), dtype=np.int16)
_EMPTY_WORDS = np.zeros((1, 1), dtype=np.uint64)
_INT64_MAX = 2**63 - 1
# update='auto': the sparse form visits each selection's input row (cost ~ selections x J), the popcount form
# every (unit, input) pair over the batch words (cost ~ K x J x n_words(N)); per unit of those counts they cost
# about the same on Zen 4 (single thread: 100 x 525 x 784 at 1 selection in 25: popcount 0.25 ms, sparse 0.41 ms;
# 1024 x 4096 x 4096 at 1 in 128: popcount 35 ms, sparse 28 ms), so auto takes sparse when
# SPARSE_COST x selections < K x n_words(N).
SPARSE_COST = 1.0
# Element operations below which a kernel runs on the calling thread alone: waking numba's worker threads costs
# 5-20 us on an idle machine and up to milliseconds on a loaded one, more than a small kernel's whole work.
PARALLEL_WORK = 1 << 18


def _run(work: int, kernel, *args):
    """kernel(*args), on one thread when `work` (element operations, roughly) is small."""
    if work >= PARALLEL_WORK:
        return kernel(*args)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return kernel(*args)
    finally:
        numba.set_num_threads(threads)


def _words(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.uint64)


def _pad_rows(a: np.ndarray) -> np.ndarray:
    """a with its rows padded by zero rows to a multiple of TILE_M (the GEMM tiles read whole tiles)."""
    extra = -a.shape[0] % TILE_M
    if extra == 0:
        return a
    return np.concatenate([a, np.zeros((extra, a.shape[1]), dtype=a.dtype)])


def _panelize(b):
    return _run(b.size, nk.panelize, b)


def _row_popcounts(words):
    return _run(words.size, nk.row_popcounts, words)


def _gated_operands(what, t, g, wt):
    """(t, g, wt, N, J) as words for the gated products; ValueError when the shapes do not match."""
    t, g, wt = _words(t), _words(g), _words(wt)
    if t.ndim != 2 or g.shape != t.shape or wt.ndim != 2 or wt.shape[1] != t.shape[1]:
        raise ValueError(f"{what}: t {t.shape}, g {g.shape}, wt {wt.shape} do not match")
    return t, g, wt, t.shape[0], wt.shape[0]


def _clear_padding(words: np.ndarray, k: int) -> np.ndarray:
    """words, or a copy with the bits past k cleared where a caller left some set (the products count whole
    words; NumPy's unpack ignores padding)."""
    if k % 64 == 0 or words.size == 0:
        return words
    pad = ~np.uint64((1 << (k % 64)) - 1)
    if not (words[:, -1] & pad).any():
        return words
    words = words.copy()
    words[:, -1] &= ~pad
    return words


def _clamp64(v) -> np.int64:
    return np.int64(max(-_INT64_MAX - 1, min(_INT64_MAX, int(v))))


class NumbaBackend(Backend):
    name = "numba"
    xp = np

    def __init__(self, update: str | None = None):
        self.update = update_impl(update)

    def variant(self, update: str | None = None) -> "NumbaBackend":
        return NumbaBackend(update=self.update if update is None else update)

    # --- pack / transpose ------------------------------------------------------------------------------------
    def pack(self, x):
        x = np.asarray(x)
        if x.ndim == 0:
            raise ValueError("pack: need at least one axis")
        n = x.shape[-1]
        out = np.zeros(x.shape[:-1] + (_bits.n_words(n),), dtype=np.uint64)
        if out.size == 0 or n == 0:
            return out
        kind = x.dtype.kind
        if kind == "b":
            flat, kernel = x.view(np.uint8), nk.pack_nonzero
        elif kind in "iu" or (kind == "f" and x.dtype.itemsize >= 4):
            flat, kernel = x, nk.pack_ge0
        elif kind == "f":
            flat, kernel = x.astype(np.float32), nk.pack_ge0  # exact: sign and NaN survive widening
        else:
            raise TypeError(f"pack: unsupported dtype {x.dtype}")
        _run(x.size, kernel, np.ascontiguousarray(flat).reshape(-1, n), out.reshape(-1, out.shape[-1]))
        return out

    def transpose_bits(self, words, n_rows, n_cols):
        n_rows, n_cols = int(n_rows), int(n_cols)
        words = _words(words)
        if words.shape != (n_rows, _bits.n_words(n_cols)):
            raise ValueError(f"transpose_bits: expected shape {(n_rows, _bits.n_words(n_cols))}, got {words.shape}")
        return _run(4 * words.size, nk.transpose_bits, words, n_rows, n_cols, False).reshape(n_cols, _bits.n_words(n_rows))

    def _panels_of_transpose(self, words, n_rows, n_cols):
        """panelize(transpose_bits(words)) in one pass: the update's B operand."""
        nwr = _bits.n_words(n_rows)
        return _run(4 * words.size, nk.transpose_bits, words, n_rows, n_cols, True).reshape(-1, nwr, nk.TILE_N)

    # --- the products ------------------------------------------------------------------------------------------
    def _operands(self, a, b, k, what):
        k = int(k)
        a, b = _words(a), _words(b)
        kw = _bits.n_words(k)
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != kw or b.shape[1] != kw:
            raise ValueError(f"{what}: need (M, {kw}) and (N, {kw}) words for k={k}, got {a.shape}, {b.shape}")
        return _clear_padding(a, k), _clear_padding(b, k), k

    def _gemm(self, a, bp, n, base, mode, g=None, z=_EMPTY_I32, threshold=0, h=_EMPTY_I16, clip=0):
        """popc_gemm on rows a (masked by g when given): returns (signs, gates) words for the requested bits."""
        m = base.shape[0]
        nw = _bits.n_words(n)
        signs = np.zeros((m, nw), dtype=np.uint64) if mode & nk.OUT_SIGN else None
        gates = np.zeros((m, nw), dtype=np.uint64) if mode & nk.OUT_GATE else None
        if m and n and a.shape[1]:
            pa = _pad_rows(a)
            pg = pa if g is None else _pad_rows(g)
            _run(m * n * a.shape[1] // 4, nk.popc_gemm, pa, pg, g is not None, bp, n, base, mode, z,
                         _EMPTY_U8 if signs is None else signs.view(np.uint8),
                         _EMPTY_U8 if gates is None else gates.view(np.uint8), _clamp64(threshold), h, np.int64(clip))
        return signs, gates

    def xnor_matmul(self, a, b, k):
        a, b, k = self._operands(a, b, k, "xnor_matmul")
        z = np.empty((a.shape[0], b.shape[0]), dtype=np.int32)
        if a.shape[1] == 0:
            z[...] = 0  # K = 0: every product is 0
            return z
        self._gemm(a, _panelize(b), b.shape[0], np.full(a.shape[0], k, dtype=np.int64), nk.OUT_Z, z=z)
        return z

    def xnor_matmul_sign(self, a, b, k, gate=None, add=None):
        """As Backend.xnor_matmul_sign, from one kernel: signs and gate bits packed, and `add` added, in the
        product's epilogue (gate and add together: the add epilogue, then gate_pack)."""
        a, b, k = self._operands(a, b, k, "xnor_matmul_sign")
        m, n = a.shape[0], b.shape[0]
        if add is not None:
            if add.shape != (m, n) or add.dtype != np.int32:
                raise ValueError(f"xnor_matmul_sign: add must be int32 {(m, n)}, got {add.dtype} {add.shape}")
            z = add if isinstance(add, np.ndarray) and add.flags.c_contiguous else np.ascontiguousarray(add)
            mode = nk.ADD_Z | nk.OUT_SIGN
        else:
            z = np.empty((m, n), dtype=np.int32)
            mode = nk.OUT_Z | nk.OUT_SIGN | (nk.OUT_GATE if gate is not None else 0)
        if a.shape[1] == 0:
            if add is None:
                z[...] = 0
            signs, gates = self.pack(z), (None if gate is None or add is not None else self.gate_pack(z, gate))
        else:
            signs, gates = self._gemm(a, _panelize(b), n, np.full(m, k, dtype=np.int64), mode, z=z,
                                      threshold=0 if gate is None else gate)
        if add is not None:
            if z is not add:
                add[...] = z
            z = add
            gates = None if gate is None else self.gate_pack(z, gate)
        return (z, signs) if gate is None else (z, signs, gates)

    def gate_pack(self, z, threshold):
        z = np.asarray(z)
        if z.dtype != np.int32:
            raise TypeError(f"gate_pack: z must be int32 (pre-activations), got {z.dtype}")
        if z.ndim == 0:
            raise ValueError("gate_pack: need at least one axis")
        n = z.shape[-1]
        out = np.zeros(z.shape[:-1] + (_bits.n_words(n),), dtype=np.uint64)
        if out.size and n:
            _run(z.size, nk.gate_pack, np.ascontiguousarray(z).reshape(-1, n), _clamp64(threshold),
                 out.reshape(-1, out.shape[-1]))
        return out

    def gated_transposed_product(self, t, g, wt):
        t, g, wt, n, j = _gated_operands("gated_transposed_product", t, g, wt)
        if t.shape[1] == 0:
            return self.pack(np.zeros((n, j), dtype=np.int8))  # no units: every sum is 0, sign +1
        signs, _ = self._gemm(t, _panelize(wt), j, _row_popcounts(g), nk.OUT_SIGN, g=g)
        return signs

    # --- masks and trigger -------------------------------------------------------------------------------------
    def group_select(self, score, cand, gamma):
        score = np.asarray(score)
        if score.dtype.kind not in "iu" or score.dtype == np.uint64:
            raise TypeError(f"group_select: integer scores expected (int64 at most), got {score.dtype}")
        n_rows, k, nw, gamma = group_shape("group_select", score, gamma)
        cand = _words(cand)
        if cand.shape != (n_rows, nw):
            raise ValueError(f"group_select: cand must be {(n_rows, nw)}, got {cand.shape}")
        out = np.zeros((n_rows, nw), dtype=np.uint64)
        if n_rows and k:
            _run(score.size, nk.select_groups, np.ascontiguousarray(score), cand, _EMPTY_WORDS, _EMPTY_WORDS, _EMPTY_WORDS, False,
                             gamma, out)
        return out

    def select_wrong(self, z, a, t, row_mask, gamma):
        """As Backend.select_wrong, in one kernel."""
        z = np.asarray(z)
        if z.dtype != np.int32:
            raise TypeError(f"select_wrong: z must be int32, got {z.dtype}")
        n_rows, k, nw, gamma = group_shape("select_wrong", z, gamma)
        a, t, row_mask = _words(a), _words(t), _words(row_mask)
        check_select_wrong(z, a, t, row_mask)
        out = np.zeros((n_rows, nw), dtype=np.uint64)
        if n_rows and k:
            _run(z.size, nk.select_groups, np.ascontiguousarray(z), _EMPTY_WORDS, a, t, row_mask, True, gamma, out)
        return out

    def trigger(self, logits, labels, margin):
        logits = np.ascontiguousarray(logits)
        labels = np.ascontiguousarray(labels)
        if logits.dtype != np.int32 or labels.dtype.kind not in "iu":
            raise TypeError(f"trigger: need int32 logits and integer labels, got {logits.dtype}, {labels.dtype}")
        if logits.ndim != 2 or labels.shape != (logits.shape[0],) or (logits.shape[0] and logits.shape[1] == 0):
            raise ValueError(f"trigger: need logits (N, C >= 1) and labels (N,), got {logits.shape}, {labels.shape}")
        n = logits.shape[0]
        row = np.zeros((n, 1), dtype=np.uint64)
        if n == 0:
            return np.zeros(2, dtype=np.int64), row
        if labels.min() < 0 or labels.max() >= logits.shape[1]:
            raise IndexError(f"trigger: labels must lie in [0, {logits.shape[1]})")
        wrong, fired = nk.trigger(logits, labels.astype(np.int64, copy=False), _clamp64(margin), row)
        return np.array([wrong, fired], dtype=np.int64), row

    # --- updates -----------------------------------------------------------------------------------------------
    @staticmethod
    def _update_operands(what, sel, t, x, k, j):
        sel, t, x = _words(sel), _words(t), _words(x)
        return sel, t, x, check_update_operands(what, sel, t, x, k, j)

    def _sparse(self, sel, n, k, j) -> bool:
        """Whether the sparse form is the cheaper one for this selection (update='auto' measures nothing: it
        estimates both from the selection count, see SPARSE_COST)."""
        if self.update != "auto":
            return self.update == "sparse"
        selections = int(_row_popcounts(sel).sum())
        return SPARSE_COST * selections < k * _bits.n_words(n)

    def _update(self, sel, t, x, n, k, j, delta, h, clip):
        """delta = the update sum (h None), or h = clip(h + 2 * sum) fused."""
        fused = h is not None
        sel_t, t_t = self.transpose_bits(sel, n, k), self.transpose_bits(t, n, k)
        if self._sparse(sel, n, k, j):
            _run(k * j, nk.sparse_update, sel_t, t_t, x, j, _EMPTY_I32 if fused else delta, h if fused else _EMPTY_I16,
                             np.int64(clip), fused)
            return
        bp = self._panels_of_transpose(x, n, j)
        base = _row_popcounts(sel_t)
        if fused:
            self._gemm(t_t, bp, j, base, nk.OUT_H, g=sel_t, h=h, clip=clip)
        else:
            self._gemm(t_t, bp, j, base, nk.OUT_Z, g=sel_t, z=delta)

    def update_delta(self, sel, t, x, k, j, out=None):
        k, j = int(k), int(j)
        sel, t, x, n = self._update_operands("update_delta", sel, t, x, k, j)
        delta, direct = delta_buffer(np, out, k, j)
        if n == 0 or k == 0 or j == 0:
            delta[...] = 0
        else:
            self._update(sel, t, x, n, k, j, delta, None, 0)
        if out is None or direct:
            return delta
        out[...] = delta
        return out

    def batch_update(self, h, sel, t, x, clip):
        if h.dtype != np.int16:
            raise TypeError(f"batch_update: hidden weights must be int16, got {h.dtype}")
        k, j = h.shape
        sel, t, x, n = self._update_operands("batch_update", sel, t, x, k, j)
        if k == 0 or j == 0:
            return
        hc = h if h.flags.c_contiguous else np.ascontiguousarray(h)
        if n == 0:
            _run(hc.size, nk.apply_delta, hc.reshape(-1), np.zeros(hc.size, dtype=np.int32), np.int64(clip))  # only the clip
        else:
            self._update(sel, t, x, n, k, j, None, hc, clip)
        if hc is not h:
            h[...] = hc

    def apply_delta(self, h, delta, clip):
        if h.dtype != np.int16:
            raise TypeError(f"apply_delta: hidden weights must be int16, got {h.dtype}")
        delta = np.ascontiguousarray(delta, dtype=np.int32)
        if delta.shape != h.shape:
            raise ValueError(f"apply_delta: delta {delta.shape} does not match h {h.shape}")
        hc = h if h.flags.c_contiguous else np.ascontiguousarray(h)
        if hc.size:
            _run(hc.size, nk.apply_delta, hc.reshape(-1), delta.reshape(-1), np.int64(clip))
        if hc is not h:
            h[...] = hc

    # --- counter RNG and the integer product -------------------------------------------------------------------
    def reinforce(self, h, threshold, seed, stream, step, layer, clip, active=None):
        threshold = int(threshold)
        if threshold <= 0 or h.size == 0 or (active is not None and not np.asarray(active).reshape(-1)[0]):
            return
        if h.dtype != np.int16:
            raise TypeError(f"reinforce: hidden weights must be int16, got {h.dtype}")
        step = int(np.asarray(step).reshape(-1)[0])  # an int or a one-element array
        key = np.uint64(_rng.rng_key(seed, stream, step, layer))
        always = threshold >= 2**32  # u < 2^32 always
        bound = np.uint64(0 if always else threshold << 32)  # u(f) < t  <=>  mix(key ^ f) < t * 2^32
        hc = h if h.flags.c_contiguous else np.ascontiguousarray(h)
        _run(8 * hc.size, nk.reinforce, hc.reshape(-1), key, bound, always, np.int64(clip))
        if hc is not h:
            h[...] = hc

    def counter_uniform(self, seed, stream, step, layer, n):
        out = np.empty(int(n), dtype=np.uint32)
        if len(out):
            _run(8 * len(out), nk.counter_uniform, np.uint64(_rng.rng_key(seed, stream, step, layer)), out)
        return out

    def int_matmul(self, x, h):
        h = np.asarray(h)
        if h.ndim != 2:
            raise ValueError(f"int_matmul: h must be (K, J), got {h.shape}")
        if h.dtype.kind not in "iu" or h.dtype.itemsize > 2 or h.dtype == np.uint16:
            raise TypeError(f"int_matmul: h must be int16 (or a narrower integer dtype), got {h.dtype}")
        k, j = h.shape
        check_int_matmul_width(j)
        x = _words(x)
        if x.ndim != 2 or x.shape[1] != _bits.n_words(j):
            raise ValueError(f"int_matmul: x must be (N, {_bits.n_words(j)}) words for J={j}, got {x.shape}")
        out = np.zeros((x.shape[0], k), dtype=np.int32)
        if out.size and j:
            _run(out.size * j, nk.int_matmul, x, np.ascontiguousarray(h, dtype=np.int16), out)
        return out

    # --- convolution -----------------------------------------------------------------------------------------------
    def im2col(self, x, c, kh, kw, stride, pad):
        x = _words(x)
        n, h, w, ho, wo = _conv_shape("im2col", x, c, kh, kw, stride, pad)
        out = np.zeros((n, ho, wo, _bits.n_words(kh * kw * c)), dtype=np.uint64)
        if out.size:
            _run(out.size * kh * kw, nk.im2col, x, int(c), int(kh), int(kw), int(stride), int(pad), out)
        return out

    def col2im_sign(self, s, h, w, c, kh, kw, stride, pad):
        s = np.asarray(s)
        n, ho, wo = s.shape[0], (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
        if min(h, w, c, kh, kw, stride) <= 0 or pad < 0 or ho <= 0 or wo <= 0 or s.shape != (n, ho, wo, kh * kw * c):
            raise ValueError(f"col2im_sign: sums {s.shape} do not fit a {h}x{w}x{c} map, kernel {kh}x{kw}, "
                             f"stride {stride}, padding {pad}")
        if s.dtype != np.int32:
            raise TypeError(f"col2im_sign: sums must be int32, got {s.dtype}")
        out = np.zeros((n, h, w, _bits.n_words(c)), dtype=np.uint64)
        if out.size:
            _run(s.size, nk.col2im_sign, np.ascontiguousarray(s), int(h), int(w), int(c), int(kh), int(kw),
                 int(stride), int(pad), out)
        return out

    def gated_transposed_sum(self, t, g, wt):
        t, g, wt, n, j = _gated_operands("gated_transposed_sum", t, g, wt)
        z = np.zeros((n, j), dtype=np.int32)
        if t.shape[1]:
            self._gemm(t, _panelize(wt), j, _row_popcounts(g), nk.OUT_Z, g=g, z=z)
        return z

    def conv_select_wrong(self, z, a, t, row_mask, out_h, out_w, tile, gamma):
        z = np.ascontiguousarray(z)
        a, t, row_mask = _words(a), _words(t), _words(row_mask)
        rows, ch = z.shape
        n = row_mask.shape[0]
        if (z.dtype != np.int32 or gamma <= 0 or ch % gamma or tile < 0 or rows != n * out_h * out_w
                or a.shape != (rows, _bits.n_words(ch)) or t.shape != a.shape or row_mask.shape != (n, 1)):
            raise ValueError(f"conv_select_wrong: z {z.dtype} {z.shape}, a {a.shape}, t {t.shape}, row_mask "
                             f"{row_mask.shape} do not fit {n} samples of {out_h}x{out_w} positions and groups of "
                             f"{gamma}")
        qy, qx = (out_h, out_w) if tile == 0 else (min(tile, out_h), min(tile, out_w))
        out = np.zeros_like(a)
        if z.size:
            _run(z.size, nk.conv_select_wrong, z, a, t, row_mask, int(out_h), int(out_w), int(qy), int(qx),
                 int(gamma), out)
        return out
