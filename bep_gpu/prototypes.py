"""Fixed class prototypes: a binary equiangular frame (docs/ALGORITHM.md section 7), computed once on the host.

Two searches: "greedy" (the spec's, the default) flips single entries to lower sum + alpha * variance of the
pair dot products; "balanced" (an option) keeps every column balanced, which fixes the sum of the pair dots at
its minimum, and swaps entries within columns to lower their variance."""
from __future__ import annotations

import numpy as np


def _objective(s: int, q: int, n_pairs: int, alpha: float) -> float:
    # J = sum of pair dots + alpha * population variance of pair dots, from their sum s and sum of squares q.
    mean = s / n_pairs
    return s + alpha * (q / n_pairs - mean * mean)


FRAMES = ("greedy", "balanced")


def make_prototypes(n_classes: int, k: int, seed: int, alpha: float = 1.0, sweeps: int = 20,
                    frame: str = "greedy") -> np.ndarray:
    """int8 +-1 prototypes (n_classes, k): random rows, then greedy flips that lower J, in seeded order; or, with
    frame="balanced", balanced_frame (alpha and sweeps unused)."""
    if frame == "balanced":
        return balanced_frame(n_classes, k, seed)
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


def balanced_frame(n_classes: int, k: int, seed: int, restarts: int = 20, max_sweeps: int = 100) -> np.ndarray:
    """int8 +-1 prototypes (n_classes, k) whose pair dot products have the lowest sum and, for it, a low variance.

    Every column holds n_classes // 2 entries +1 (the rest -1), which gives sum_{i<j} <p_i, p_j> its minimum,
    (k (n mod 2) - n k) / 2. Swapping a +1 and a -1 of one column keeps it; each visit of a column (in seeded
    random order) makes the swap that lowers the sum of squared pair dots most, until a sweep moves nothing.
    From `restarts` seeded starts the lowest sum of squares wins (ties: the first); the search stops early once
    every pair dot is one of two adjacent values (dots share the parity of k), the least variance there is."""
    rng = np.random.default_rng([int(seed), 12])
    column = np.array([1] * (n_classes // 2) + [-1] * (n_classes - n_classes // 2), dtype=np.int64)
    upper = np.triu_indices(n_classes, 1)
    best, best_q = None, None
    for _ in range(restarts):
        p = rng.permuted(np.tile(column[:, None], (1, k)), axis=0)
        gram = p @ p.T
        for _ in range(max_sweeps):
            moved = False
            for col in rng.permutation(k).tolist():
                moved |= _best_swap(p, gram, col)
            if not moved:
                break
        q = int((gram[upper] ** 2).sum())
        if best_q is None or q < best_q:
            best, best_q = p.copy(), q
        if n_classes < 3 or np.ptp(gram[upper]) <= 2:
            break
    return best.astype(np.int8)


def _best_swap(p, gram, col: int) -> bool:
    """In place: the swap of a +1 and a -1 of column col that lowers the sum of squared pair dots most (the
    first such pair in row order on ties); False when none lowers it."""
    v = p[:, col]
    # Flipping entry a changes gram[a, j] by -2 v_a v_j; its square by u[a, j] = 4 - 4 v_a v_j gram[a, j].
    u = 4 - 4 * np.outer(v, v) * gram
    np.fill_diagonal(u, 0)
    rows = u.sum(axis=1)
    plus, minus = np.flatnonzero(v > 0), np.flatnonzero(v < 0)
    # Flipping a and b together leaves gram[a, b] as it is: drop that pair's terms.
    change = rows[plus, None] + rows[None, minus] - u[plus][:, minus] - u[minus][:, plus].T
    if change.size == 0 or change.min() >= 0:
        return False
    i, j = np.unravel_index(int(np.argmin(change)), change.shape)
    a, b = int(plus[i]), int(minus[j])
    for r, other in ((a, b), (b, a)):  # gram[a, b] and the diagonal stay
        step = -2 * v[r] * v
        step[r] = step[other] = 0
        gram[r, :] += step
        gram[:, r] += step
    v[a], v[b] = -v[a], -v[b]  # v is a view: this writes p
    return True
