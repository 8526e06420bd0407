"""Plain dense +-1 integer references for the backend primitives (slow, obviously right)."""
import numpy as np

from bep_gpu.rng import mix_int, rng_key


def sgn(x):
    return np.where(np.asarray(x) >= 0, 1, -1).astype(np.int64)


def xnor_matmul(a_pm, b_pm):
    return a_pm.astype(np.int64) @ b_pm.astype(np.int64).T


def gated_transposed_product(t_pm, g01, w_pm):
    """t_pm, g01: (N, K); w_pm: (K, J) (the forward weights); returns sign(W^T (g*t)) as (N, J) +-1."""
    return sgn((t_pm.astype(np.int64) * g01) @ w_pm.astype(np.int64))


def group_select(score, cand, gamma):
    n, k = score.shape
    sel = np.zeros((n, k), dtype=bool)
    for r in range(n):
        for g0 in range(0, k, gamma):
            best = None
            for j in range(g0, g0 + gamma):
                if cand[r, j] and (best is None or score[r, j] < score[r, best]):
                    best = j
            if best is not None:
                sel[r, best] = True
    return sel


def batch_update(h, sel01, t_pm, x_pm, clip):
    d = sel01.astype(np.int64) * t_pm
    return np.clip(h.astype(np.int64) + 2 * (d.T @ x_pm.astype(np.int64)), -clip, clip).astype(np.int16)


def reinforce(h, threshold, seed, stream, step, layer, clip):
    key = rng_key(seed, stream, step, layer)
    out = h.astype(np.int64).copy().ravel()
    for f in range(out.size):
        u = mix_int(key ^ f) >> 32
        if u < threshold:
            out[f] = min(clip, max(-clip, out[f] + (2 if out[f] >= 0 else -2)))
    return out.reshape(h.shape).astype(np.int16)
