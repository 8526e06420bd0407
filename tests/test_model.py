"""bep_gpu.load: prediction on raw features equals the trainer's, without CuPy; the summary's numbers; bep-summary."""
import json
import subprocess
import sys

import numpy as np
import pytest

import bep_gpu
from bep_gpu.cli.summary import main as summary_main
from bep_gpu.cli.train import main as train_main


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mlp")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    x = rng.normal(size=(400, 10)) + 0.7 * y[:, None]
    np.savez(tmp / "d.npz", x_train=x[:300], y_train=y[:300], x_test=x[300:], y_test=y[300:])
    assert train_main(["mlp", "--dataset", f"npz:{tmp / 'd.npz'}", "--hidden", "70,35", "--gamma0", "5",
                       "--encode", "thermometer:4", "--epochs", "3", "--backend", "numpy", "--quiet",
                       "--out", str(tmp / "run")]) == 0
    return tmp / "run", x[300:], y[300:]


def test_predict_matches_the_trainer(mlp_run):
    run, x, y = mlp_run
    model = bep_gpu.load(run / "model.npz")
    results = json.loads((run / "results.json").read_text())
    assert model.evaluate(x, y) == results["test_accuracy"]
    pred = model.predict(x)
    assert pred.dtype == np.int64 and pred.shape == (len(x),)
    bits = model.encode(x)
    assert bits.shape == (len(x), 40) and set(np.unique(bits)) <= {-1, 1}
    assert np.array_equal(model.predict_encoded(bits), pred)
    assert np.array_equal(model.predict_encoded(bep_gpu.pack_bits(bits)), pred)


def test_load_and_predict_never_import_cupy(mlp_run):
    run, x, _ = mlp_run
    np.save(run.parent / "x.npy", x)
    code = ("import sys; sys.modules['cupy'] = None\n"  # any `import cupy` now raises ImportError
            "import numpy as np, bep_gpu\n"
            f"m = bep_gpu.load({str(run / 'model.npz')!r})\n"
            f"print(m.predict(np.load({str(run.parent / 'x.npy')!r}))[:5].tolist(), m.bk.name)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("]")
    assert out[1].strip() == "numpy"
    assert json.loads(out[0] + "]") == bep_gpu.load(run / "model.npz").predict(x)[:5].tolist()


def test_summary_numbers(mlp_run):
    run, _, _ = mlp_run
    text = bep_gpu.load(run / "model.npz").summary()
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith(("hidden.", "prot", "Tot"))}
    # 70 x 40: rows of one uint64 word; hidden int16; forward K_out*K_in; backward = update only (input matrix)
    assert rows["hidden.0"][1:] == ["70", "x", "40", "560", "5,600", "2,800", "2,800"]
    # 35 x 70: two words per row; backward = propagation + update
    assert rows["hidden.1"][1:] == ["35", "x", "70", "560", "4,900", "2,450", "4,900"]
    assert rows["prototypes"][1:] == ["(fixed)", "3", "x", "35", "24", "0", "105", "0"]
    assert rows["Total"][1:] == ["1,144", "10,500", "5,355", "7,700"]
    f32 = 4 * (70 * 40 + 35 * 70 + 3 * 35)
    assert f"float32 equivalent {f32:,} bytes; compression {f32 / 1144:.1f}x" in text
    assert "Backend: numpy (cpu)" in text and "Encoder: thermometer:4" in text


def test_rnn_model_predicts_like_the_trainer_and_counts_steps(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 200)
    x = rng.normal(size=(200, 9, 2)) + 0.5 * y[:, None, None]
    np.savez(tmp_path / "s.npz", x_train=x[:150], y_train=y[:150], x_test=x[150:], y_test=y[150:])
    assert train_main(["rnn", "--dataset", f"npz:{tmp_path / 's.npz'}", "--hidden", "20,10", "--gamma0", "5",
                       "--encode", "thermometer:2", "--epochs", "2", "--batch-size", "15", "--backend", "numpy",
                       "--quiet", "--window", "6", "--expand", "0", "--out", str(tmp_path / "run")]) == 0
    model = bep_gpu.load(tmp_path / "run" / "model.npz")
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert model.evaluate(x[150:], y[150:]) == results["test_accuracy"]
    # the window applies to raw inputs: the first 3 of 9 steps cannot matter
    noisy = x[150:].copy()
    noisy[:, :3] = 100.0
    assert np.array_equal(model.predict(noisy), model.predict(x[150:]))
    text = model.summary()
    assert "T = 6" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith("hidden.")}
    # per use (step) and per sample: forward T uses; W_ss propagates targets T - 1 times
    assert rows["hidden.xs"][-4:] == ["80", "80", "480", "480"]
    assert rows["hidden.ss"][-4:] == ["400", "800", "2,400", "4,400"]
    assert rows["hidden.sy"][-4:] == ["200", "400", "200", "400"]
    assert "T = 3" in model.summary(steps=3)


def test_bad_inputs_to_predict(mlp_run, tmp_path):
    run, x, _ = mlp_run
    model = bep_gpu.load(run / "model.npz")
    bad = x.copy()
    bad[0, 0] = np.nan
    for args, message in [((x[:, :5],), "fitted on 10 features"), ((bad,), "NaN"), ((x[0],), "(N, F)")]:
        with pytest.raises(bep_gpu.UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
            model.predict(*args)
    with pytest.raises(bep_gpu.UserError, match="40 inputs"):
        model.predict_encoded(np.ones((2, 39), dtype=np.int8))
    with pytest.raises(bep_gpu.UserError, match="one per sample"):
        model.evaluate(x, np.zeros(3, dtype=int))
    full = np.load(run / "model.npz")
    np.savez(tmp_path / "w.npz", format="bep-gpu", version=1, kind="mlp", config="{}", prototypes=full["prototypes"],
             **{k: full[k] for k in ("hidden.0", "hidden.1")})
    weights_only = bep_gpu.load(tmp_path / "w.npz")
    with pytest.raises(bep_gpu.UserError, match="stores no encoder"):
        weights_only.predict(x)
    assert np.array_equal(weights_only.predict_encoded(model.encode(x)), model.predict(x))
    assert "Encoder: none stored" in weights_only.summary()


def test_bep_summary_cli(mlp_run, tmp_path, capsys):
    run, _, _ = mlp_run
    assert summary_main([str(run / "model.npz")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Model: mlp [40, 70, 35] -> 3 classes") and "compression" in out
    (tmp_path / "trunc.npz").write_bytes((run / "model.npz").read_bytes()[:500])
    for args, message in [([str(tmp_path / "trunc.npz")], "truncated"), ([str(tmp_path / "x.npz")], "does not exist"),
                          ([str(run / "model.npz"), "--steps", "0"], "--steps")]:
        assert summary_main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("bep-summary: error:") and message in err[0]
