"""End-to-end MLP training through the CLI: files per docs/CLI.md, learning, --init, and early flag errors."""
import json

import numpy as np
import pytest

from bep_gpu.checkpoint import load_checkpoint
from bep_gpu.cli.train import main

SMALL = ["--max-train", "5000", "--hidden", "45,45", "--gamma0", "15", "--backend", "numpy", "--quiet"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["mlp", "--epochs", "3", "--out", str(out)] + SMALL) == 0
    return out


def test_run_writes_contract_files(small_run):
    cfg = json.loads((small_run / "config.json").read_text())
    assert cfg["hidden"] == [45, 45] and cfg["gamma0"] == 15 and cfg["encode"] == "sign"
    rows = (small_run / "metrics.csv").read_text().strip().splitlines()
    assert rows[0].startswith("epoch,") and len(rows) == 4
    res = json.loads((small_run / "results.json").read_text())
    for key in ("test_accuracy", "wall_time_s", "samples_per_s", "backend", "device"):
        assert key in res
    data = load_checkpoint(str(small_run / "model.npz"), kind="mlp")
    assert str(data["format"]) == "bep-gpu" and int(data["version"]) == 1
    assert data["prototypes"].dtype == np.int8 and data["prototypes"].shape == (10, 45)
    assert data["hidden.0"].dtype == np.int16 and data["hidden.0"].shape == (45, 1000)
    assert data["hidden.1"].shape == (45, 45)


def test_small_run_learns(small_run):
    res = json.loads((small_run / "results.json").read_text())
    assert res["test_accuracy"] > 0.3  # chance is 0.1


def test_same_seed_same_model(small_run, tmp_path):
    assert main(["mlp", "--epochs", "3", "--out", str(tmp_path)] + SMALL) == 0
    a, b = np.load(small_run / "model.npz"), np.load(tmp_path / "model.npz")
    for key in ("hidden.0", "hidden.1", "prototypes"):
        assert np.array_equal(a[key], b[key])


def test_init_from_minimal_checkpoint(small_run, tmp_path):
    full = np.load(small_run / "model.npz")
    minimal = tmp_path / "min.npz"
    np.savez(minimal, format="bep-gpu", version=1, kind="mlp", config="{}", prototypes=full["prototypes"],
             **{"hidden.0": full["hidden.0"], "hidden.1": full["hidden.1"]})
    out = tmp_path / "cont"
    assert main(["mlp", "--epochs", "0", "--init", str(minimal), "--out", str(out)] + SMALL[:2] + SMALL[4:]) == 0
    cont = np.load(out / "model.npz")
    assert np.array_equal(cont["hidden.1"], full["hidden.1"])
    assert json.loads((out / "config.json").read_text())["hidden"] == [45, 45]


@pytest.mark.parametrize("args, message", [
    (["--gamma0", "7"], "does not divide layer width 45"),
    (["--dataset", "nosuch"], "nosuch"),
    (["--dataset", "npz:/nonexistent/file.npz"], "/nonexistent/file.npz"),
    (["--batch-size", "0"], "--batch-size"),
    (["--hidden", "4x"], "--hidden"),
])
def test_bad_flags_fail_with_one_line(args, message, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["mlp", "--out", str(out), "--hidden", "45,45", "--gamma0", "15", "--backend", "numpy", "--quiet"] + args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and message in err[0] and err[0].startswith("bep-train: error:")
    assert not (out / "model.npz").exists()
