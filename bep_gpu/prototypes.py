"""Fixed class prototypes: a binary equiangular frame (docs/ALGORITHM.md section 7), computed once on the host."""
from __future__ import annotations

import numpy as np


def _objective(s: int, q: int, n_pairs: int, alpha: float) -> float:
    # J = sum of pair dots + alpha * population variance of pair dots, from their sum s and sum of squares q.
    mean = s / n_pairs
    return s + alpha * (q / n_pairs - mean * mean)


def make_prototypes(n_classes: int, k: int, seed: int, alpha: float = 1.0, sweeps: int = 20) -> np.ndarray:
    """int8 +-1 prototypes (n_classes, k): random rows, then greedy flips that lower J, in seeded order."""
    rng = np.random.default_rng([int(seed), 11])
    p = rng.choice(np.array([-1, 1], dtype=np.int64), size=(n_classes, k))
    if n_classes < 2:
        return p.astype(np.int8)
    gram = (p @ p.T).tolist()
    rows = p.tolist()  # plain ints: this loop is O(sweeps * C^2 * K) scalar work, faster than tiny NumPy calls
    n_pairs = n_classes * (n_classes - 1) // 2
    s = sum(gram[i][j] for i in range(n_classes) for j in range(i + 1, n_classes))
    q = sum(gram[i][j] ** 2 for i in range(n_classes) for j in range(i + 1, n_classes))
    current = _objective(s, q, n_pairs, alpha)
    cells = n_classes * k
    for _ in range(sweeps):
        for cell in rng.permutation(cells).tolist():
            c, col = divmod(cell, k)
            v = rows[c][col]
            ds = dq = 0
            for j in range(n_classes):
                if j != c:
                    delta = -2 * v * rows[j][col]
                    ds += delta
                    dq += 2 * gram[c][j] * delta + delta * delta
            candidate = _objective(s + ds, q + dq, n_pairs, alpha)
            if candidate < current:
                rows[c][col] = -v
                for j in range(n_classes):
                    if j != c:
                        gram[c][j] = gram[j][c] = gram[c][j] - 2 * v * rows[j][col]
                s, q, current = s + ds, q + dq, candidate
    return np.asarray(rows, dtype=np.int8)
