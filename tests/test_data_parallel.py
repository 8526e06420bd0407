"""The data-parallel MLP and RNN steps (ranks as threads of this process, test_distributed.ThreadComm) equal one
NumPy process bit for bit on every backend: uneven shards, a rank without rows, both RNN masks.
(test_distributed runs more MLP splits, with both stabilities, on NumPy.)"""
import numpy as np
import pytest

from bep_gpu import bep_mlp, bep_rnn, pack_bits
from bep_gpu.backends.numpy_backend import NumpyBackend
from bep_gpu.distributed import shard
from bep_gpu.mlp import init_hidden
from bep_gpu.prototypes import make_prototypes
from conftest import BACKENDS, make_backend, needs_emulator
from test_distributed import in_ranks, run_steps as run_mlp_steps

NB = NumpyBackend()
MLP_SIZES = [70, 20, 15]


# The product implementation never reaches the data-parallel path (update sums, one all-reduce, apply), so the
# tensor-core variant of the emulated backend would repeat cuda-emu here at the emulator's cost.
@pytest.fixture(scope="module", params=[pytest.param(n, marks=needs_emulator if n.startswith("cuda") else ())
                                        for n in BACKENDS if n != "cuda-emu-tc"])
def dp_bk(request):
    return make_backend(request.param)


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
    return [bk.to_numpy(h) for h in hidden], all_counts


def same_run(got, want):
    hidden, counts = got
    assert counts == want[1]
    assert len(hidden) == len(want[0])
    for h, w in zip(hidden, want[0]):
        np.testing.assert_array_equal(h, w)


def test_mlp_data_parallel_step_equals_one_numpy_process(dp_bk):
    rng = np.random.default_rng(11)
    # 5 rows over 3 ranks (1, 2, 2), then 2 rows over 3 (a rank without rows); stability "hidden" adds int_matmul
    batches = [(pack_bits(np.where(rng.random((b, 70)) < 0.5, 1, -1)), rng.integers(0, 4, b)) for b in (5, 2)]
    want = run_mlp_steps(MLP_SIZES, "hidden", batches, 11)
    assert any(c[1] for c in want[1])  # the update paths ran
    for got in in_ranks(3, lambda comm: run_mlp_steps(MLP_SIZES, "hidden", batches, 11, comm, dp_bk)):
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
