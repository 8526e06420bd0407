"""Compiled CPU kernels of the numba backend (numba_backend.py holds the checks, allocation and threads).

Each kernel names its NumPy mirror (numpy_backend.py, the specification) and the CUDA kernel it matches.
Packed operands are uint64 words, 64 values a word, little-endian bits (bep_gpu.bits). Every kernel is compiled
once and cached on disk (cache=True); `parallel=True` kernels split their outer loop over numba's threads.
uint64 values are kept uint64 throughout: numba turns uint64 mixed with int64 into float64.
"""
from __future__ import annotations

import numba as nb
import numpy as np
from numba import prange

from . import numba_simd as simd
from .numba_simd import TILE_M, TILE_N, masked_xor_popc_tile, popcount, trailing_zeros, xor_popc_tile

_JIT = dict(cache=True, nogil=True)
U64 = np.uint64
ONE = np.uint64(1)
INT32_MIN = -(2**31)
PANELS_PER_TASK = 16  # panels (of TILE_N columns) one parallel task sweeps with its A rows in L1

# Epilogue outputs of popc_gemm (bit flags of `mode`): OUT_Z int32 values into z; ADD_Z added to z (int32,
# wrapping: the recurrent step's state product); OUT_SIGN sign bits (value >= 0) into the bytes of signs; OUT_GATE
# gate bits (|value| <= threshold, |int32 min| wrapping as NumPy's abs) into gates; OUT_H h = clip(h + 2 value).
OUT_Z, ADD_Z, OUT_SIGN, OUT_GATE, OUT_H = simd.OUT_Z, simd.ADD_Z, simd.OUT_SIGN, simd.OUT_GATE, simd.OUT_H


@nb.njit(**_JIT)
def _wrapping_abs32(v):
    """|v| of an int32 value as NumPy computes it on int32 (|int32 min| wraps to int32 min)."""
    if v == INT32_MIN:
        return v
    return -v if v < 0 else v


# --- layout ------------------------------------------------------------------------------------------------------
@nb.njit(parallel=True, **_JIT)
def panelize(b):
    """(N, kw) words -> (ceil(N / TILE_N), kw, TILE_N): row j of b becomes lane j % TILE_N of panel j // TILE_N,
    so a tile loads TILE_N columns' word w with one vector load. Missing columns are zero."""
    n, kw = b.shape
    npan = (n + TILE_N - 1) // TILE_N
    out = np.zeros((npan, kw, TILE_N), dtype=np.uint64)
    for p in prange(npan):
        for c in range(min(TILE_N, n - p * TILE_N)):
            for w in range(kw):
                out[p, w, c] = b[p * TILE_N + c, w]
    return out


@nb.njit(**_JIT)
def _transpose64(x):
    """In place: the 64 x 64 bit block x (x[i] bit j = element (i, j)) becomes its transpose (block swaps of 32,
    16, ..., 1 bits)."""
    j = 32
    m = U64(0x00000000FFFFFFFF)
    while j:
        uj = U64(j)
        for k in range(64):
            if k & j == 0:
                t = ((x[k] >> uj) ^ x[k + j]) & m
                x[k] ^= t << uj
                x[k + j] ^= t
        j >>= 1
        m ^= m << U64(j)


@nb.njit(parallel=True, **_JIT)
def transpose_bits(words, n_rows, n_cols, panels):
    """(n_rows, n_words(n_cols)) -> the same bits packed along rows, flat: (n_cols, n_words(n_rows)) words, or with
    panels the panelize layout of that matrix (zero lanes past n_cols). NumPy mirror: bits.transpose_bits; CUDA:
    kernels/transpose_bits.cu."""
    nwr = (n_rows + 63) // 64
    nwc = words.shape[1]
    if panels:
        out = np.zeros(((n_cols + TILE_N - 1) // TILE_N) * nwr * TILE_N, dtype=np.uint64)
    else:
        out = np.zeros(n_cols * nwr, dtype=np.uint64)
    for cw in prange(nwc):
        blk = np.empty(64, dtype=np.uint64)
        for rb in range(nwr):
            for i in range(64):
                r = rb * 64 + i
                blk[i] = words[r, cw] if r < n_rows else U64(0)
            _transpose64(blk)
            for i in range(min(64, n_cols - cw * 64)):
                col = cw * 64 + i
                if panels:
                    out[((col // TILE_N) * nwr + rb) * TILE_N + col % TILE_N] = blk[i]
                else:
                    out[col * nwr + rb] = blk[i]
    return out


@nb.njit(**_JIT)
def _pack_row(x, r, out, nonzero):
    """Row r of x into out[r]: bit = x >= 0 (or x != 0); branch-free whole words so that LLVM vectorizes them."""
    n = x.shape[1]
    full = n // 64
    for w in range(full):
        v = U64(0)
        for q in range(64):
            c = x[r, 64 * w + q] != 0 if nonzero else x[r, 64 * w + q] >= 0
            v |= U64(c) << U64(q)
        out[r, w] = v
    if n % 64:
        v = U64(0)
        for q in range(n - 64 * full):
            c = x[r, 64 * full + q] != 0 if nonzero else x[r, 64 * full + q] >= 0
            v |= U64(c) << U64(q)
        out[r, full] = v


@nb.njit(parallel=True, **_JIT)
def pack_ge0(x, out):
    """out (R, n_words(n)) = bits of x >= 0 for x (R, n) of any real dtype (NaN -> 0). NumPy mirror: bits.pack_bits;
    CUDA: kernels/pack.cu (pack_i*, pack_f*)."""
    for r in prange(x.shape[0]):
        _pack_row(x, r, out, False)


@nb.njit(parallel=True, **_JIT)
def pack_nonzero(x, out):
    """As pack_ge0 with bit = x != 0 (bool arrays viewed as uint8). CUDA: kernels/pack.cu (pack_b1)."""
    for r in prange(x.shape[0]):
        _pack_row(x, r, out, True)


@nb.njit(parallel=True, **_JIT)
def gate_pack(z, threshold, out):
    """out = bits of |z| <= threshold (int64 compare, NumPy's wrapping |int32 min|) for int32 z (R, n).
    NumPy mirror: NumpyBackend.gate_pack; CUDA: kernels/pack.cu (gate_pack_i32)."""
    rows, n = z.shape
    for r in prange(rows):
        for w in range(out.shape[1]):
            v = U64(0)
            for q in range(min(64, n - 64 * w)):
                if _wrapping_abs32(np.int64(z[r, 64 * w + q])) <= threshold:
                    v |= ONE << U64(q)
            out[r, w] = v


# --- the popcount GEMM family --------------------------------------------------------------------------------------
@nb.njit(parallel=True, **_JIT)
def popc_gemm(a, g, masked, bp, n, base, mode, z, signs, gates, threshold, h, clip):
    """value[i, j] = base[i] - 2 * sum_w popcount((a[i, w] ^ B[j, w]) & g[i, w]) (without `& g` unless masked), for
    B given as panels bp (panelize) of n columns, written by the epilogues of `mode` (OUT_* flags):
      z (M, n) int32 values, or ADD_Z: added to z in place (int32 wrapping; sign and gate read the sum);
      signs / gates: uint8 views (M, 8 * n_words(n)) of zeroed word arrays, byte p = lanes of panel p;
      h (M, n) int16: h = clip(h + 2 * value, -clip, clip), the update's epilogue.
    a and g have a multiple of TILE_M rows (the caller pads); only rows < base.shape[0] are written.

    Mirrors (NumPy / CUDA): with base = k, xnor_matmul (+_sign/_gate/_add; kernels/xnor_matmul.cu); masked with
    base = popcount(g row), gated_transposed_product (kernels/gated_product.cu) and, over batch-packed bits,
    update_delta / batch_update (kernels/batch_update.cu).
    """
    m = base.shape[0]
    kw = a.shape[1]
    npan = bp.shape[0]
    n_tasks_j = (npan + PANELS_PER_TASK - 1) // PANELS_PER_TASK
    n_blocks = (m + TILE_M - 1) // TILE_M
    if masked:  # the (mask, epilogue) pairs with a whole-tile vector kernel (numba_simd)
        fast = mode == OUT_SIGN or mode == OUT_Z or mode == OUT_H
    else:
        fast = mode == OUT_Z or mode == OUT_Z | OUT_SIGN or mode == OUT_Z | OUT_SIGN | OUT_GATE or mode == ADD_Z | OUT_SIGN
    for task in prange(n_blocks * n_tasks_j):
        rb = task // n_tasks_j
        i0 = rb * TILE_M
        p0 = (task - rb * n_tasks_j) * PANELS_PER_TASK
        acc = np.empty((TILE_M, TILE_N), dtype=np.int64)
        a_addr = a[i0:].ctypes.data
        g_addr = g[i0:].ctypes.data if masked else a_addr
        full_rows = i0 + TILE_M <= m
        for p in range(p0, min(npan, p0 + PANELS_PER_TASK)):
            if full_rows and fast and (p + 1) * TILE_N <= n:  # a whole tile: the vector epilogue
                j0 = p * TILE_N
                args = (a_addr, kw, g_addr, bp[p].ctypes.data, kw, base[i0:].ctypes.data,
                        z[i0:, j0:].ctypes.data if mode & (OUT_Z | ADD_Z) else 0, z.shape[1],
                        signs[i0:, p:].ctypes.data if mode & OUT_SIGN else 0,
                        gates[i0:, p:].ctypes.data if mode & OUT_GATE else 0, signs.shape[1], threshold,
                        h[i0:, j0:].ctypes.data if mode & OUT_H else 0, h.shape[1], clip)
                if masked:
                    if mode == OUT_SIGN:
                        simd.masked_tile_sign(*args)
                    elif mode == OUT_Z:
                        simd.masked_tile_z(*args)
                    else:
                        simd.masked_tile_h(*args)
                elif mode == OUT_Z:
                    simd.tile_z(*args)
                elif mode == OUT_Z | OUT_SIGN:
                    simd.tile_z_sign(*args)
                elif mode == OUT_Z | OUT_SIGN | OUT_GATE:
                    simd.tile_z_sign_gate(*args)
                else:
                    simd.tile_add_sign(*args)
                continue
            if masked:
                masked_xor_popc_tile(a_addr, kw, g_addr, bp[p].ctypes.data, kw, acc.ctypes.data)
            else:
                xor_popc_tile(a_addr, kw, g_addr, bp[p].ctypes.data, kw, acc.ctypes.data)
            cols = min(TILE_N, n - p * TILE_N)
            for r in range(min(TILE_M, m - i0)):
                i = i0 + r
                sign_byte = 0
                gate_byte = 0
                for c in range(cols):
                    j = p * TILE_N + c
                    v = base[i] - 2 * acc[r, c]
                    if mode & ADD_Z:
                        v = np.int64(np.int32(z[i, j] + v))  # int32 wrapping, as the in-place add
                    if mode & (OUT_Z | ADD_Z):
                        z[i, j] = v
                    if mode & OUT_SIGN and v >= 0:
                        sign_byte |= 1 << c
                    if mode & OUT_GATE and _wrapping_abs32(v) <= threshold:
                        gate_byte |= 1 << c
                    if mode & OUT_H:
                        hv = h[i, j] + 2 * v
                        h[i, j] = max(-clip, min(clip, hv))
                if mode & OUT_SIGN:
                    signs[i, p] = sign_byte
                if mode & OUT_GATE:
                    gates[i, p] = gate_byte


@nb.njit(parallel=True, **_JIT)
def row_popcounts(words):
    """int64 popcount of every row of words (the base of the masked products: popc(g) once per row)."""
    out = np.empty(words.shape[0], dtype=np.int64)
    for r in prange(words.shape[0]):
        s = 0
        for w in range(words.shape[1]):
            s += popcount(words[r, w])
        out[r] = s
    return out


@nb.njit(parallel=True, **_JIT)
def sparse_update(sel_t, t_t, x, j, delta, h, clip, fused):
    """The update's sum row by row over the samples that selected each unit: sel_t, t_t (K, n_words(N))
    selection and target bits packed along the batch, x (N, n_words(J)) input bits. Writes delta (K, J) int32, or
    with fused h = clip(h + 2 * delta). NumPy mirror: numpy_backend._sparse_delta; CUDA: kernels/batch_update.cu
    (batch_update_sparse, update_delta_sparse)."""
    k_units, nwn = sel_t.shape
    for k in prange(k_units):
        ones = np.zeros(j, dtype=np.int32)  # sum over selecting samples of t' * bit (t' = +-1 target)
        t_sum = 0
        for w in range(nwn):
            s = sel_t[k, w]
            tw = t_t[k, w]
            while s:
                b = trailing_zeros(s)
                s &= s - ONE
                row = 64 * w + b
                neg = np.int32(((tw >> U64(b)) & ONE) ^ ONE) * np.int32(-1)  # 0 for target +1, -1 for -1
                t_sum += 2 * neg + 1
                for jw in range(j // 64):  # (bit ^ neg) - neg = +-bit, branch-free so that LLVM vectorizes it
                    xw = x[row, jw]
                    for q in range(64):
                        ones[64 * jw + q] += (np.int32((xw >> U64(q)) & ONE) ^ neg) - neg
                if j % 64:
                    xw = x[row, j // 64]
                    for q in range(j % 64):
                        ones[j - j % 64 + q] += (np.int32((xw >> U64(q)) & ONE) ^ neg) - neg
        for c in range(j):  # t' * x' = t' * (2 bit - 1) summed: 2 ones - t_sum
            v = 2 * ones[c] - t_sum
            if fused:
                h[k, c] = max(-clip, min(clip, h[k, c] + 2 * v))
            else:
                delta[k, c] = v


@nb.njit(parallel=True, **_JIT)
def apply_delta(h, delta, clip):
    """h = clip(h + 2 * delta) elementwise (flat views). Mirror: Backend.apply_delta."""
    for i in prange(h.shape[0]):
        h[i] = max(-clip, min(clip, h[i] + 2 * np.int64(delta[i])))


# --- masks and trigger ---------------------------------------------------------------------------------------------
@nb.njit(parallel=True, **_JIT)
def select_groups(score, cand, a, t, row_mask, fused, gamma, out):
    """Per row and contiguous group of gamma units, the candidate with the smallest score (lowest index on ties),
    OR-ed into the zeroed words out. Candidates and scores: cand and score; with fused, (a ^ t) & row_mask[r % M]
    and the wrapping |score| (select_wrong). Only candidate bits are visited (find-first-set). NumPy mirror:
    NumpyBackend.group_select / Backend.select_wrong; CUDA: kernels/group_select.cu (group_select, select_wrong)."""
    rows, k = score.shape
    m = row_mask.shape[0]
    nw = out.shape[1]
    for r in prange(rows):
        words = np.empty(nw, dtype=np.uint64)
        for w in range(nw):
            words[w] = ((a[r, w] ^ t[r, w]) & row_mask[r % m, 0]) if fused else cand[r, w]
        for g0 in range(0, k, gamma):
            g1 = g0 + gamma
            best = -1
            best_v = np.int64(0)
            for w in range(g0 >> 6, ((g1 - 1) >> 6) + 1):
                bitset = words[w]
                lo = g0 - 64 * w
                if lo > 0:
                    bitset &= ~U64(0) << U64(lo)
                hi = g1 - 64 * w
                if hi < 64:
                    bitset &= (ONE << U64(hi)) - ONE
                while bitset:
                    u = 64 * w + trailing_zeros(bitset)
                    bitset &= bitset - ONE
                    v = _wrapping_abs32(np.int64(score[r, u])) if fused else np.int64(score[r, u])
                    if best < 0 or v < best_v:
                        best = u
                        best_v = v
            if best >= 0:
                out[r, best >> 6] |= ONE << U64(best & 63)


@nb.njit(**_JIT)
def trigger(logits, labels, margin, row):
    """BEP trigger per row: counts [misclassified, triggered] and row words (all ones where the row triggers).
    NumPy mirror: Backend.trigger; CUDA: kernels/trigger.cu."""
    n, c = logits.shape
    wrong = 0
    fired = 0
    for i in range(n):
        lab = labels[i]
        pred = 0
        for q in range(1, c):
            if logits[i, q] > logits[i, pred]:
                pred = q
        other = np.int64(INT32_MIN)
        for q in range(c):
            if q != lab and logits[i, q] > other:
                other = np.int64(logits[i, q])
        wrong += pred != lab
        hit = np.int64(logits[i, lab]) - other < margin
        fired += hit
        row[i, 0] = ~U64(0) if hit else U64(0)
    return wrong, fired


# --- counter RNG ---------------------------------------------------------------------------------------------------
@nb.njit(**_JIT)
def _mix(x):
    """SplitMix64 finaliser (bep_gpu.rng.mix_int), uint64 wrapping."""
    z = x + U64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> U64(30))) * U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> U64(27))) * U64(0x94D049BB133111EB)
    return z ^ (z >> U64(31))


_RNG_CHUNK = 1 << 14  # flat indices per parallel task


@nb.njit(parallel=True, **_JIT)
def reinforce(h, key, bound, always, clip):
    """In place on the flat h: entries f with mix(key ^ f) < bound (u(f) < threshold, bound = threshold << 32; or
    always) become clip(h + 2 sign(h)), 0 -> +2. NumPy mirror: NumpyBackend.reinforce; CUDA: kernels/reinforce.cu.
    A chunk's draws are mixed into a buffer first (a loop LLVM vectorizes), then scanned for the few that fire."""
    n = h.shape[0]
    for c in prange((n + _RNG_CHUNK - 1) // _RNG_CHUNK):
        f0 = c * _RNG_CHUNK
        f1 = min(n, f0 + _RNG_CHUNK)
        draws = np.empty(f1 - f0, dtype=np.uint64)
        for i in range(f1 - f0):
            draws[i] = _mix(key ^ U64(f0 + i))
        for i in range(f1 - f0):
            if always or draws[i] < bound:
                v = np.int64(h[f0 + i])
                v += 2 if v >= 0 else -2
                h[f0 + i] = max(-clip, min(clip, v))


@nb.njit(parallel=True, **_JIT)
def counter_uniform(key, out):
    """out[i] = mix(key ^ i) >> 32 (uint32). NumPy mirror: rng.counter_uniform; CUDA: kernels/reinforce.cu."""
    n = out.shape[0]
    for c in prange((n + _RNG_CHUNK - 1) // _RNG_CHUNK):
        for f in range(c * _RNG_CHUNK, min(n, (c + 1) * _RNG_CHUNK)):
            out[f] = np.uint32(_mix(key ^ U64(f)) >> U64(32))


# --- integer product -----------------------------------------------------------------------------------------------
@nb.njit(parallel=True, **_JIT)
def int_matmul(x, h, out):
    """out (N, K) int32 = unpack(x, J) @ h.T for +-1 bits x (N, n_words(J)) and int16 h (K, J).
    NumPy mirror: NumpyBackend.int_matmul; CUDA: kernels/int_matmul.cu."""
    n = x.shape[0]
    k, j = h.shape
    for i in prange(n):
        s = np.empty(j, dtype=np.int32)
        for c in range(j):
            s[c] = np.int32(2 * np.int64((x[i, c >> 6] >> U64(c & 63)) & ONE) - 1)
        for u in range(k):
            acc = np.int32(0)
            for c in range(j):
                acc += s[c] * np.int32(h[u, c])
            out[i, u] = acc


# --- convolution (BEP-Conv: NHWC bit maps packed along C) ---------------------------------------------------------
@nb.njit(parallel=True, **_JIT)
def im2col(x, c, kh, kw, stride, pad, out):
    """out (N, H', W', n_words(kh kw c)) zeroed: patch bit (i kw + j) c + ch of (n, y, x) = bit ch of
    x[n, y stride + i - pad, x stride + j - pad], 1 outside the map. NumPy mirror: Backend.im2col;
    CUDA: kernels/conv_im2col.cu."""
    n, h, w = x.shape[0], x.shape[1], x.shape[2]
    ho, wo = out.shape[1], out.shape[2]
    cw = x.shape[3]
    for task in prange(n * ho):
        b = task // ho
        y = task - b * ho
        for xo in range(wo):
            for i in range(kh):
                yy = y * stride + i - pad
                for j in range(kw):
                    xx = xo * stride + j - pad
                    inside = 0 <= yy < h and 0 <= xx < w
                    pos = (i * kw + j) * c
                    for q in range(cw):
                        bits = c - 64 * q if c - 64 * q < 64 else 64
                        word = x[b, yy, xx, q] if inside else ~U64(0)
                        if bits < 64:
                            word &= (ONE << U64(bits)) - ONE
                        at = pos + 64 * q
                        sh = at & 63
                        out[b, y, xo, at >> 6] |= word << U64(sh)
                        if sh and sh + bits > 64:
                            out[b, y, xo, (at >> 6) + 1] |= word >> U64(64 - sh)


@nb.njit(parallel=True, **_JIT)
def col2im_sign(s, h, w, c, kh, kw, stride, pad, out):
    """out (N, H, W, n_words(c)) zeroed: bit ch of (n, Y, X) = sign of the int32 sum of s over every patch entry
    reading (Y, X, ch) (padding entries dropped; sign(0) = +1). NumPy mirror: Backend.col2im_sign;
    CUDA: kernels/conv_targets.cu."""
    n, ho, wo = s.shape[0], s.shape[1], s.shape[2]
    for b in prange(n):
        acc = np.zeros((h, w, c), dtype=np.int32)
        for y in range(ho):
            for xo in range(wo):
                for i in range(kh):
                    yy = y * stride + i - pad
                    if yy < 0 or yy >= h:
                        continue
                    for j in range(kw):
                        xx = xo * stride + j - pad
                        if xx < 0 or xx >= w:
                            continue
                        base = (i * kw + j) * c
                        for ch in range(c):
                            acc[yy, xx, ch] += s[b, y, xo, base + ch]
        for yy in range(h):
            for xx in range(w):
                for ch in range(c):
                    if acc[yy, xx, ch] >= 0:
                        out[b, yy, xx, ch >> 6] |= ONE << U64(ch & 63)


@nb.njit(parallel=True, **_JIT)
def conv_select_wrong(z, a, t, row_mask, out_h, out_w, qy, qx, gamma, out):
    """Per sample, tile of qy x qx output positions and run of gamma channels, the wrong unit ((a ^ t) & the
    sample's trigger word) with the smallest |z| (int64, not wrapping); ties: lowest channel, then y, then x.
    OR-ed into the zeroed out. NumPy mirror: Backend.conv_select_wrong; CUDA: kernels/conv_select.cu."""
    n = row_mask.shape[0]
    ch = z.shape[1]
    hw = out_h * out_w
    for b in prange(n):
        rm = row_mask[b, 0]
        for y0 in range(0, out_h, qy):
            for x0 in range(0, out_w, qx):
                for g0 in range(0, ch, gamma):
                    best = -1
                    best_v = np.int64(0)
                    for cc in range(g0, g0 + gamma):
                        w = cc >> 6
                        bit = U64(cc & 63)
                        for y in range(y0, min(out_h, y0 + qy)):
                            for xo in range(x0, min(out_w, x0 + qx)):
                                r = b * hw + y * out_w + xo
                                if (((a[r, w] ^ t[r, w]) & rm) >> bit) & ONE:
                                    v = np.int64(z[r, cc])
                                    v = -v if v < 0 else v
                                    if best < 0 or v < best_v:
                                        best = r * ch + cc
                                        best_v = v
                    if best >= 0:
                        r = best // ch
                        cc = best - r * ch
                        out[r, cc >> 6] |= ONE << U64(cc & 63)
