"""The bit-packed MLP and RNN steps and an independent dense integer implementation of the algorithm
(docs/ALGORITHM.md) agree bit for bit. The dense steps get their integer thresholds from dense_reference (the rules
written out, not the package's StepRules), and r, nu and the widths make r * K and nu * K fractional, so ceil and
floor give different values."""
import numpy as np
import pytest

import dense_reference as ref

from bep_gpu import bep_rnn, get_backend, pack_bits
from bep_gpu.bep_mlp import StepRules, reinforcement_thresholds, train_step
from bep_gpu.mlp import init_hidden
from bep_gpu.prototypes import make_prototypes

from bep_gpu.peers.dense_bep import dense_rnn_step, dense_step


@pytest.mark.parametrize("stability", ["z", "flips"])  # flips changes the 70- and 130-input cases' steps
@pytest.mark.parametrize("sizes, gammas, batch", [([70, 35, 35], [7, 35], 13), ([130, 45, 45, 45], [15, 9, 45], 40),
                                                  ([64, 10], [5], 1)])
def test_packed_step_equals_dense_step(sizes, gammas, batch, stability):
    rng = np.random.default_rng(sum(sizes))
    bk = get_backend("numpy")
    shapes = [(sizes[i + 1], sizes[i]) for i in range(len(sizes) - 1)]
    hidden = init_hidden(shapes, 6.0, seed=3)
    dense = [h.copy() for h in hidden]
    start = [h.copy() for h in hidden]
    protos = make_prototypes(4, sizes[-1], seed=1, sweeps=2)
    rules = StepRules.make(sizes, r=0.75, nu=0.3, clip=40, stability=stability)
    thresholds = reinforcement_thresholds(sizes[:-1], 4.0, 0.8)  # large p: reinforcement fires often
    dense_thresholds = [ref.reinforcement_threshold(k, 4.0, 0.8) for k in sizes[:-1]]
    for step in range(6):
        x = rng.choice(np.array([-1, 1], np.int8), size=(batch, sizes[0]))
        y = rng.integers(0, 4, size=batch)
        counts = train_step(bk, hidden, sizes, pack_bits(protos), pack_bits(x), y, gammas, rules, thresholds,
                            seed=9, step=step)
        want = dense_step(np, dense, protos, x, y, gammas, ref.trigger_margin(0.75, sizes[-1]),
                          [ref.gate(0.3, k) for k in sizes[:-1]], dense_thresholds, 40, seed=9, step=step,
                          stability=stability)
        assert tuple(int(c) for c in counts) == want
        for a, b in zip(hidden, dense):
            assert np.array_equal(a, b)
    assert all(not np.array_equal(a, b) for a, b in zip(hidden, start)), "the steps must change every layer"


# Kx, Ks, Ky (none a multiple of 64 except one edge case), T, batch, [cell, readout] group sizes, horizon, mask.
RNN_CASES = [((70, 90, 75), 6, 13, [15, 15], 0, "step"), ((70, 90, 75), 6, 13, [15, 25], 3, "step"),
             ((70, 90, 75), 6, 13, [9, 15], 0, "shared"), ((130, 65, 35), 5, 40, [13, 5], 2, "shared"),
             ((64, 64, 10), 3, 1, [8, 5], 1, "step"), ((33, 129, 129), 4, 7, [43, 3], 3, "shared")]


@pytest.mark.parametrize("sizes, steps, batch, gammas, horizon, rnn_mask", RNN_CASES)
def test_packed_rnn_step_equals_dense_rnn_step(sizes, steps, batch, gammas, horizon, rnn_mask):
    rng = np.random.default_rng(sum(sizes) + horizon)
    bk = get_backend("numpy")
    kx, ks, ky = sizes
    hidden = init_hidden([(ks, kx), (ks, ks), (ky, ks)], 6.0, seed=3)
    dense = [h.copy() for h in hidden]
    start = [h.copy() for h in hidden]
    protos = make_prototypes(4, ky, seed=1, sweeps=2)
    rules = bep_rnn.step_rules(sizes, r=0.75, nu=0.3, clip=60)  # small clip: the single clip after the sum matters
    thresholds = reinforcement_thresholds([kx, ks, ks], 4.0, 0.8)  # large p: reinforcement fires often
    dense_thresholds = [ref.reinforcement_threshold(k, 4.0, 0.8) for k in (kx, ks, ks)]
    triggered = 0
    for step in range(5):
        x = rng.choice(np.array([-1, 1], np.int8), size=(batch, steps, kx))
        y = rng.integers(0, 4, size=batch)
        counts = bep_rnn.train_step(bk, hidden, sizes, pack_bits(protos), pack_bits(x), y, gammas, rules, horizon,
                                    rnn_mask == "shared", thresholds, seed=9, step=step)
        want = dense_rnn_step(np, dense, protos, x, y, gammas, ref.trigger_margin(0.75, ky),
                              (ref.gate(0.3, kx + ks), ref.gate(0.3, ks)), dense_thresholds, 60, seed=9, step=step,
                              horizon=horizon, shared_mask=rnn_mask == "shared")
        assert tuple(int(c) for c in counts) == want
        triggered += want[1]
        for a, b in zip(hidden, dense):
            assert np.array_equal(a, b)
    assert triggered, "some samples must trigger, so the target and update paths run"
    assert all(not np.array_equal(a, b) for a, b in zip(hidden, start)), "the steps must change every matrix"
