"""scripts/target_probe.py reads a trained run's targets as a training step makes them (checked against the dense
reference of tests/conv_reference.py) and measures how far a filter can reach them."""
import json

import numpy as np
import pytest

from conftest import script_module
from conv_reference import conv_z, input_targets, sgn


def _probe_module():
    return script_module("target_probe")


def _images(path, rng, n=120, shape=(7, 6), classes=3):
    y = rng.integers(0, classes, n)
    x = (rng.normal(size=(n,) + shape) + 0.9 * y[:, None, None]).astype(np.float32)
    np.savez(path, x_train=x[:80], y_train=y[:80], x_test=x[80:], y_test=y[80:])


def _class_template(t, y):
    """Mean over units of |class mean of t|, over the classes: (samples, ...) targets."""
    return np.mean([np.abs(t[y == c].mean(0)).mean() for c in np.unique(y)])


def _reference(model_path, data_path, nu):
    """Per layer (wrong fraction, class template, held-out agreement of the current outputs), by the dense
    reference: conv 5:3:1:1 then 4:3:2:1, dense 9; the held-out half is the second half of the test images."""
    with np.load(model_path) as z:
        w = [sgn(z[f"hidden.{i}"]) for i in range(3)]
        protos, thr = z["prototypes"].astype(np.int64), float(z["encoder.thresholds"].ravel()[0])
    with np.load(data_path) as d:
        x, y = sgn(d["x_test"][..., None] - thr - 1e-9), d["y_test"]  # median bit: x > threshold
    z0 = conv_z(x, w[0], 1, 1)
    z1 = conv_z(sgn(z0), w[1], 2, 1)
    a1 = sgn(z1)
    z2 = a1.reshape(len(x), -1) @ w[2].T
    t2 = protos[y]
    t1 = sgn((t2 * (np.abs(z2) <= np.floor(nu * w[2].shape[1]))) @ w[2]).reshape(a1.shape)
    gt1 = t1 * (np.abs(z1) <= np.floor(nu * w[1][0].size))
    t0 = input_targets(w[1], gt1, z0.shape[1], z0.shape[2], 2, 1)
    half = len(x) // 2
    return [(float((a != t).mean()), _class_template(t, y), float((a[half:] == t[half:]).mean()))
            for a, t in ((sgn(z0), t0), (a1, t1), (sgn(z2), t2))]


@pytest.mark.parametrize("nu", [None, 0.05])
def test_probe_matches_the_dense_reference(tmp_path, nu):
    from bep_gpu.cli.train import main as train

    _images(tmp_path / "d.npz", np.random.default_rng(0))
    run = tmp_path / "run"
    assert train(["conv", "--dataset", f"npz:{tmp_path / 'd.npz'}", "--conv", "5:3:1:1,4:3:2:1", "--hidden", "9",
                  "--gamma0", "5,4,3", "--epochs", "2", "--batch-size", "20", "--backend", "numpy", "--quiet",
                  "--val-fraction", "0", "--out", str(run)]) == 0
    assert _probe_module().main([str(run)] + ([] if nu is None else ["--nu", str(nu)])) == 0
    out = json.loads((run / ("target_probe.json" if nu is None else f"target_probe_nu{nu:g}.json")).read_text())
    assert out["samples"] == 40 and [r["kind"] for r in out["layers"]] == ["conv", "conv", "dense"]
    want = _reference(run / "model.npz", tmp_path / "d.npz", 0.2 if nu is None else nu)
    for row, (wrong, template, held_out) in zip(out["layers"], want):
        assert row["wrong"] == pytest.approx(wrong, abs=1e-4)
        assert row["class_template"] == pytest.approx(template, abs=1e-4)  # per sample and position, in order
        if "current_weights" in row:
            assert row["current_weights"] == pytest.approx(held_out, abs=1e-4)
    assert "reachable_least_squares" in out["layers"][0] and "reachable_least_squares" not in out["layers"][2]
    assert out["layers"][0]["gate"] is None and out["layers"][2]["gate"] == int((0.2 if nu is None else nu) * 48)  # 4 x 3 x 4 inputs
    acc = json.loads((run / "results.json").read_text())["test_accuracy"]
    assert out["test_accuracy_of_these"] == pytest.approx(acc)


def test_reachable_finds_a_filter_that_makes_its_targets():
    probe = _probe_module()
    rng = np.random.default_rng(1)
    patches = np.where(rng.random((40, 6, 9)) < 0.5, 1.0, -1.0)
    filters = rng.normal(size=(9, 3))
    targets = np.where(patches @ filters >= 0, 1.0, -1.0)
    fit, _, now = probe.reachable(patches, targets, -targets)
    assert fit > 0.95 and now == 0.0  # the current outputs are all wrong here
    _, signs, _ = probe.reachable(patches, np.where(patches @ np.sign(filters) >= 0, 1.0, -1.0), targets)
    assert signs == 1.0  # targets a +-1 filter makes: the signs of the fit make them
    fit_random, _, _ = probe.reachable(patches, np.where(rng.random(targets.shape) < 0.5, 1.0, -1.0), targets)
    assert fit_random < 0.7  # random targets no filter can make


def test_probe_refuses_a_run_without_a_model(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        _probe_module().main([str(tmp_path)])
    assert exc.value.code == 2 and "has no model.npz" in capsys.readouterr().err


@pytest.mark.parametrize("nu", [None, 0.6])
def test_probe_reads_an_mlp_run(tmp_path, nu):
    from bep_gpu.cli.train import main as train

    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 100)
    x = (rng.normal(size=(100, 12)) + y[:, None]).astype(np.float32)
    np.savez(tmp_path / "t.npz", x_train=x[:70], y_train=y[:70], x_test=x[70:], y_test=y[70:])
    run = tmp_path / "run"
    assert train(["mlp", "--dataset", f"npz:{tmp_path / 't.npz'}", "--hidden", "7,5", "--gamma0", "1",
                  "--epochs", "2", "--backend", "numpy", "--quiet", "--val-fraction", "0", "--out", str(run)]) == 0
    assert _probe_module().main([str(run), "--samples", "30"] + ([] if nu is None else ["--nu", str(nu)])) == 0
    out = json.loads((run / ("target_probe.json" if nu is None else f"target_probe_nu{nu:g}.json")).read_text())
    with np.load(run / "model.npz") as z:
        w = [sgn(z["hidden.0"]), sgn(z["hidden.1"])]
        protos, thr = z["prototypes"].astype(np.int64), z["encoder.thresholds"].reshape(-1)
    a0 = sgn(x[70:] - thr - 1e-6)  # the per-feature median bit: x > its threshold
    z1 = a0 @ w[0].T
    z2 = sgn(z1) @ w[1].T
    t2 = protos[y[70:]]
    t1 = sgn((t2 * (np.abs(z2) <= np.floor((0.2 if nu is None else nu) * 7))) @ w[1])
    assert [r["kind"] for r in out["layers"]] == ["dense", "dense"]
    assert [r["wrong"] for r in out["layers"]] == pytest.approx(
        [float((sgn(z1) != t1).mean()), float((sgn(z2) != t2).mean())], abs=1e-4)
