"""The backend interface: every primitive the BEP step needs, and nothing that knows what a layer is.

Arrays are of the backend's array module `xp` (NumPy or CuPy). Bit tensors are uint64 words packed along the
last axis (bep_gpu.bits); a row of n bits has n_words(n) words with zero padding. Every primitive is exact:
two backends given the same inputs return the same integers.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod

import numpy as np

from ..bits import n_words

# How batch_update / update_delta compute their sum over samples (the same integers either way):
# "popcount": over every sample, as a dense product; "sparse": each output row visits only the samples that
# selected its unit (at most one unit per group per sample, so about N / gamma of them). "auto" is the one
# measured faster on the backend's hardware; BEP_UPDATE in the environment picks the default of new backends.
UPDATE_IMPLS = ("auto", "popcount", "sparse")


def check_int_matmul_width(j: int) -> None:
    """int_matmul sums J products of |h| <= 32768 in int32: exact only while 32768 J < 2^31."""
    if j > 65535:
        raise ValueError(f"int_matmul: {j} inputs can overflow the int32 sum (at most 65535)")


def update_impl(impl: str | None) -> str:
    """A validated update implementation name (None: the BEP_UPDATE environment variable, else "auto")."""
    impl = os.environ.get("BEP_UPDATE", "auto") if impl is None else impl
    if impl not in UPDATE_IMPLS:
        raise ValueError(f"update impl must be one of {', '.join(UPDATE_IMPLS)}, got {impl!r}")
    return impl


def group_shape(what: str, score, gamma) -> tuple[int, int, int, int]:
    """(rows, K, n_words(K), gamma) of a group_select-family call; ValueError when gamma does not divide K."""
    if score.ndim != 2:
        raise ValueError(f"{what}: scores must be (N, K), got {score.shape}")
    n_rows, k = score.shape
    gamma = int(gamma)
    if gamma <= 0 or k % gamma:
        raise ValueError(f"{what}: group size {gamma} does not divide {k}")
    return n_rows, k, n_words(k), gamma


def check_select_wrong(z, a, t, row_mask) -> int:
    """select_wrong's operand shapes (z (N, K), a and t (N, n_words(K)), row_mask (M, 1) with M dividing N):
    returns M, or raises ValueError."""
    n_rows, nw = z.shape[0], n_words(z.shape[1])
    m = row_mask.shape[0] if row_mask.ndim == 2 else 0
    if (a.shape != (n_rows, nw) or t.shape != a.shape or row_mask.shape != (m, 1) or m == 0 and n_rows
            or m and n_rows % m):
        raise ValueError(f"select_wrong: a {a.shape}, t {t.shape}, row_mask {row_mask.shape} do not match "
                         f"z {z.shape}")
    return m


def check_update_operands(what: str, sel, t, x, k: int, j: int) -> int:
    """The update's operand shapes (sel and t (N, n_words(K)), x (N, n_words(J))): returns N, or raises
    ValueError."""
    n = sel.shape[0]
    if sel.shape != (n, n_words(k)) or t.shape != sel.shape or x.shape != (n, n_words(j)):
        raise ValueError(f"{what}: K={k}, J={j}, sel {sel.shape}, t {t.shape}, x {x.shape} do not match")
    return n


def delta_buffer(xp, out, k: int, j: int):
    """(delta, direct) for update_delta: out itself (direct) when it is a C-contiguous array of xp, else a new
    int32 (K, J) array that the caller copies into out afterwards. A wrong out is a ValueError."""
    if out is not None and (out.shape != (k, j) or out.dtype != np.int32):
        raise ValueError(f"update_delta: out must be int32 {(k, j)}, got {out.dtype} {out.shape}")
    direct = out is not None and isinstance(out, xp.ndarray) and out.flags.c_contiguous
    return (out if direct else xp.empty((k, j), dtype=xp.int32)), direct


def check_recurrence(x, w_in, k_in: int, w_rec, s0) -> tuple[int, int, int]:
    """sign_recurrence's operand shapes: returns (T, N, K), or raises ValueError."""
    k = w_rec.shape[0] if w_rec.ndim == 2 else -1
    if (x.ndim != 3 or x.shape[2] != n_words(k_in) or w_in.shape != (k, n_words(k_in))
            or w_rec.shape != (k, n_words(k)) or s0.shape != (x.shape[1], n_words(k))):
        raise ValueError(f"sign_recurrence: x {x.shape} ({k_in} input bits), w_in {w_in.shape}, w_rec {w_rec.shape}, "
                         f"s0 {s0.shape} do not match")
    return x.shape[0], x.shape[1], k


class Backend(ABC):
    """Exact integer/bit primitives of BEP (docs/ALGORITHM.md sections 1, 3-4, 8, 9)."""

    name: str = "?"
    xp = np  # array module of this backend

    @property
    def device(self) -> str:
        """Human-readable description of where the arrays live."""
        return "cpu"

    # --- moving data -------------------------------------------------------------------------------------
    def asarray(self, x, dtype=None):
        """A backend array holding x (copied to the device where there is one)."""
        return self.xp.asarray(x, dtype=dtype)

    def to_numpy(self, x) -> np.ndarray:
        """x as a host NumPy array (a copy from the device where there is one)."""
        return np.asarray(x)

    def synchronize(self) -> None:
        """Wait for queued device work (for timing); a no-op on the host."""

    def variant(self, **options) -> "Backend":
        """A backend on the same device with other implementation options (e.g. update="sparse"), which give
        the same integers; options not given keep this backend's."""
        return type(self)(**options)

    # --- primitives ----------------------------------------------------------------------------------------
    @abstractmethod
    def pack(self, x):
        """Sign + pack along the last axis: bit 1 where x >= 0. Any integer dtype (also bool: True -> 1)."""

    @abstractmethod
    def transpose_bits(self, words, n_rows: int, n_cols: int):
        """(n_rows, n_words(n_cols)) -> (n_cols, n_words(n_rows)): the same bit matrix packed along rows."""

    def pack_both(self, x):
        """(pack(x), pack(x.T)) for a 2-D x (K, J): its sign bits packed along J (K, n_words(J)) and along K
        (J, n_words(K)), a layer's W and the W^T of its target pass. This version packs, then transposes; backends
        may make both in one pass (the CUDA one does for int16, the hidden weights' dtype)."""
        if x.ndim != 2:
            raise ValueError(f"pack_both: need a 2-D array, got shape {x.shape}")
        w = self.pack(x)
        return w, self.transpose_bits(w, *x.shape)

    @abstractmethod
    def xnor_matmul(self, a, b, k: int):
        """int32 (M, N) = unpack(a, k) @ unpack(b, k).T for a (M, kw), b (N, kw): k - 2 popcount(a ^ b)."""

    def xnor_matmul_sign(self, a, b, k: int, gate: int | None = None, add=None):
        """(z, pack(z)) with z = xnor_matmul(a, b, k): a layer's pre-activations and its packed output signs; with
        gate = a threshold, (z, pack(z), gate_pack(z, gate)): also the gate bits the backward pass reads. With add
        (an int32 (M, N) array), z = add + the product, computed in place in add and returned as z (int32
        wrapping): e.g. a recurrence step's state product added to its input product (sign_recurrence).

        Backends may fuse these (the CUDA one does each in the product's epilogue); this default composes them.
        """
        z = self.xnor_matmul(a, b, k)
        if add is not None:
            add += z
            z = add
        if gate is None:
            return z, self.pack(z)
        return z, self.pack(z), self.gate_pack(z, gate)

    def sign_recurrence(self, x, w_in, k_in: int, w_rec, s0, gate: int | None = None):
        """The signs of a binary linear recurrence: z_t = xnor_matmul(x[t - 1], w_in, k_in) + xnor_matmul(s_{t-1},
        w_rec, K) and s_t = pack(z_t) for t = 1..T, from s_0 = s0 (int32 sums wrap like NumPy's).

        x: (T, N, n_words(k_in)) time-major input bits; w_in (K, n_words(k_in)); w_rec (K, n_words(K)); s0 (N,
        n_words(K)). Returns (z, s): z int32 (T, N, K), s (T + 1, N, n_words(K)) with s[0] = s0; with gate = a
        threshold, (z, s, gate bits of every z_t (T, N, n_words(K))). This version takes every step's input
        product in one call, then adds each step's state product in place (xnor_matmul_sign with add); backends
        may fuse differently (CUDA: both products of a step, its signs and gates in one kernel, z_t written once).
        """
        xp = self.xp
        steps, n, k = check_recurrence(x, w_in, k_in, w_rec, s0)
        z = self.xnor_matmul(x.reshape(steps * n, x.shape[2]), w_in, k_in).reshape(steps, n, k)
        s = xp.empty((steps + 1, n, n_words(k)), dtype=xp.uint64)
        s[0] = s0
        for t in range(steps):
            s[t + 1] = self.xnor_matmul_sign(s[t], w_rec, k, add=z[t])[1]
        if gate is None:
            return z, s
        return z, s, self.gate_pack(z.reshape(steps * n, k), gate).reshape(steps, n, n_words(k))

    @abstractmethod
    def gate_pack(self, z, threshold: int):
        """Bits of |z| <= threshold for an int32 (N, K) array, packed along K."""

    @abstractmethod
    def gated_transposed_product(self, t, g, wt):
        """Target bits of the layer below: bit j of row n is sign(sum_i g[n,i] * wt[j,i] * t[n,i]) >= 0.

        t, g: (N, kw) target and gate bits over the K units of a layer; wt: (J, kw), W^T packed along K.
        Returns (N, n_words(J)). Gate padding is 0, so padding never contributes; sign(0) = +1.
        """

    @abstractmethod
    def group_select(self, score, cand, gamma: int):
        """Per row and per contiguous group of gamma units, the candidate with the smallest score.

        score: int32 (N, K) (non-negative); cand: (N, n_words(K)) candidate bits. Ties go to the lowest index;
        a group without candidates selects nothing. Returns selection bits (N, n_words(K)).
        """

    def select_wrong(self, z, a, t, row_mask, gamma: int):
        """group_select(|z|, (a ^ t) & row_mask, gamma): the masks of section 4.4 straight from a layer's int32
        values z (N, K) (|z| wraps at int32 min like NumPy), its output bits a and target bits t (N, n_words(K))
        and the trigger's row words (M, 1), M dividing N: row r takes row_mask[r % M] (the stacked time steps of a
        recurrent step share their sample's word). Backends may fuse it (the CUDA one is one kernel)."""
        xp = self.xp
        n, m = a.shape[0], row_mask.shape[0]
        if m != n and (m == 0 or n % m):
            raise ValueError(f"select_wrong: {m} row words do not divide {n} rows")
        rows = row_mask if m == n else xp.tile(row_mask, (n // m, 1))
        return self.group_select(xp.abs(z), (a ^ t) & rows, gamma)

    def batch_update(self, h, sel, t, x, clip: int) -> None:
        """In place: h = clip(h + 2 * sum_n (sel[n] * t[n]) outer x[n], -clip, clip), summed in int32.

        h: int16 (K, J); sel, t: (N, n_words(K)) selection and target bits; x: (N, n_words(J)) input bits.
        This version is apply_delta(h, update_delta(...)); backends may fuse the two (CUDA: one kernel).
        """
        self.apply_delta(h, self.update_delta(sel, t, x, *h.shape), clip)

    def batch_update_reinforce(self, h, sel, t, x, clip: int, threshold: int, seed: int, stream: int, step,
                               layer: int, active=None) -> None:
        """batch_update(h, sel, t, x, clip), then reinforce(h, threshold, seed, stream, step, layer, clip, active):
        a matrix's update and its reinforcement, which backends may do in one pass over h (the CUDA one fires the
        reinforcement in the update kernel's store)."""
        self.batch_update(h, sel, t, x, clip)
        self.reinforce(h, threshold, seed, stream, step, layer, clip, active=active)

    def update_delta(self, sel, t, x, k: int, j: int, out=None):
        """int32 (K, J) = sum_n (sel[n] * t[n]) outer x[n]: batch_update's sum, NOT doubled and NOT clipped.

        Shapes as in batch_update (K, J are the true widths; the words carry padding). |entry| <= N, so the sum
        over disjoint row sets (data-parallel ranks) adds up exactly in int32 to the sum over their union.
        out: an int32 (K, J) array (e.g. a view of the step's all-reduce buffer) written and returned; else a new
        one. N = 0 gives zeros. This generic version (exact, any xp) unpacks bits; backends may do better.
        """
        d = self._unpack01(sel, k)
        d *= 2 * self._unpack01(t, k) - 1
        delta = d.T @ (2 * self._unpack01(x, j) - 1)
        if out is None:
            return delta
        out[...] = delta
        return out

    def apply_delta(self, h, delta, clip: int) -> None:
        """In place: h = clip(h + 2 * delta, -clip, clip), computed in int32 and stored back as int16.

        apply_delta(h, update_delta(sel, t, x, K, J), clip) equals batch_update(h, sel, t, x, clip).
        """
        xp = self.xp
        new = 2 * xp.asarray(delta, dtype=xp.int32)
        new += h
        xp.clip(new, -clip, clip, out=new)
        h[...] = new

    def _unpack01(self, words, n: int):
        """int32 0/1 (N, n) of bits (N, n_words(n)), with the backend's array module."""
        xp = self.xp
        col = xp.arange(n)
        shift = (col % 64).astype(xp.uint64)
        return ((xp.asarray(words, dtype=xp.uint64)[:, col // 64] >> shift) & xp.uint64(1)).astype(xp.int32)

    def trigger(self, logits, labels, margin: int):
        """Trigger of docs/ALGORITHM.md section 4.2 on int32 logits (N, C) and labels (N,): the device int64 counts
        [misclassified, triggered] (prediction = argmax, lowest index on ties; trigger = y_c - max_{c' != c} y_c'
        < margin, in int64) and per-row words (N, 1), all ones where the row triggers, else zero (AND-ed into the
        wrong-unit candidates, so a sample that does not trigger selects no unit). This version is array code;
        the CUDA backend does it in one kernel (kernels/trigger.cu)."""
        xp = self.xp
        rows = xp.arange(logits.shape[0])
        pred = xp.argmax(logits, axis=1)
        own = logits[rows, labels]
        others = logits.copy()
        others[rows, labels] = xp.iinfo(xp.int32).min
        trig = (own.astype(xp.int64) - others.max(axis=1)) < margin
        counts = xp.stack([(pred != labels).sum(), trig.sum()]).astype(xp.int64)
        return counts, (xp.uint64(0) - trig.astype(xp.uint64))[:, None]

    @abstractmethod
    def reinforce(self, h, threshold: int, seed: int, stream: int, step: int, layer: int, clip: int,
                  active=None) -> None:
        """In place: entry f of h (flat index) with u(f) < threshold becomes clip(h + 2 sign(h)) (0 -> +2).

        u is the counter RNG of docs/ALGORITHM.md section 8 keyed (seed, stream, step, layer); threshold is an
        integer in [0, 2^32] (floor(p * 2^32)). active: optional one-element integer backend array; when it
        holds 0 nothing changes (read on the device, so the caller needs no host synchronisation). step: an
        int, or a one-element int64 backend array read on the device (a replayed CUDA graph advances it there).
        """

    @abstractmethod
    def counter_uniform(self, seed: int, stream: int, step: int, layer: int, n: int):
        """uint32 u(0..n-1) of the counter RNG (section 8)."""

    @abstractmethod
    def int_matmul(self, x, h):
        """int32 (N, K) = unpack(x, J) @ h.T for +-1 bits x (N, n_words(J)) and int16 h (K, J) (exact)."""

    # --- convolution (NHWC bit maps packed along C; BEP-Conv, docs/CONV.md) ---------------------------------
    # These generic versions are array code on xp, the executable spec of kernels/conv_*.cu.
    def im2col(self, x, c: int, kh: int, kw: int, stride: int, pad: int):
        """Packed patches: x (N, H, W, n_words(c)) -> (N, H', W', n_words(kh * kw * c)), H' = (H + 2 pad - kh) //
        stride + 1 (W' alike). Bit (i * kw + j) * c + ch of patch (n, y, x) is bit ch of x[n, y*stride + i - pad,
        x*stride + j - pad]; positions outside the map read bit 1 (the padding value +1)."""
        xp = self.xp
        n, h, w, ho, wo = _conv_shape("im2col", x, c, kh, kw, stride, pad)
        a = xp.ones((n, h + 2 * pad, w + 2 * pad, c), dtype=xp.bool_)
        a[:, pad:pad + h, pad:pad + w] = self._unpack01(x.reshape(-1, x.shape[-1]), c).reshape(n, h, w, c) != 0
        cols = xp.empty((n, ho, wo, kh, kw, c), dtype=xp.bool_)
        for i in range(kh):
            for j in range(kw):
                cols[:, :, :, i, j] = a[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
        return self.pack(cols.reshape(n, ho, wo, kh * kw * c))

    def col2im_sign(self, s, h: int, w: int, c: int, kh: int, kw: int, stride: int, pad: int):
        """The adjoint of im2col, then one sign: s int32 (N, H', W', kh * kw * c) (one integer per patch bit) ->
        bits (N, H, W, n_words(c)), bit ch of (n, Y, X) = [sum of s[n, y, x, (i * kw + j) * c + ch] over every
        (y, x, i, j) with y*stride + i - pad = Y, x*stride + j - pad = X >= 0] (sign(0) = +1; patch entries that
        read padding are dropped). Summed in int32 (exact while kh * kw * max|s| < 2^31)."""
        xp = self.xp
        n, ho, wo = s.shape[0], (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
        if min(h, w, c, kh, kw, stride) <= 0 or pad < 0 or ho <= 0 or wo <= 0 or s.shape != (n, ho, wo, kh * kw * c):
            raise ValueError(f"col2im_sign: sums {s.shape} do not fit a {h}x{w}x{c} map, kernel {kh}x{kw}, "
                             f"stride {stride}, padding {pad}")
        acc = xp.zeros((n, h + 2 * pad, w + 2 * pad, c), dtype=xp.int32)
        s = s.reshape(n, ho, wo, kh, kw, c)
        for i in range(kh):
            for j in range(kw):
                acc[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride] += s[:, :, :, i, j]
        return self.pack(acc[:, pad:pad + h, pad:pad + w] >= 0)

    def gated_transposed_sum(self, t, g, wt):
        """The integer sums under gated_transposed_product's sign: int32 (N, J), entry (n, j) =
        sum_i g[n,i] * wt[j,i] * t[n,i] (+-1 values of t and wt, 0/1 gates; gate padding is 0)."""
        xp = self.xp
        n = t.shape[-1] * 64  # gate padding is 0, so full words are exact
        gt = self._unpack01(g, n) * (2 * self._unpack01(t, n) - 1)
        return (gt @ (2 * self._unpack01(wt, n) - 1).T).astype(xp.int32)

    def conv_select_wrong(self, z, a, t, row_mask, out_h: int, out_w: int, tile: int, gamma: int):
        """The masks of a conv layer: per sample, tile of tile x tile output positions (grid anchored at (0, 0),
        edge tiles smaller; tile = 0: the whole map) and run of gamma consecutive channels, the wrong unit
        ((a ^ t) & row_mask[n]) with the smallest |z|; ties go to the lowest channel, then y, then x.

        z: int32 (N * out_h * out_w, C) in (n, y, x) row order; a, t: (N * out_h * out_w, n_words(C)) bits;
        row_mask: (N, 1) trigger words of the samples. Returns selection bits shaped like a."""
        xp = self.xp
        rows, ch = z.shape
        hw = out_h * out_w
        n = row_mask.shape[0]
        if (gamma <= 0 or ch % gamma or tile < 0 or rows != n * hw or a.shape != (rows, n_words(ch))
                or t.shape != a.shape):
            raise ValueError(f"conv_select_wrong: z {z.shape}, a {a.shape}, t {t.shape}, row_mask {row_mask.shape} "
                             f"do not fit {n} samples of {out_h}x{out_w} positions and groups of {gamma}")
        qy, qx = (out_h, out_w) if tile == 0 else (min(tile, out_h), min(tile, out_w))
        ty, tx = -(-out_h // qy), -(-out_w // qx)
        wrong = (a ^ t) & xp.repeat(row_mask, hw, axis=0)
        cand = xp.zeros((n, ty * qy, tx * qx, ch), dtype=xp.bool_)
        cand[:, :out_h, :out_w] = (self._unpack01(wrong, ch) != 0).reshape(n, out_h, out_w, ch)
        score = xp.zeros((n, ty * qy, tx * qx, ch), dtype=xp.int64)
        score[:, :out_h, :out_w] = xp.abs(z.astype(xp.int64)).reshape(n, out_h, out_w, ch)
        order = (n, ty, qy, tx, qx, ch // gamma, gamma)

        def grouped(v):  # (n, ty, tx, group, gamma * qy * qx): channel, then y, then x within a group
            return v.reshape(order).transpose(0, 1, 3, 5, 6, 2, 4).reshape(n, ty, tx, ch // gamma, gamma * qy * qx)

        c = grouped(cand)
        s = xp.where(c, grouped(score), xp.iinfo(xp.int64).max)
        pick = (xp.arange(s.shape[-1]) == xp.argmin(s, axis=-1)[..., None]) & c.any(axis=-1)[..., None]
        sel = pick.reshape(n, ty, tx, ch // gamma, gamma, qy, qx).transpose(0, 1, 5, 2, 6, 3, 4)
        return self.pack(sel.reshape(n, ty * qy, tx * qx, ch)[:, :out_h, :out_w].reshape(rows, ch))


def _conv_shape(what, x, c, kh, kw, stride, pad):
    """(N, H, W, H', W') of a packed map x for a kh x kw window; ValueError if they do not fit."""
    if x.ndim != 4 or x.shape[-1] != n_words(c) or min(c, kh, kw, stride) <= 0 or pad < 0:
        raise ValueError(f"{what}: need a map (N, H, W, {n_words(c)}) for {c} channels and a positive kernel and "
                         f"stride, got {x.shape}, kernel {kh}x{kw}, stride {stride}, padding {pad}")
    n, h, w = x.shape[:3]
    ho, wo = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    if ho <= 0 or wo <= 0:
        raise ValueError(f"{what}: a {kh}x{kw} window does not fit a {h}x{w} map with padding {pad}")
    return n, h, w, ho, wo
