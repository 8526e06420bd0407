"""Data-parallel training equals one process bit for bit: the split update primitives against the dense reference,
the data-parallel step with in-process (thread) ranks, and mpirun runs of bep-train (skipped without Open MPI
and mpi4py), including a rank that dies or hangs."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import dense_reference as ref
from bep_gpu import bep_mlp, pack_bits
from bep_gpu.backends.base import Backend
from bep_gpu.backends.numpy_backend import NumpyBackend
from bep_gpu.distributed import Communicator, SingleProcess, StepReduction, make_communicator, shard
from bep_gpu.errors import UserError
from bep_gpu.mlp import init_hidden
from bep_gpu.prototypes import make_prototypes

B = NumpyBackend()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pm1(rng, *shape):
    return np.where(rng.random(shape) < 0.5, 1, -1).astype(np.int8)


# --- the split update primitives ----------------------------------------------------------------------------------
@pytest.mark.parametrize("impl", ["numpy", "generic"])
@pytest.mark.parametrize("n,k,j", [(0, 3, 5), (1, 1, 1), (7, 64, 65), (33, 70, 129)])
def test_update_delta_and_apply_delta_match_dense_reference(impl, n, k, j):
    rng = np.random.default_rng(n * 1000 + k + j)
    sel, t, x = rng.random((n, k)) < 0.3, pm1(rng, n, k), pm1(rng, n, j)
    words = pack_bits(sel), pack_bits(t), pack_bits(x)
    update_delta = B.update_delta if impl == "numpy" else lambda *a, **kw: Backend.update_delta(B, *a, **kw)
    delta = update_delta(*words, k, j)
    expect = (sel * t.astype(np.int64)).T @ x.astype(np.int64)
    assert delta.dtype == np.int32 and np.array_equal(delta, expect)
    buf = np.full(k * j + 3, 99, dtype=np.int32)  # out= writes exactly its view of a larger buffer
    assert update_delta(*words, k, j, out=buf[1:1 + k * j].reshape(k, j)) is not None
    assert np.array_equal(buf[1:1 + k * j].reshape(k, j), expect) and buf[0] == buf[-1] == 99
    h = rng.integers(-100, 101, size=(k, j)).astype(np.int16)
    expect_h = ref.batch_update(h, sel, t, x, 90)  # small clip: the clip is exercised
    B.apply_delta(h, delta, 90)
    assert h.dtype == np.int16 and np.array_equal(h, expect_h)


def test_partial_deltas_sum_to_the_whole_batch_and_clip_once():
    rng = np.random.default_rng(5)
    n, k, j, clip = 40, 6, 9, 25  # a small clip that the sum crosses: clipping partial updates would differ
    sel, t, x = rng.random((n, k)) < 0.9, np.ones((n, k), np.int8), np.ones((n, j), np.int8)
    h = np.zeros((k, j), np.int16)
    total = sum(B.update_delta(pack_bits(sel[lo:hi]), pack_bits(t[lo:hi]), pack_bits(x[lo:hi]), k, j)
                for lo, hi in (shard(n, r, 3) for r in range(3)))
    B.apply_delta(h, total, clip)
    assert np.array_equal(h, ref.batch_update(np.zeros((k, j), np.int16), sel, t, x, clip))


def test_apply_delta_saturates_at_int16_limits():
    h = np.array([[32767, -32767, 0]], dtype=np.int16)
    B.apply_delta(h, np.array([[5, -5, 20000]], dtype=np.int32), 32767)
    assert h.tolist() == [[32767, -32767, 32767]]


# --- sharding and selection ------------------------------------------------------------------------------------
def test_shard_covers_the_batch_in_rank_order():
    for n in range(0, 25):
        for size in range(1, 6):
            parts = [shard(n, r, size) for r in range(size)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            assert max(hi - lo for lo, hi in parts) - min(hi - lo for lo, hi in parts) <= 1


def test_make_communicator(monkeypatch):
    for var in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert isinstance(make_communicator("auto", 1.0), SingleProcess)  # not under a launcher
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "1")
    assert isinstance(make_communicator("auto", 1.0), SingleProcess)
    assert isinstance(make_communicator("none", 1.0), SingleProcess)
    with pytest.raises(UserError):
        make_communicator("gloo", 1.0)


# --- the data-parallel step with thread ranks ------------------------------------------------------------------
class ThreadComm(Communicator):
    """size ranks as threads of one process: sums in rank order through a shared list."""

    def __init__(self, slots, barrier, rank):
        self.slots, self._barrier, self.rank, self.size = slots, barrier, rank, len(slots)
        self.bytes = 0

    def allreduce_sum(self, buf):
        self.slots[self.rank] = buf.copy()
        self._barrier.wait(timeout=30)
        total = sum(self.slots[1:], self.slots[0].copy())
        self._barrier.wait(timeout=30)
        buf[...] = total
        self.bytes += buf.nbytes
        return buf

    def barrier(self):
        self._barrier.wait(timeout=30)


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


def run_steps(sizes, stability, batches, seed, comm=None, bk=B, frozen=()):
    """Steps from a seeded state on backend bk: the final hidden matrices (NumPy) and the per-step counts."""
    hidden = [bk.asarray(h) for h in init_hidden([(sizes[i + 1], sizes[i]) for i in range(len(sizes) - 1)], 3.0, seed)]
    protos = bk.asarray(pack_bits(make_prototypes(4, sizes[-1], seed, 1.0, 2)))
    rules = bep_mlp.StepRules.make(sizes, 0.75, 0.2, 40, stability, frozen)  # small clip: the clip matters
    thresholds = bep_mlp.reinforcement_thresholds(sizes[:-1], 0.5, 1.0)
    all_counts = []
    for step, (x, y) in enumerate(batches):
        if comm is not None:
            lo, hi = shard(len(y), comm.rank, comm.size)
            x, y = x[lo:hi], y[lo:hi]
        counts = bep_mlp.train_step(bk, hidden, sizes, protos, bk.asarray(x), bk.asarray(y), [5] * (len(sizes) - 1),
                                    rules, thresholds, seed, step, comm=comm)
        all_counts.append(bk.to_numpy(counts).tolist())
    return [bk.to_numpy(h) for h in hidden], all_counts


@pytest.mark.parametrize("size,batch", [(2, 16), (3, 20), (4, 2)])  # uneven splits; (4, 2): ranks without rows
@pytest.mark.parametrize("stability", ["z", "flips", "hidden"])
def test_data_parallel_step_equals_one_process(size, batch, stability):
    sizes, seed = [70, 20, 15], 11
    rng = np.random.default_rng(seed)
    batches = [(pack_bits(pm1(rng, batch, sizes[0])), rng.integers(0, 4, batch)) for _ in range(6)]
    expect = run_steps(sizes, stability, batches, seed)
    for hidden, counts in in_ranks(size, lambda comm: run_steps(sizes, stability, batches, seed, comm)):
        assert counts == expect[1]
        assert all(np.array_equal(a, b) for a, b in zip(hidden, expect[0]))


def test_step_reduction_is_one_buffer_of_int32_per_weight_plus_counts():
    red = StepReduction(B, [(525, 784), (525, 525)])
    assert red.nbytes == 4 * (525 * 784 + 525 * 525 + 2)
    assert [d.shape for d in red.deltas] == [(525, 784), (525, 525)] and red.counts.shape == (2,)


# --- real processes under mpirun -----------------------------------------------------------------------------------
def _open_mpi() -> bool:
    if shutil.which("mpirun") is None or importlib.util.find_spec("mpi4py") is None:
        return False
    out = subprocess.run(["mpirun", "--version"], capture_output=True, text=True)
    return "Open MPI" in out.stdout + out.stderr or "OpenRTE" in out.stdout + out.stderr


needs_mpi = pytest.mark.skipif(not _open_mpi(), reason="needs Open MPI's mpirun and mpi4py")
# 1002 samples -> 902 training rows: 45 batches of 20 and one of 2, which 3 ranks split 0/1/1.
TRAIN_ARGS = ["--dataset", "prototypes", "--max-train", "1002", "--hidden", "35,35", "--gamma0", "7", "--epochs", "2",
              "--batch-size", "20", "--backend", "numpy", "--quiet"]


def mpirun(n, out, extra=(), env_extra=None, timeout=120, args=("mlp", *TRAIN_ARGS)):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]), **(env_extra or {}))
    cmd = ["mpirun", "--oversubscribe", "-n", str(n), sys.executable, "-m", "bep_gpu", "train", *args,
           "--out", str(out), *extra]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - t0


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    from bep_gpu.cli.train import main

    out = tmp_path_factory.mktemp("single")
    assert main(["mlp", *TRAIN_ARGS, "--out", str(out), "--distributed", "none"]) == 0
    return out


def assert_same_model(a_dir, b_dir, processes):
    a, b = np.load(a_dir / "model.npz"), np.load(b_dir / "model.npz")
    assert sorted(a.files) == sorted(b.files)
    for name in a.files:
        if name != "config":
            assert np.array_equal(a[name], b[name]), name
    ca, cb = json.loads(str(a["config"])), json.loads(str(b["config"]))
    assert cb["processes"] == processes
    differ = {k for k in set(ca) | set(cb) if ca.get(k) != cb.get(k)}
    assert differ <= {"out", "processes", "distributed"}, differ


@needs_mpi
@pytest.mark.parametrize("n", [3])  # 3 ranks: uneven shards and, in the last batch, a rank without rows (2: the RNN's)
def test_mpirun_training_equals_one_process(n, single_run, tmp_path):
    proc, _ = mpirun(n, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_same_model(single_run, tmp_path, n)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["processes"] == n
    assert results["test_accuracy"] == json.loads((single_run / "results.json").read_text())["test_accuracy"]


@needs_mpi
def test_mpirun_rnn_training_equals_one_process(tmp_path):
    from bep_gpu.cli.train import main

    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 130)
    x = rng.normal(size=(130, 5, 2)) + 0.5 * y[:, None, None]
    np.savez(tmp_path / "seq.npz", x_train=x[:100], y_train=y[:100], x_test=x[100:], y_test=y[100:])
    # 90 training rows: 5 batches of 16 and one of 10, each split 8/8 (5/5) over 2 ranks; the shared mask
    args = ["rnn", "--dataset", f"npz:{tmp_path / 'seq.npz'}", "--hidden", "20", "--gamma0", "5", "--epochs", "2",
            "--batch-size", "16", "--rnn-mask", "shared", "--encode", "thermometer:2", "--backend", "numpy", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "one"), "--distributed", "none"]) == 0
    proc, _ = mpirun(2, tmp_path / "two", args=args)
    assert proc.returncode == 0, proc.stderr
    assert_same_model(tmp_path / "one", tmp_path / "two", 2)
    assert json.loads((tmp_path / "two" / "results.json").read_text())["test_accuracy"] == json.loads(
        (tmp_path / "one" / "results.json").read_text())["test_accuracy"]


@needs_mpi
def test_a_rank_that_exits_ends_the_job(tmp_path):
    proc, took = mpirun(2, tmp_path, env_extra={"BEP_DIST_FAULT": "1:5:exit"})
    assert proc.returncode != 0 and took < 60
    assert not (tmp_path / "model.npz").exists()


@needs_mpi
def test_a_rank_that_hangs_ends_the_job_after_the_timeout(tmp_path):
    proc, took = mpirun(3, tmp_path, ["--dist-timeout", "3"], env_extra={"BEP_DIST_FAULT": "2:5:hang"})
    assert proc.returncode != 0 and took < 60
    assert "within 3 s: a process died or hangs" in proc.stderr
    assert not (tmp_path / "model.npz").exists()
