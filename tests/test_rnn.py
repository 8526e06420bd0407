"""BEP-TT (docs/ALGORITHM.md section 9): backend parity of the step, learning through `bep-train rnn`, its flags."""
import json
import math
import shutil

import numpy as np
import pytest

import dense_reference as ref
from bep_gpu import bits
from bep_gpu.backends.numpy_backend import NumpyBackend
from bep_gpu.bep_mlp import reinforcement_thresholds
from bep_gpu.checkpoint import load_checkpoint
from bep_gpu.cli.train import main
from bep_gpu.config import TrainConfig
from bep_gpu.mlp import init_hidden
from bep_gpu.rnn import RNNTask
from bep_gpu.trainer import Trainer

NB = NumpyBackend()
# Kx, Ks, Ky straddle word edges; gamma 15 divides Ks and Ky.
KX, KS, KY, T, B, C = 70, 90, 75, 6, 13, 3


def run_steps(bk, rnn_mask, horizon, n_steps=3):
    """n_steps BEP-TT steps from a seeded state on backend bk: final hidden matrices, per-step counts and the
    predictions on the last batch."""
    gen = np.random.default_rng(5)
    cfg = TrainConfig(kind="rnn", hidden=[KS, KY], r=0.75, nu=0.3, rnn_mask=rnn_mask, horizon=horizon, seed=3)
    hidden = init_hidden(RNNTask.shapes(KX, cfg), 6.0, 1)
    protos = np.where(gen.random((C, KY)) < 0.5, 1, -1).astype(np.int8)
    task = RNNTask(bk, [KX, KS, KY], hidden, protos, cfg)
    thresholds = reinforcement_thresholds(task.fan_ins, 4.0, 1.0)  # large p: reinforcement fires visibly
    counts = []
    for step in range(n_steps):
        x = bits.pack_bits(np.where(gen.random((B, T, KX)) < 0.5, 1, -1))
        y = gen.integers(0, C, size=B)
        counts.append(bk.to_numpy(task.step(bk.asarray(x), bk.asarray(y), [15, 15], thresholds, step)).tolist())
    return task.hidden_arrays(), counts, task.predict(bk.asarray(x))


@pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulator needs g++")
# horizon 0 with both masks runs on the emulated kernels in test_data_parallel (as the ranks of data-parallel steps)
@pytest.mark.parametrize("rnn_mask, horizon", [("step", 2), ("shared", 1)])
def test_step_same_on_numpy_and_emulated_cuda(rnn_mask, horizon):
    import emu
    cb = emu.make_emulated_backend()
    h_np, c_np, p_np = run_steps(NB, rnn_mask, horizon)
    h_cu, c_cu, p_cu = run_steps(cb, rnn_mask, horizon)
    for name in ("xs", "ss", "sy"):
        np.testing.assert_array_equal(h_np[name], h_cu[name])
    np.testing.assert_array_equal(np.array(c_np), np.array(c_cu))
    np.testing.assert_array_equal(np.asarray(p_np), cb.to_numpy(p_cu))
    assert any(c[1] for c in c_np)  # some samples triggered, so the update paths ran


def dense_step(hidden, protos, x, y, gammas, cfg, thresholds, step):
    """docs/ALGORITHM.md section 9 read literally, one sample at a time on +-1 integers (1-based time as in the spec)."""
    hxs, hss, hsy = (h.astype(np.int64) for h in hidden)
    wxs, wss, wsy = (ref.sgn(h) for h in hidden)
    n, steps, kx = x.shape
    ks, ky = hss.shape[0], hsy.shape[0]
    h = cfg.horizon or steps
    deltas = [np.zeros_like(m) for m in (hxs, hss, hsy)]
    wrong = triggered = 0
    for mu in range(n):
        s, z = {0: np.ones(ks, dtype=np.int64)}, {}
        for t in range(1, steps + 1):
            z[t] = wxs @ x[mu, t - 1] + wss @ s[t - 1]
            s[t] = ref.sgn(z[t])
        z_y = wsy @ s[steps]
        s_y = ref.sgn(z_y)
        logits = protos.astype(np.int64) @ s_y
        c = y[mu]
        wrong += int(np.argmax(logits) != c)
        if logits[c] - np.delete(logits, c).max() >= math.ceil(cfg.r * ky):
            continue
        triggered += 1
        tgt = {steps: ref.sgn(wsy.T @ ((np.abs(z_y) <= math.floor(cfg.nu * ks)) * protos[c]))}
        for t in range(steps, steps - h + 1, -1):
            tgt[t - 1] = ref.sgn(wss.T @ ((np.abs(z[t]) <= math.floor(cfg.nu * (kx + ks))) * tgt[t]))
        span = range(steps - h + 1, steps + 1)
        if cfg.rnn_mask == "shared":
            count = sum((s[t] != tgt[t]).astype(np.int64) for t in span)
            total = sum(np.abs(z[t]) for t in span)
            m = np.zeros(ks, dtype=np.int64)
            for g0 in range(0, ks, gammas[0]):
                cands = [j for j in range(g0, g0 + gammas[0]) if count[j] > 0]
                if cands:
                    m[min(cands, key=lambda j: (-count[j], total[j], j))] = 1
            masks = {t: m for t in span}
        else:
            masks = {t: ref.group_select(np.abs(z[t])[None], (s[t] != tgt[t])[None], gammas[0])[0] for t in span}
        for t in span:
            d = masks[t] * tgt[t]
            deltas[0] += np.outer(d, x[mu, t - 1])
            deltas[1] += np.outer(d, s[t - 1])
        m_y = ref.group_select(np.abs(z_y)[None], (s_y != protos[c])[None], gammas[1])[0]
        deltas[2] += np.outer(m_y * protos[c], s[steps])
    new = [np.clip(m + 2 * d, -cfg.hidden_clip, cfg.hidden_clip).astype(np.int16)
           for m, d in zip((hxs, hss, hsy), deltas)]
    if triggered:
        new = [ref.reinforce(m, thresholds[i], cfg.seed, 1, step, i, cfg.hidden_clip) for i, m in enumerate(new)]
    return new, [wrong, triggered]


@pytest.mark.parametrize("rnn_mask, horizon", [("step", 0), ("step", 3), ("shared", 0), ("shared", 2)])
def test_step_equals_dense_reading_of_the_spec(rnn_mask, horizon):
    gen = np.random.default_rng(9)
    cfg = TrainConfig(kind="rnn", hidden=[KS, KY], r=0.75, nu=0.3, rnn_mask=rnn_mask, horizon=horizon, seed=4,
                      hidden_clip=60)  # small clip: the single clip after the int32 sum matters
    hidden = init_hidden(RNNTask.shapes(KX, cfg), 6.0, 2)
    protos = np.where(gen.random((C, KY)) < 0.5, 1, -1).astype(np.int8)
    task = RNNTask(NB, [KX, KS, KY], hidden, protos, cfg)
    thresholds = reinforcement_thresholds(task.fan_ins, 0.5, 1.0)
    expect = [h.copy() for h in hidden]
    for step in range(2):
        x = np.where(gen.random((B, T, KX)) < 0.5, 1, -1).astype(np.int64)
        y = gen.integers(0, C, size=B)
        expect, counts = dense_step(expect, protos, x, y, [15, 15], cfg, thresholds, step)
        assert task.step(bits.pack_bits(x), y, [15, 15], thresholds, step).tolist() == counts
        assert counts[1]  # the update paths ran
    for got, want in zip(task.hidden_arrays().values(), expect):
        np.testing.assert_array_equal(got, want)


def test_step_changes_all_three_matrices():
    init = init_hidden(RNNTask.shapes(KX, TrainConfig(kind="rnn", hidden=[KS, KY])), 6.0, 1)
    h, _, _ = run_steps(NB, "step", 0)
    for name, h0 in zip(("xs", "ss", "sy"), init):
        assert h[name].dtype == np.int16 and h[name].shape == h0.shape and not np.array_equal(h[name], h0)


def majority_npz(path, n=1200, steps=5, seed=0):
    """Label = majority sign of `steps` +-1 inputs: needs the state to accumulate evidence over time."""
    gen = np.random.default_rng(seed)
    x = gen.choice([-1.0, 1.0], size=(n, steps, 1))
    y = (x.sum(axis=(1, 2)) > 0).astype(np.int64)
    k = n * 5 // 6
    np.savez(path, x_train=x[:k], y_train=y[:k], x_test=x[k:], y_test=y[k:])
    return f"npz:{path}"


SMALL = ["--encode", "sign", "--expand", "60", "--hidden", "60", "--gamma0", "15", "--batch-size", "20",
         "--backend", "numpy", "--quiet"]


@pytest.fixture(scope="module")
def majority(tmp_path_factory):
    return majority_npz(tmp_path_factory.mktemp("data") / "majority.npz")


@pytest.fixture(scope="module")
def full_run(majority, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    assert main(["rnn", "--dataset", majority, "--epochs", "8", "--out", str(out)] + SMALL) == 0
    return out


def test_learns_majority_far_above_chance(full_run):
    assert json.loads((full_run / "results.json").read_text())["test_accuracy"] > 0.75  # chance 0.5


def test_checkpoint_and_eval_path(full_run, majority):
    data = load_checkpoint(str(full_run / "model.npz"), kind="rnn")
    assert data["hidden.xs"].shape == (60, 60) and data["hidden.ss"].shape == (60, 60)
    assert data["hidden.sy"].shape == (60, 60) and data["encoder.expand"].shape == (60, 1)
    cfg = json.loads((full_run / "config.json").read_text())
    assert cfg["expand"] == 60 and cfg["batch_size"] == 20
    # What an evaluator does: rebuild encoder and task from the checkpoint alone, predict on packed (N, T, Kw).
    enc = Trainer._encoder_from(data)
    hidden = RNNTask.hidden_from_checkpoint(data)
    task = RNNTask(NB, RNNTask.sizes_from(hidden), hidden, data["prototypes"], TrainConfig.from_dict(cfg))
    with np.load(majority[4:]) as z:
        x, y = z["x_test"], z["y_test"]
    acc = (task.predict(NB.pack(enc.transform(x))) == y).mean()
    assert acc == json.loads((full_run / "results.json").read_text())["test_accuracy"]


def test_horizon_one_differs_from_full(full_run, majority, tmp_path):
    assert main(["rnn", "--dataset", majority, "--epochs", "8", "--horizon", "1", "--out", str(tmp_path)] + SMALL) == 0
    a, b = np.load(full_run / "model.npz"), np.load(tmp_path / "model.npz")
    assert not np.array_equal(a["hidden.xs"], b["hidden.xs"])
    assert json.loads((tmp_path / "results.json").read_text())["test_accuracy"] > 0.75


def test_shared_mask_runs(majority, tmp_path):
    assert main(["rnn", "--dataset", majority, "--epochs", "2", "--rnn-mask", "shared", "--out", str(tmp_path)]
                + SMALL) == 0
    assert json.loads((tmp_path / "config.json").read_text())["rnn_mask"] == "shared"


@pytest.mark.parametrize("max_train, batch", [(1000, 20), (150, 15), (5, 1)])
def test_batch_size_zero_is_a_tenth_up_to_20(max_train, batch, majority, tmp_path):
    args = [a for a in SMALL if a not in ("--batch-size", "20")]
    assert main(["rnn", "--dataset", majority, "--epochs", "1", "--val-fraction", "0", "--max-train", str(max_train),
                 "--out", str(tmp_path)] + args) == 0
    assert json.loads((tmp_path / "config.json").read_text())["batch_size"] == batch


def test_resume_reuses_the_expansion(majority, tmp_path):
    assert main(["rnn", "--dataset", majority, "--epochs", "1", "--out", str(tmp_path)] + SMALL) == 0
    first = np.load(tmp_path / "checkpoint.npz")["encoder.expand"]
    assert main(["rnn", "--resume", str(tmp_path), "--epochs", "2", "--quiet"]) == 0
    assert np.array_equal(np.load(tmp_path / "model.npz")["encoder.expand"], first)


@pytest.mark.parametrize("args, message", [
    (["--horizon", "9"], "--horizon 9 exceeds the 5 steps"),
    (["--horizon", "-1"], "--horizon"),
    (["--window", "6"], "window must be between 1 and the series length 5"),
    (["--window", "-2"], "--window"),
    (["--expand", "-1"], "--expand"),
    (["--rnn-mask", "sometimes"], "--rnn-mask"),
    (["--hidden", "60,60,60"], "KS or KS,KY"),
    (["--gamma0", "7"], "does not divide layer width 60"),
    (["--batch-size", "-1"], "--batch-size"),
    (["--stability", "hidden"], "--stability hidden is for mlp: the RNN ranks wrong units by |z_t|"),
    (["--stability", "flips"], "--stability flips is for mlp and conv: the RNN ranks wrong units by |z_t|"),
    (["--dataset", "prototypes"], "not a sequence dataset"),
])
def test_bad_rnn_flags_fail_with_one_line(args, message, majority, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["rnn", "--dataset", majority, "--out", str(out), "--epochs", "1"] + SMALL + args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and message in err[0] and err[0].startswith("bep-train: error:")
    assert not (out / "model.npz").exists()


def test_the_default_dataset_needs_no_other_package(tmp_path, capsys, monkeypatch):
    """bep-train rnn's default, ucr:ItalyPowerDemand, ships with bep-gpu: it trains with sktime out of reach; its
    validation split of 7 series is said to be small, in one line."""
    from bep_gpu.data import sources

    monkeypatch.setattr(sources, "_package_dir", lambda package: None)  # no sktime (nor any other package)
    assert main(["rnn", "--hidden", "30", "--gamma0", "15", "--expand", "30", "--epochs", "1", "--backend", "numpy",
                 "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "on ucr:ItalyPowerDemand (60 train + 7 validation samples;" in err
    assert "note: the validation split holds only 7 samples (--val-fraction 0.1)" in err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["dataset"] == "ucr:ItalyPowerDemand" and config["n_steps"] == 24
