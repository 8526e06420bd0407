"""The bit-packed MLP step and an independent dense integer implementation of BEP_SPEC agree bit for bit."""
import os
import sys

import numpy as np
import pytest

from bep_gpu import get_backend, pack_bits
from bep_gpu.bep_mlp import StepRules, reinforcement_thresholds, train_step
from bep_gpu.mlp import init_hidden
from bep_gpu.prototypes import make_prototypes

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
from baselines.dense_bep import dense_step  # noqa: E402


@pytest.mark.parametrize("sizes, gammas, batch", [([70, 35, 35], [7, 35], 13), ([130, 45, 45, 45], [15, 9, 45], 40),
                                                  ([64, 10], [5], 1)])
def test_packed_step_equals_dense_step(sizes, gammas, batch):
    rng = np.random.default_rng(sum(sizes))
    bk = get_backend("numpy")
    shapes = [(sizes[i + 1], sizes[i]) for i in range(len(sizes) - 1)]
    hidden = init_hidden(shapes, 6.0, seed=3)
    dense = [h.copy() for h in hidden]
    start = [h.copy() for h in hidden]
    protos = make_prototypes(4, sizes[-1], seed=1, sweeps=2)
    rules = StepRules.make(sizes, r=0.75, nu=0.3, clip=40)
    thresholds = reinforcement_thresholds(sizes[:-1], 4.0, 0.8)  # large p: reinforcement fires often
    for step in range(6):
        x = rng.choice(np.array([-1, 1], np.int8), size=(batch, sizes[0]))
        y = rng.integers(0, 4, size=batch)
        counts = train_step(bk, hidden, sizes, pack_bits(protos), pack_bits(x), y, gammas, rules, thresholds,
                            seed=9, step=step)
        ref = dense_step(np, dense, protos, x, y, gammas, rules.trigger_margin, rules.gates, thresholds,
                         rules.clip, seed=9, step=step)
        assert tuple(int(c) for c in counts) == ref
        for a, b in zip(hidden, dense):
            assert np.array_equal(a, b)
    assert all(not np.array_equal(a, b) for a, b in zip(hidden, start)), "the steps must change every layer"
