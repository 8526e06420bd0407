"""Dense integer BEP step: the peer our bit-packed implementation is measured against.

The authors' predecessor code stores +-1 values as dense integer arrays and multiplies them as integers; this
module does the same with NumPy or CuPy (int8 values, int32 products), written directly from docs/ALGORITHM.md
sections 3-4 (dense_step, the MLP) and section 9 (dense_rnn_step, BEP-TT) without any of bep_gpu's primitives
(only its counter RNG, which the spec fixes). Two uses: the performance benchmarks time it beside the packed
step, and tests/test_dense_baseline.py checks that both give identical integers (an independent implementation
of the spec agreeing bit for bit).
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


def dot_rows(xp, a, b):
    """int32 a @ b.T: every row of a against every row of b, with both operands contiguous along the summed axis
    (NumPy's integer matmul has no BLAS; its loop runs down the summed axis, so strided operands cost up to 6x)."""
    return xp.ascontiguousarray(a, dtype=xp.int32) @ xp.ascontiguousarray(b, dtype=xp.int32).T


def trigger(xp, logits, labels, margin):
    """Section 4.2: y_c - max_{c' != c} y_c' < margin, per row."""
    rows = xp.arange(len(labels))
    own = logits[rows, labels].astype(xp.int64)
    others = logits.astype(xp.int64)
    others[rows, labels] = xp.iinfo(xp.int64).min
    return (own - others.max(axis=1)) < margin


def reinforce(xp, hidden, logits, labels, trig, thresholds, clip, seed, step):
    """Section 4.6 on every matrix (layer index = list position), only if a sample triggered; returns the step's
    (misclassified, triggered)."""
    if int(trig.sum()) > 0:
        for i, h in enumerate(hidden):
            u = counter_uniform(seed, 1, step, i, h.size, xp=xp).reshape(h.shape)
            moved = xp.clip(h.astype(xp.int32) + xp.where(h >= 0, 2, -2), -clip, clip).astype(xp.int16)
            h[...] = xp.where(u.astype(xp.int64) < thresholds[i], moved, h)
    return int((xp.argmax(logits, axis=1) != labels).sum()), int(trig.sum())


def flips(xp, z):
    """Section 4.4's "flips" rank: the +-1 inputs that must change sign to flip sgn(z) (each moves z by 2; z = 0
    is a +1)."""
    return xp.where(z >= 0, z // 2 + 1, (1 - z) // 2)


def dense_step(xp, hidden, prototypes, x, labels, gammas, margin, gates, thresholds, clip, seed, step,
               stability="z"):
    """One BEP step in place on the int16 `hidden` list; x: int8 +-1 (B, K0); prototypes int8 (C, K_L);
    stability "z" or "flips" (the wrong units' rank)."""
    weights = [sgn(xp, h) for h in hidden]
    acts, zs = [x], []
    for w in weights:
        zs.append(dot_rows(xp, acts[-1], w))
        acts.append(sgn(xp, zs[-1]))
    logits = dot_rows(xp, acts[-1], prototypes)
    trig = trigger(xp, logits, labels, margin)
    targets = [None] * len(hidden)
    targets[-1] = prototypes[labels]
    for i in range(len(hidden) - 1, 0, -1):
        gated = targets[i].astype(xp.int32) * (xp.abs(zs[i]) <= gates[i])
        targets[i - 1] = sgn(xp, dot_rows(xp, gated, weights[i].T))
    for i, h in enumerate(hidden):
        wrong = (acts[i + 1] != targets[i]) & trig[:, None]
        rank = flips(xp, zs[i]) if stability == "flips" else xp.abs(zs[i])
        m = group_mask(xp, wrong, rank, gammas[i]).astype(xp.int32)
        delta = dot_rows(xp, (m * targets[i]).T, acts[i].T)
        h[...] = xp.clip(h.astype(xp.int32) + 2 * delta, -clip, clip).astype(xp.int16)
    return reinforce(xp, hidden, logits, labels, trig, thresholds, clip, seed, step)


def dense_rnn_step(xp, hidden, prototypes, x, labels, gammas, margin, gates, thresholds, clip, seed, step,
                   horizon=0, shared_mask=False):
    """One BEP-TT step (docs/ALGORITHM.md section 9) in place on the int16 [H_xs, H_ss, H_sy]; dense, batched over samples.

    x: int8 +-1 (B, T, Kx); prototypes: int8 +-1 (C, Ky); gammas: [cell, readout] group sizes; margin: the trigger
    margin ceil(r Ky); gates: (cell gate floor(nu (Kx + Ks)), readout gate floor(nu Ks)); thresholds: reinforcement
    thresholds of xs, ss, sy; horizon: target steps counted from the end (0 = all); shared_mask: rnn_mask="shared".
    Returns (misclassified, triggered).
    """
    i32 = xp.int32
    w_xs, w_ss, w_sy = (sgn(xp, h) for h in hidden)
    n, steps, kx = x.shape
    ks = hidden[1].shape[0]
    h = min(horizon, steps) if horizon else steps
    first = steps - h  # targets exist for the 1-based steps first+1..T
    # Forward. Lists below are indexed by the spec's 1-based time: s[0] = s_0 = +1, z[t] = z_t, a[t] = a_t.
    # W_xs a_t does not depend on the state: the input products of all steps in one matmul.
    zx = dot_rows(xp, x.reshape(n * steps, kx), w_xs).reshape(n, steps, ks)
    a = [None] + [x[:, t] for t in range(steps)]
    s, z = [xp.ones((n, ks), dtype=xp.int8)], [None]
    for t in range(1, steps + 1):
        z.append(zx[:, t - 1] + dot_rows(xp, s[t - 1], w_ss))
        s.append(sgn(xp, z[t]))
    z_y = dot_rows(xp, s[steps], w_sy)
    s_y = sgn(xp, z_y)
    logits = dot_rows(xp, s_y, prototypes)
    trig = trigger(xp, logits, labels, margin)  # section 4.2 with K_L = Ky
    # Targets: t_T through the gated readout, then t_{t-1} = sign(W_ss^T (g_t * t_t)) down to the first target step.
    t_y = prototypes[labels]
    wt_sy, wt_ss = xp.ascontiguousarray(w_sy.T), xp.ascontiguousarray(w_ss.T)
    tgt = {steps: sgn(xp, dot_rows(xp, t_y * (xp.abs(z_y) <= gates[1]), wt_sy))}
    for t in range(steps, first + 1, -1):
        tgt[t - 1] = sgn(xp, dot_rows(xp, tgt[t] * (xp.abs(z[t]) <= gates[0]), wt_ss))
    span = range(first + 1, steps + 1)
    # Masks of the cell: per step (default), or one per sample (shared): the unit wrong at the most steps, then
    # the smallest summed |z_t|, then the lowest index, among units wrong at least once.
    wrong = {t: (s[t] != tgt[t]) & trig[:, None] for t in span}
    if shared_mask:
        count = sum(wrong[t].astype(i32) for t in span)
        total = sum(xp.abs(z[t]).astype(xp.int64) for t in span)
        group_max = count.reshape(n, ks // gammas[0], gammas[0]).max(axis=2).repeat(gammas[0], axis=1)
        m = group_mask(xp, (count > 0) & (count == group_max), total, gammas[0])
        mask = {t: m for t in span}
    else:
        mask = {t: group_mask(xp, wrong[t], xp.abs(z[t]), gammas[0]) for t in span}
    m_y = group_mask(xp, (s_y != t_y) & trig[:, None], xp.abs(z_y), gammas[1])
    # Updates: each summed over samples and steps in int32 (one matmul over the stacked rows), clipped once.
    d = xp.concatenate([mask[t] * tgt[t] for t in span]).T  # (Ks, h B): summed over the stacked rows
    d_xs = dot_rows(xp, d, xp.concatenate([a[t] for t in span]).T)
    d_ss = dot_rows(xp, d, xp.concatenate([s[t - 1] for t in span]).T)
    d_sy = dot_rows(xp, (m_y * t_y).T, s[steps].T)
    for hm, d in zip(hidden, (d_xs, d_ss, d_sy)):
        hm[...] = xp.clip(hm.astype(i32) + 2 * d, -clip, clip).astype(xp.int16)
    return reinforce(xp, hidden, logits, labels, trig, thresholds, clip, seed, step)  # layers 0, 1, 2 = xs, ss, sy
