"""The data-parallel MLP and RNN steps (ranks as threads of this process, test_distributed.ThreadComm) equal one
NumPy process bit for bit on every backend: uneven shards and a rank without rows. (test_distributed and
test_rnn run more splits, both stabilities and both RNN masks on NumPy.)"""
import threading

import numpy as np
import pytest

from bep_gpu import bep_mlp, bep_rnn, pack_bits
from bep_gpu.backends.numpy_backend import NumpyBackend
from bep_gpu.distributed import shard
from bep_gpu.mlp import init_hidden
from bep_gpu.prototypes import make_prototypes
from conftest import BACKENDS, make_backend, needs_emulator
from test_distributed import ThreadComm

NB = NumpyBackend()


# The product implementation never reaches the data-parallel path (update sums, one all-reduce, apply), so the
# tensor-core variant of the emulated backend would repeat cuda-emu here at the emulator's cost.
@pytest.fixture(scope="module", params=[pytest.param(n, marks=needs_emulator if n != "numpy" else ())
                                        for n in BACKENDS if n != "cuda-emu-tc"])
def dp_bk(request):
    return make_backend(request.param)


def run_mlp_steps(bk, stability, batches, comm=None):
    sizes, seed = [70, 20, 15], 11
    hidden = [bk.asarray(h) for h in init_hidden([(20, 70), (15, 20)], 3.0, seed)]
    protos = bk.asarray(pack_bits(make_prototypes(4, sizes[-1], seed, 1.0, 2)))
    rules = bep_mlp.StepRules.make(sizes, 0.75, 0.2, 40, stability)  # small clip: the clip matters
    thresholds = bep_mlp.reinforcement_thresholds(sizes[:-1], 0.5, 1.0)
    all_counts = []
    for step, (x, y) in enumerate(batches):
        lo, hi = shard(len(y), comm.rank, comm.size) if comm is not None else (0, len(y))
        counts = bep_mlp.train_step(bk, hidden, sizes, protos, bk.asarray(x[lo:hi]), bk.asarray(y[lo:hi]), [5, 5],
                                    rules, thresholds, seed, step, comm=comm)
        all_counts.append(bk.to_numpy(counts).tolist())
    return {str(i): bk.to_numpy(h) for i, h in enumerate(hidden)}, all_counts


def run_rnn_steps(bk, rnn_mask, batches, comm=None):
    kx, ks, ky, seed = 20, 35, 35, 5  # widths off the word edges, groups of 7
    hidden = [bk.asarray(h) for h in init_hidden([(ks, kx), (ks, ks), (ky, ks)], 4.0, seed)]
    protos = bk.asarray(pack_bits(make_prototypes(3, ky, seed, 1.0, 2)))
    rules = bep_rnn.step_rules([kx, ks, ky], 0.75, 0.3, 50)
    thresholds = bep_mlp.reinforcement_thresholds([kx, ks, ks], 2.0, 1.0)
    all_counts = []
    for step, (x, y) in enumerate(batches):
        lo, hi = shard(len(y), comm.rank, comm.size) if comm is not None else (0, len(y))
        counts = bep_rnn.train_step(bk, hidden, [kx, ks, ky], protos, bk.asarray(x[lo:hi]), bk.asarray(y[lo:hi]),
                                    [7, 7], rules, 0, rnn_mask == "shared", thresholds, seed, step, comm=comm)
        all_counts.append(bk.to_numpy(counts).tolist())
    return {name: bk.to_numpy(h) for name, h in zip(("xs", "ss", "sy"), hidden)}, all_counts


def in_ranks(size, run):
    """run(comm) in `size` thread ranks; their results in rank order (every thread must have finished)."""
    slots, barrier, out = [None] * size, threading.Barrier(size), [None] * size

    def rank_main(r):
        out[r] = run(ThreadComm(slots, barrier, r))

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(size)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
        assert not th.is_alive(), "a rank did not finish"
    assert all(o is not None for o in out), "a rank failed"
    return out


def same_run(got, want):
    hidden, counts = got[:2]
    assert counts == want[1]
    assert hidden.keys() == want[0].keys()
    for name in want[0]:
        np.testing.assert_array_equal(hidden[name], want[0][name])


def test_mlp_data_parallel_step_equals_one_numpy_process(dp_bk):
    rng = np.random.default_rng(11)
    # 5 rows over 3 ranks (1, 2, 2), then 2 rows over 3 (a rank without rows); stability "hidden" adds int_matmul
    batches = [(pack_bits(np.where(rng.random((b, 70)) < 0.5, 1, -1)), rng.integers(0, 4, b)) for b in (5, 2)]
    want = run_mlp_steps(NB, "hidden", batches)
    assert any(c[1] for c in want[1])  # the update paths ran
    for got in in_ranks(3, lambda comm: run_mlp_steps(dp_bk, "hidden", batches, comm)):
        same_run(got, want)


@pytest.mark.parametrize("rnn_mask", ["step", "shared"])
def test_rnn_data_parallel_step_equals_one_numpy_process(dp_bk, rnn_mask):
    rng = np.random.default_rng(12)
    # 9 rows of 3 steps over 2 ranks (4, 5), then 1 row (a rank without rows)
    batches = [(pack_bits(np.where(rng.random((b, 3, 20)) < 0.5, 1, -1)), rng.integers(0, 3, b)) for b in (9, 1)]
    want = run_rnn_steps(NB, rnn_mask, batches)
    assert any(c[1] for c in want[1])
    for got in in_ranks(2, lambda comm: run_rnn_steps(dp_bk, rnn_mask, batches, comm)):
        same_run(got, want)
