"""An independent dense implementation of BEP-Conv (docs/CONV.md): +-1 integer arrays, plain loops and einsum.

It imports nothing of bep_gpu's algorithm (only the counter RNG, which the algorithm fixes, and the "flips" rank of
the dense peer, itself written from the spec alone), so a bit-exact match with the packed implementation is a real
check of both. Slow; meant for small shapes.
"""
import numpy as np

from bep_gpu.peers.dense_bep import flips
from bep_gpu.rng import counter_uniform


def sgn(v):
    return np.where(np.asarray(v) >= 0, 1, -1).astype(np.int64)


def out_size(n, k, s, p):
    return (n + 2 * p - k) // s + 1


def padded(a, p):
    """(N, H, W, C) +-1 with p rows/columns of +1 on every side (the padding value)."""
    return np.pad(a, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=1)


def conv_z(a, w, s, p):
    """z[n,y,x,o] = sum_{i,j,c} w[o,i,j,c] a[n, y*s+i-p, x*s+j-p, c], padding read as +1."""
    n, h, wd, _ = a.shape
    o, k = w.shape[0], w.shape[1]
    ho, wo = out_size(h, k, s, p), out_size(wd, k, s, p)
    ap = padded(a.astype(np.int64), p)
    z = np.zeros((n, ho, wo, o), dtype=np.int64)
    for y in range(ho):
        for x in range(wo):
            z[:, y, x] = np.einsum("nijc,oijc->no", ap[:, y * s:y * s + k, x * s:x * s + k], w)
    return z


def input_targets(w, gt, h, wd, s, p):
    """sign of the sum, over every output (y, x, o) that reads input position (Y, X), of w[o,i,j,c] * gt[n,y,x,o];
    padding positions get no target."""
    n, ho, wo, _ = gt.shape
    k, c = w.shape[1], w.shape[3]
    acc = np.zeros((n, h, wd, c), dtype=np.int64)
    for y in range(ho):
        for x in range(wo):
            for i in range(k):
                for j in range(k):
                    yy, xx = y * s + i - p, x * s + j - p
                    if 0 <= yy < h and 0 <= xx < wd:
                        acc[:, yy, xx] += gt[:, y, x] @ w[:, i, j, :]
    return sgn(acc)


def tile_mask(wrong, absz, q, gamma):
    """Per sample, q x q tile (q = 0: the whole map) and gamma channels: the wrong unit of smallest |z|, ties to the
    lowest channel, then y, then x (units visited in that order, a strictly smaller score replaces)."""
    n, ho, wo, ch = wrong.shape
    qy, qx = (ho, wo) if q == 0 else (q, q)
    m = np.zeros(wrong.shape, dtype=np.int64)
    for b in range(n):
        for y0 in range(0, ho, qy):
            for x0 in range(0, wo, qx):
                for c0 in range(0, ch, gamma):
                    best = None
                    for c in range(c0, c0 + gamma):
                        for y in range(y0, min(ho, y0 + qy)):
                            for x in range(x0, min(wo, x0 + qx)):
                                if wrong[b, y, x, c] and (best is None or absz[b, y, x, c] < absz[best]):
                                    best = (b, y, x, c)
                    if best is not None:
                        m[best] = 1
    return m


def dense_mask(wrong, absz, gamma):
    n, k = wrong.shape
    return tile_mask(wrong.reshape(n, 1, 1, k), absz.reshape(n, 1, 1, k), 0, gamma).reshape(n, k)


def conv_delta(mt, a, k, s, p):
    """delta[o,i,j,c] = sum_{n,y,x} mt[n,y,x,o] a[n, y*s+i-p, x*s+j-p, c], padding +1."""
    n, ho, wo, o = mt.shape
    ap = padded(a.astype(np.int64), p)
    d = np.zeros((o, k, k, a.shape[3]), dtype=np.int64)
    for i in range(k):
        for j in range(k):
            patch = ap[:, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s]
            d[:, i, j] = np.einsum("nyxo,nyxc->oc", mt, patch)
    return d


def pool2(a):
    """2 x 2 majority of a (N, H, W, C) +-1, a tie to the window's top-left sign; a last odd row/column dropped."""
    h, w = a.shape[1] // 2 * 2, a.shape[2] // 2 * 2
    top_left = a[:, 0:h:2, 0:w:2]
    total = top_left + a[:, 0:h:2, 1:w:2] + a[:, 1:h:2, 0:w:2] + a[:, 1:h:2, 1:w:2]
    return sgn(2 * total + top_left)


def unpool_targets(t, out):
    """A pooled layer's targets: in every window whose majority differs from its target t, each output gets that
    target; every other output (windows that meet it, uncovered rows and columns) keeps its sign."""
    res = out.copy()
    for y in range(t.shape[1]):
        for x in range(t.shape[2]):
            miss = pool2(out[:, 2 * y:2 * y + 2, 2 * x:2 * x + 2])[:, 0, 0] != t[:, y, x]  # (N, C)
            window = res[:, 2 * y:2 * y + 2, 2 * x:2 * x + 2]
            window[...] = np.where(miss[:, None, None], t[:, y:y + 1, x:x + 1], window)
    return res


def conv_step(hidden, strides, pads, prototypes, x, labels, gammas, tile, margin, gates, thresholds, clip, seed,
              step, stability="z", pools=None):
    """One BEP step in place on `hidden` (conv layers (O, k, k, C) first, then dense (K_out, K_in)); x: (N, H, W, C)
    +-1; strides/pads/pools: per conv layer (pool 2: 2 x 2 majority pooling of its output); gates: per trainable
    layer, floor(nu * fan-in); stability: wrong units ranked by |z| or ("flips") by flips(z). Returns (wrong,
    triggered)."""
    rank = (lambda z: flips(np, z)) if stability == "flips" else np.abs
    n_conv = len(strides)
    pools = list(pools) if pools else [1] * n_conv
    w = [sgn(h) for h in hidden]
    outs, zs, ins = [], [], [x.astype(np.int64)]  # ins[l]: the input map of layer l
    for l in range(n_conv):
        zs.append(conv_z(ins[l], w[l], strides[l], pads[l]))
        outs.append(sgn(zs[-1]))
        ins.append(pool2(outs[-1]) if pools[l] == 2 else outs[-1])
    flat_shape = ins[-1].shape
    ins[-1] = ins[-1].reshape(len(x), int(np.prod(flat_shape[1:])))  # (y, x, c) order, c fastest
    for l in range(n_conv, len(hidden)):
        zs.append(ins[l] @ w[l].T)
        outs.append(sgn(zs[-1]))
        ins.append(outs[-1])
    logits = outs[-1] @ prototypes.astype(np.int64).T
    rows = np.arange(len(labels))
    others = logits.copy()
    others[rows, labels] = np.iinfo(np.int64).min
    trig = logits[rows, labels] - others.max(axis=1) < margin
    targets = [None] * len(hidden)
    targets[-1] = prototypes[labels].astype(np.int64)
    for l in range(len(hidden) - 1, 0, -1):
        gt = targets[l] * (np.abs(zs[l]) <= gates[l])
        if l >= n_conv:
            t_in = sgn(gt @ w[l])
            if l == n_conv:
                t_in = t_in.reshape(flat_shape)
        else:
            t_in = input_targets(w[l], gt, ins[l].shape[1], ins[l].shape[2], strides[l], pads[l])
        if l <= n_conv and pools[l - 1] == 2:
            t_in = unpool_targets(t_in, outs[l - 1])
        targets[l - 1] = t_in
    for l in range(len(hidden)):
        out = outs[l]
        if l < n_conv:
            wrong = (out != targets[l]) & trig[:, None, None, None]
            mt = tile_mask(wrong, rank(zs[l]), tile, gammas[l]) * targets[l]
            d = conv_delta(mt, ins[l], hidden[l].shape[1], strides[l], pads[l])
        else:
            a_in = ins[l].reshape(len(x), hidden[l].shape[1])
            wrong = (out != targets[l]) & trig[:, None]
            d = (dense_mask(wrong, rank(zs[l]), gammas[l]) * targets[l]).T @ a_in
        hidden[l][...] = np.clip(hidden[l].astype(np.int64) + 2 * d, -clip, clip)
    if trig.any():
        for l, h in enumerate(hidden):
            u = counter_uniform(seed, 1, step, l, h.size).reshape(h.shape).astype(np.int64)
            moved = np.clip(h.astype(np.int64) + np.where(h >= 0, 2, -2), -clip, clip)
            h[...] = np.where(u < thresholds[l], moved, h)
    return int((np.argmax(logits, axis=1) != labels).sum()), int(trig.sum())
