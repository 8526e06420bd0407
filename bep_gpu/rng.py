"""Counter RNG of docs/ALGORITHM.md section 8 (SplitMix64 finaliser), identical on every backend."""
from __future__ import annotations

import numpy as np

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
M1 = 0xBF58476D1CE4E5B9
M2 = 0x94D049BB133111EB


def mix_int(x: int) -> int:
    """mix() on one Python integer (exact, for keys computed on the host)."""
    z = (x + GOLDEN) & MASK64
    z = ((z ^ (z >> 30)) * M1) & MASK64
    z = ((z ^ (z >> 27)) * M2) & MASK64
    return z ^ (z >> 31)


def stream_key(seed: int, stream: int) -> int:
    """mix(mix(seed) ^ stream): the part of rng_key fixed for a whole run (kernels that read the step on the
    device finish the key there)."""
    return mix_int(mix_int(int(seed) & MASK64) ^ (int(stream) & MASK64))


def rng_key(seed: int, stream: int, step: int, layer: int) -> int:
    """key = mix(mix(mix(mix(seed) ^ stream) ^ step) ^ layer), all uint64."""
    k = mix_int(stream_key(seed, stream) ^ (int(step) & MASK64))
    return mix_int(k ^ (int(layer) & MASK64))


def mix_array(x, xp=np):
    """mix() elementwise on a uint64 array of module xp (NumPy or CuPy); uint64 arithmetic wraps.

    Works in place on a copy: the NumPy backend draws one value per hidden weight every step.
    """
    u = xp.uint64
    z = x + u(GOLDEN)
    z ^= z >> u(30)
    z *= u(M1)
    z ^= z >> u(27)
    z *= u(M2)
    z ^= z >> u(31)
    return z


def counter_uniform(seed: int, stream: int, step: int, layer: int, n: int, xp=np):
    """u(i) = mix(key ^ i) >> 32 for i = 0..n-1, as uint32."""
    key = xp.uint64(rng_key(seed, stream, step, layer))
    z = xp.arange(int(n), dtype=xp.uint64)
    z ^= key
    z = mix_array(z, xp)
    z >>= xp.uint64(32)
    return z.astype(xp.uint32)


def probability_threshold(p: float) -> int:
    """floor(p * 2^32) as an integer threshold for `u < threshold` (p in [0, 1]; p = 1 always fires)."""
    return int(np.floor(np.float64(p) * np.float64(2.0**32)))


_CHUNK = 1 << 16  # values per pass: 512 KiB of uint64 stays in cache through the mixing rounds


def firing_indices(seed: int, stream: int, step: int, layer: int, n: int, threshold: int) -> np.ndarray:
    """Flat indices i < n with u(i) < threshold (NumPy): the entries one reinforcement draw moves.

    u(i) < t  <=>  mix(key ^ i) < t * 2^32 for t <= 2^32, so the shift is skipped; chunks keep the
    mixing rounds in cache. Equal to np.flatnonzero(counter_uniform(...) < threshold).
    """
    if threshold >= 2**32:
        return np.arange(int(n), dtype=np.int64)
    key = np.uint64(rng_key(seed, stream, step, layer))
    bound = np.uint64(int(threshold) << 32)
    out = []
    buf = np.empty(min(int(n), _CHUNK), dtype=np.uint64)
    for start in range(0, int(n), _CHUNK):
        z = buf[: min(_CHUNK, int(n) - start)]
        z[...] = np.arange(start, start + len(z), dtype=np.uint64)
        z ^= key
        z = mix_array(z)
        out.append(np.flatnonzero(z < bound) + start)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
