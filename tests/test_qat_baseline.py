"""The QAT baseline (bep_gpu.peers.qat_torch): trains, writes its files, refuses bad input in one line."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from bep_gpu.peers import qat_torch as qat  # noqa: E402 (after the torch skip)

METRIC_COLUMNS = ["epoch", "train_loss", "train_acc", "val_acc", "test_acc", "epoch_time_s", "samples_per_s"]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _run(args):
    return qat.main([*args, "--threads", "1", "--quiet"])


def test_mlp_learns_prototypes_and_writes_outputs(tmp_path):
    out = tmp_path / "run"
    assert _run(["mlp", "--dataset", "prototypes", "--hidden", "135,135", "--epochs", "3", "--lr", "1e-2",
                 "--max-train", "4000",
                 "--out", str(out)]) == 0
    with open(out / "metrics.csv") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == METRIC_COLUMNS
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    results = json.loads((out / "results.json").read_text())
    for key in ("test_accuracy", "best_val_accuracy", "test_accuracy_at_best_val", "wall_time_s", "samples_per_s",
                "step_time_s", "backend", "device", "torch_version"):
        assert key in results
    assert results["backend"] == "torch" and results["device"] == "cpu"
    assert results["test_accuracy"] > 0.3  # 10 classes: chance is 0.1
    config = json.loads((out / "config.json").read_text())
    assert config["n_train"] == 3600 and config["n_val"] == 400 and config["k_in"] == 1000
    assert config["encode"] == "sign" and config["bn"] is True


def test_rnn_without_bn_learns_a_sequence_task(tmp_path):
    # Class = sign of the mean of the series: learnable from the thermometer bits of every step.
    rng = np.random.default_rng(0)

    def draw(n):
        y = rng.integers(0, 2, n)
        x = rng.normal(size=(n, 6, 1)) + (2.0 * y - 1)[:, None, None]
        return x, y

    (x_train, y_train), (x_test, y_test) = draw(400), draw(200)
    path = tmp_path / "seq.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    out = tmp_path / "run"
    assert _run(["rnn", "--dataset", f"npz:{path}", "--hidden", "64,32", "--encode", "thermometer:4", "--expand", "48",
                 "--no-bn",
                 "--epochs", "3", "--batch-size", "20", "--lr", "1e-2", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["test_accuracy"] > 0.7
    config = json.loads((out / "config.json").read_text())
    assert config["seq_len"] == 6 and config["k_in"] == 48 and config["hidden"] == [64, 32]


@pytest.mark.parametrize("args, words", [
    (["mlp", "--dataset", "no-such-dataset"], "no-such-dataset"),
    (["mlp", "--dataset", "prototypes", "--hidden", "35,x"], "--hidden"),
    (["mlp", "--dataset", "prototypes", "--epochs", "0"], "--epochs"),
    (["rnn", "--dataset", "prototypes", "--hidden", "3,3,3"], "KS[,KY]"),
    (["mlp", "--dataset", "prototypes", "--bf16"], "--bf16"),
    (["mlp", "--dataset", "prototypes", "--encode", "bogus"], "bogus"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, words):
    assert _run([*args, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("qat_torch.py: error:") and words in err


def test_command_line_exit_status(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-m", "bep_gpu.peers.qat_torch", "mlp", "--dataset", "prototypes", "--val-fraction", "1.5",
                           "--out", str(tmp_path)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--val-fraction" in proc.stderr


def test_time_qat_step_reports_times_and_state():
    torch.set_num_threads(1)
    r = qat.time_qat_step("rnn", 16, [32, 24], seq_len=4, batch_size=10, n_samples=50, bn=True)
    assert r["step_time_s"] > 0 and r["epoch_time_s"] > 0 and r["samples_per_s"] > 0
    assert r["n_binary_weights"] == 16 * 32 + 32 * 32 + 32 * 24
    assert r["training_state_bytes"] == 16 * r["n_binary_weights"]
    assert r["peak_memory_bytes"] is None
    r = qat.time_qat_step("mlp", 20, [16, 16], batch_size=10, n_samples=30, readout="linear")
    assert r["n_binary_weights"] == 20 * 16 + 16 * 16 + 16 * 10  # the linear readout is binary too
