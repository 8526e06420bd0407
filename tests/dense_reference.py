"""Plain dense +-1 integer references for the backend primitives and the step's integer rules (slow, obviously
right). Nothing here comes from bep_gpu: the thresholds and the counter RNG are written out from the algorithm's
rules, so a wrong rule in the package cannot move its reference with it."""
import math

import numpy as np

MASK64 = (1 << 64) - 1


def splitmix(x):
    """The counter RNG's mixer: the SplitMix64 finaliser on one uint64 (Python ints, wrapping by hand)."""
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def rng_key(seed, stream, step, layer):
    """key = mix(mix(mix(mix(seed) ^ stream) ^ step) ^ layer)."""
    return splitmix(splitmix(splitmix(splitmix(seed) ^ stream) ^ step) ^ layer)


def uniform(seed, stream, step, layer, i):
    """u(i) = mix(key ^ i) >> 32."""
    return splitmix(rng_key(seed, stream, step, layer) ^ i) >> 32


def trigger_margin(r, k_last):
    """T_r = ceil(r * K_L)."""
    return math.ceil(r * k_last)


def gate(nu, fan_in):
    """G = floor(nu * fan-in)."""
    return math.floor(nu * fan_in)


def reinforcement_threshold(fan_in, p_r, error_rate):
    """floor(p * 2^32), p = min(1, p_r * sqrt(E) * sqrt(2 / (pi * K))) in float64, left to right."""
    p = min(1.0, p_r * math.sqrt(error_rate) * math.sqrt(2 / (math.pi * fan_in)))
    return math.floor(p * 2.0**32)


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
        u = splitmix(key ^ f) >> 32
        if u < threshold:
            out[f] = min(clip, max(-clip, out[f] + (2 if out[f] >= 0 else -2)))
    return out.reshape(h.shape).astype(np.int16)
