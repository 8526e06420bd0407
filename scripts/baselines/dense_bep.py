"""Dense integer BEP step: the peer our bit-packed implementation is measured against.

The authors' predecessor code stores +-1 values as dense integer arrays and multiplies them as integers; this
module does the same with NumPy or CuPy (int8 values, int32 products), written directly from BEP_SPEC.md
sections 3-4 without any of bep_gpu's primitives. Two uses: the performance benchmarks time it beside the
packed step, and tests/test_dense_baseline.py checks that both give identical integers (an independent
implementation of the spec agreeing bit for bit).
"""
from __future__ import annotations

from bep_gpu.rng import counter_uniform


def sgn(xp, v):
    return xp.where(v >= 0, 1, -1).astype(xp.int8)


def group_mask(xp, wrong, score, gamma):
    """Per group of gamma units: the wrong unit of smallest score, lowest index on ties."""
    n, k = wrong.shape
    big = xp.iinfo(xp.int64).max
    s = xp.where(wrong, score.astype(xp.int64), big).reshape(n, k // gamma, gamma)
    idx = xp.argmin(s, axis=2)
    mask = xp.zeros((n, k // gamma, gamma), dtype=xp.int8)
    xp.put_along_axis(mask, idx[..., None], wrong.reshape(n, k // gamma, gamma).any(axis=2)[..., None]
                      .astype(xp.int8), axis=2)
    return mask.reshape(n, k)


def dense_step(xp, hidden, prototypes, x, labels, gammas, margin, gates, thresholds, clip, seed, step):
    """One BEP step in place on the int16 `hidden` list; x: int8 +-1 (B, K0); prototypes int8 (C, K_L)."""
    weights = [sgn(xp, h) for h in hidden]
    acts, zs = [x], []
    for w in weights:
        zs.append(acts[-1].astype(xp.int32) @ w.T.astype(xp.int32))
        acts.append(sgn(xp, zs[-1]))
    logits = acts[-1].astype(xp.int32) @ prototypes.T.astype(xp.int32)
    rows = xp.arange(len(labels))
    own = logits[rows, labels].astype(xp.int64)
    others = logits.astype(xp.int64)
    others[rows, labels] = xp.iinfo(xp.int64).min
    trig = (own - others.max(axis=1)) < margin
    targets = [None] * len(hidden)
    targets[-1] = prototypes[labels]
    for i in range(len(hidden) - 1, 0, -1):
        gated = targets[i].astype(xp.int32) * (xp.abs(zs[i]) <= gates[i])
        targets[i - 1] = sgn(xp, gated @ weights[i].astype(xp.int32))
    for i, h in enumerate(hidden):
        wrong = (acts[i + 1] != targets[i]) & trig[:, None]
        m = group_mask(xp, wrong, xp.abs(zs[i]), gammas[i]).astype(xp.int32)
        delta = (m * targets[i]).T @ acts[i].astype(xp.int32)
        h[...] = xp.clip(h.astype(xp.int32) + 2 * delta, -clip, clip).astype(xp.int16)
    if int(trig.sum()) > 0:
        for i, h in enumerate(hidden):
            u = counter_uniform(seed, 1, step, i, h.size, xp=xp).reshape(h.shape)
            moved = xp.clip(h.astype(xp.int32) + xp.where(h >= 0, 2, -2), -clip, clip).astype(xp.int16)
            h[...] = xp.where(u.astype(xp.int64) < thresholds[i], moved, h)
    return int((xp.argmax(logits, axis=1) != labels).sum()), int(trig.sum())
