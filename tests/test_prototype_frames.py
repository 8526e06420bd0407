"""The readout's prototype frames (bep_gpu/prototypes.py): the spec's greedy search and the balanced option."""
import json
from itertools import combinations

import numpy as np
import pytest

from bep_gpu.prototypes import _best_swap, balanced_frame, make_prototypes


def _pair_dots(p):
    p = p.astype(np.int64)
    return (p @ p.T)[np.triu_indices(len(p), 1)]


@pytest.mark.parametrize("n, k", [(10, 35), (10, 75), (3, 35), (5, 9), (2, 8), (7, 64)])
def test_balanced_frame_has_the_lowest_dot_sum_and_balanced_columns(n, k):
    p = balanced_frame(n, k, seed=3)
    assert p.shape == (n, k) and p.dtype == np.int8 and set(np.unique(p)) <= {-1, 1}
    assert set(p.sum(axis=0).tolist()) == {n % 2 * -1}  # n // 2 entries +1 in every column
    # sum of pair dots = (|column sums|^2 - n k) / 2, at its minimum for balanced columns
    assert _pair_dots(p).sum() == (k * (n % 2) - n * k) // 2
    assert np.array_equal(p, balanced_frame(n, k, seed=3))  # seeded
    if n > 2:
        assert not np.array_equal(p, balanced_frame(n, k, seed=4))


def test_balanced_frame_is_more_even_than_the_greedy_one_at_k35():
    for seed in range(3):
        balanced, greedy = _pair_dots(balanced_frame(10, 35, seed)), _pair_dots(make_prototypes(10, 35, seed))
        assert balanced.mean() == pytest.approx(greedy.mean())  # alpha 1 reaches the lowest sum too
        assert set(balanced.tolist()) == {-5, -3} and balanced.std() < greedy.std() / 3
        alpha64 = _pair_dots(make_prototypes(10, 35, seed, alpha=64))
        assert balanced.mean() < alpha64.mean() - 2  # and better separated than the even greedy frame


def test_best_swap_is_the_best_one_and_keeps_the_gram_matrix():
    rng = np.random.default_rng(0)
    for _ in range(30):
        n, k = int(rng.integers(2, 9)), int(rng.integers(2, 12))
        p = np.where(rng.random((n, k)) < 0.5, 1, -1).astype(np.int64)
        col = int(rng.integers(k))
        gram = p @ p.T
        squares = lambda q: int((_pair_dots(q) ** 2).sum())  # noqa: E731
        options = []
        for a, b in combinations(range(n), 2):
            if p[a, col] != p[b, col]:
                q = p.copy()
                q[[a, b], col] = -q[[a, b], col]
                options.append(squares(q))
        before = squares(p)
        moved = _best_swap(p, gram, col)
        assert np.array_equal(gram, p @ p.T)
        assert moved == (bool(options) and min(options) < before)
        assert squares(p) == (min(options) if moved else before)


def test_train_with_a_balanced_frame_and_its_errors(tmp_path, capsys):
    from bep_gpu.cli.train import main

    from conftest import prototypes_npz

    data = prototypes_npz(tmp_path / "p.npz", classes=4, features=40, n_train=200, n_test=80, flip=0.3)
    run = tmp_path / "run"
    assert main(["mlp", "--dataset", data, "--hidden", "9", "--gamma0", "3", "--epochs", "1", "--quiet",
                 "--backend", "numpy", "--proto-frame", "balanced", "--out", str(run)]) == 0
    assert json.loads((run / "config.json").read_text())["proto_frame"] == "balanced"
    with np.load(run / "model.npz") as z:
        assert np.array_equal(z["prototypes"], balanced_frame(4, 9, 0))
    capsys.readouterr()
    for flags, message in ((["--proto-frame", "balanced", "--proto-alpha", "64"], "takes neither"),
                           (["--proto-frame", "even"], "invalid choice")):
        try:  # a bad setting returns 2, a bad choice exits 2 from argparse
            code = main(["mlp", "--dataset", data, "--hidden", "9", "--epochs", "1", "--quiet", *flags,
                         "--out", str(tmp_path / "bad")])
        except SystemExit as exc:
            code = exc.code
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err and not (tmp_path / "bad").exists()
