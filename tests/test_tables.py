"""The tables of BENCHMARKS.md that quote run folders are what those folders hold (scripts/render_tables.py)."""
import json
import subprocess
import sys
from pathlib import Path

from conftest import script_module

ROOT = Path(__file__).resolve().parent.parent


def test_benchmarks_tables_match_their_run_folders():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "render_tables.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_render_replaces_only_the_marked_block(tmp_path):
    render_tables = _script("render_tables")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "bench.md").write_text("bep-bench on numba, header line\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    text = "before\n<!-- table: run/bench.md -->\nstale\n<!-- end table -->\nafter\n"
    assert render_tables.render(text, tmp_path) == (
        "before\n<!-- table: run/bench.md -->\n| a | b |\n|---|---|\n| 1 | 2 |\n<!-- end table -->\nafter\n")


_script = script_module


def _scripts():
    return _script("grid"), _script("reproduce_mlp")


def test_results_tables_match_their_run_folders():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "results_tables.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def _fake_run(folder, val, test, epochs=3):
    """A finished run's files; val None: a run without a validation split."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "results.json").write_text(json.dumps({
        "val_accuracy": val, "best_val_accuracy": None if val is None else val + 0.01, "test_accuracy": test,
        "test_accuracy_at_best_val": None if val is None else test, "epochs": epochs, "train_time_s": 6.0}))


def test_reproduce_mlp_summary_is_mean_and_std_over_seeds(tmp_path):
    _, reproduce_mlp = _scripts()
    for seed, acc in enumerate([0.60, 0.62, 0.58]):
        _fake_run(tmp_path / "runs" / f"prototypes_L3_K35_s{seed}", acc, acc)
    _fake_run(tmp_path / "runs" / "prototypes_L3_K35_qat-bn_s0", 0.7, 0.66)
    _fake_run(tmp_path / "runs" / "prototypes_L3_K355_s0", 0.1, 0.1)  # another width: not a seed of K = 35
    texts = reproduce_mlp.summarize(str(tmp_path), "prototypes", layers_list=(3,), widths=[35])
    md = texts[str(tmp_path / "prototypes_summary.md")]
    row = [line for line in md.splitlines() if line.startswith("| 3 | 35 |")][0].split(" | ")
    assert row[3:5] == ["3", "60.00 ± 2.00"]  # three seeds, the K = 355 run not among them
    assert "58.57 ± 0.78" in row and "+1.43" in row and "no" in row  # the paper's mean and std, outside it
    assert "66.00 (1)" in row  # the QAT run beside it


def _write_metrics(folder, tests):
    """metrics.csv of a run whose epochs scored these test accuracies."""
    rows = "".join(f"{e + 1},{e},0.5,0.5,0.5,{t}\n" for e, t in enumerate(tests))
    (folder / "metrics.csv").write_text("epoch,step,train_acc,triggered_frac,val_acc,test_acc\n" + rows)


def test_best_test_epoch_is_the_peak_of_metrics_and_beside_the_paper(tmp_path):
    grid, reproduce_mlp = _scripts()
    for seed, tests in enumerate([(0.50, 0.59, 0.58), (0.55, 0.57, 0.56)]):
        run = tmp_path / "runs" / f"prototypes_L3_K35_s{seed}"
        _fake_run(run, tests[-1], tests[-1])
        _write_metrics(run, tests)
    texts = reproduce_mlp.summarize(str(tmp_path), "prototypes", layers_list=(3,), widths=[35])
    md = texts[str(tmp_path / "prototypes_summary.md")]
    head = [c.strip() for c in md.splitlines()[2].split("|")]
    row = [c.strip() for c in [line for line in md.splitlines() if line.startswith("| 3 | 35 |")][0].split("|")]
    cell = dict(zip(head, row))
    assert cell["ours"] == "57.00 ± 1.41" and cell["best test epoch"] == "58.00 ± 1.41"  # peaks 59 and 57
    assert cell["best test epoch - paper"] == "-0.57"  # the paper's 58.57
    (tmp_path / "grid.json").write_text(json.dumps(
        {"kind": "mlp", "base": [], "seeds": [0, 1], "show_test": True, "settings": {"prototypes_L3_K35": []}}))
    md = grid.table(str(tmp_path))[str(tmp_path / "grid.md")]
    assert "| test % best test epoch |" in md and "| 58.00 ± 1.41 |" in md


def test_grid_search_table_sorts_on_validation_and_hides_test(tmp_path):
    grid, _ = _scripts()
    (tmp_path / "grid.json").write_text(json.dumps(
        {"kind": "mlp", "base": ["--hidden", "35"], "seeds": [0, 1], "settings": {"a": [], "b": ["--nu", "0.4"]}}))
    for name, vals in (("a", (0.50, 0.52)), ("b", (0.55, 0.57))):
        for seed, v in enumerate(vals):
            _fake_run(tmp_path / "runs" / f"{name}_s{seed}", v, 0.99)
    md = grid.table(str(tmp_path))[str(tmp_path / "grid.md")]
    rows = [line for line in md.splitlines() if line.startswith("| a ") or line.startswith("| b ")]
    assert rows[0].startswith("| b | --nu 0.4 | 2 |") and "56.00 ± 1.41" in rows[0]
    assert "99.00" not in md and "test" not in md.split("\n\n", 1)[1]


def test_grid_setting_may_name_its_own_seeds(tmp_path):
    grid, _ = _scripts()
    spec = {"kind": "mlp", "base": ["--hidden", "35"], "seeds": [0], "show_test": True,
            "settings": {"a": [], "b": {"flags": ["--nu", "0.4"], "seeds": [0, 1, 2]}}}
    (tmp_path / "grid.json").write_text(json.dumps(spec))
    assert grid.settings(spec) == [("a", [], [0]), ("b", ["--nu", "0.4"], [0, 1, 2])]
    for name, vals in (("a", (0.50, 0.60)), ("b", (0.55, 0.57, 0.59))):
        for seed, v in enumerate(vals):
            _fake_run(tmp_path / "runs" / f"{name}_s{seed}", v, v)
    md = grid.table(str(tmp_path))[str(tmp_path / "grid.md")]
    row = {line.split(" | ")[0]: line for line in md.splitlines() if line.startswith("| a ") or line.startswith("| b ")}
    assert "| 1 |" in row["| a"] and "50.00" in row["| a"]  # seed 1 of a is not among its seeds
    assert "| 3 |" in row["| b"] and "57.00 ± 2.00" in row["| b"]


def test_grid_only_refuses_an_unknown_setting(tmp_path, capsys):
    import pytest
    grid, _ = _scripts()
    (tmp_path / "grid.json").write_text(json.dumps(
        {"kind": "mlp", "base": [], "seeds": [0], "settings": {"a": []}}))
    with pytest.raises(SystemExit) as exc:
        grid.main([str(tmp_path), "--only", "a,b", "--table-only"])
    assert exc.value.code == 2 and "no setting b in" in capsys.readouterr().err


def test_grid_tables_runs_without_validation_last(tmp_path):
    grid, _ = _scripts()
    (tmp_path / "grid.json").write_text(json.dumps(
        {"kind": "mlp", "base": [], "seeds": [0], "show_test": True,
         "settings": {"all": ["--val-fraction", "0"], "a": []}}))
    _fake_run(tmp_path / "runs" / "a_s0", 0.5, 0.4)
    _fake_run(tmp_path / "runs" / "all_s0", None, 0.45)
    md = grid.table(str(tmp_path))[str(tmp_path / "grid.md")]
    rows = [line for line in md.splitlines() if line.startswith("| a ") or line.startswith("| all ")]
    assert rows[0].startswith("| a |") and rows[1] == "| all | --val-fraction 0 | 1 | 3 |  |  | 45.00 |  |  | 2.0 |"


def test_milestones_are_the_median_growth_epochs_most_runs_reached(tmp_path, capsys):
    milestones = _script("milestones")
    runs = []
    for i, gammas in enumerate([[5, 5, 9, 9, 15], [5, 9, 9, 15, 15], [5, 5, 5, 9, 45]]):
        d = tmp_path / f"r{i}"
        d.mkdir()
        rows = "".join(f"{e},{g}\n" for e, g in enumerate(gammas, 1))
        (d / "metrics.csv").write_text("epoch,gammas\n" + rows)
        runs.append(str(d))
    assert [milestones.growth_epochs(r) for r in runs] == [[2, 4], [1, 3], [3, 4]]
    assert milestones.main(runs) == 0 and capsys.readouterr().out == "2,4\n"
    # the first growth in 2 of 3 runs (median of 10 and 20), the second in only 1 of 3: dropped
    assert milestones.milestones([[10], [20, 30], []]) == [15]
    # medians over different runs need not increase: each milestone is kept after the one before
    assert milestones.milestones([[1, 10], [10, 11], [10]]) == [10, 11]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.csv").write_text("epoch\n1\n")
    assert milestones.main([str(tmp_path / "bad")]) == 2 and "no epoch and gammas columns" in capsys.readouterr().err
    assert milestones.main([str(tmp_path / "none")]) == 2


def test_fresh_test_scores_a_prototypes_run_on_a_new_draw_and_grid_shows_it(tmp_path, capsys):
    """A real (small) Random Prototypes run: its score on 20,000 fresh samples of the same class rows lies within
    sampling error of its fixed 3,000-sample test accuracy, lands in fresh_test.json and in grid.md's column; a run
    on another dataset or without model.npz is a one-line error that writes nothing."""
    from bep_gpu.cli.train import main as train_main
    grid, _ = _scripts()
    fresh_test = _script("fresh_test")
    (tmp_path / "grid.json").write_text(json.dumps(
        {"kind": "mlp", "base": [], "seeds": [0], "show_test": True, "settings": {"a": []}}))
    run = tmp_path / "runs" / "a_s0"
    assert train_main(["mlp", "--dataset", "prototypes", "--hidden", "35,35", "--gamma0", "35", "--nu", "0.4", "--epochs", "3",
                       "--max-train", "6000", "--backend", "numba", "--quiet", "--out", str(run)]) == 0
    assert fresh_test.main([str(run), "--n", "20000"]) == 0
    saved = json.loads((run / "fresh_test.json").read_text())
    test = 100 * json.loads((run / "results.json").read_text())["test_accuracy"]
    assert test > 25  # well above chance (10 %), so rows of another seed would fail the next line
    assert saved["n"] == 20000 and abs(saved["fresh_test_pct"] - test) < 4 * (saved["stderr_pct"] + 0.92)
    md = grid.table(str(tmp_path))[str(tmp_path / "grid.md")]
    assert "fresh test %" in md and f"{saved['fresh_test_pct']:.2f}" in md
    # a run that now holds another model (its test accuracy changed) loses its stale fresh score
    results = json.loads((run / "results.json").read_text())
    (run / "results.json").write_text(json.dumps({**results, "test_accuracy": results["test_accuracy"] + 0.01}))
    assert f"{saved['fresh_test_pct']:.2f}" not in grid.table(str(tmp_path))[str(tmp_path / "grid.md")]
    (run / "model.npz").unlink()
    (run / "fresh_test.json").unlink()
    assert fresh_test.main([str(run)]) == 2 and "has no model.npz" in capsys.readouterr().err
    assert not (run / "fresh_test.json").exists()


def test_reproduce_mlp_names_an_encoder_other_than_the_protocols(tmp_path):
    _, reproduce_mlp = _scripts()
    for seed, encode in enumerate(["thermometer:10", "median"]):
        _fake_run(tmp_path / ("th" if seed == 0 else "md") / "runs" / "fashion-mnist_L3_K35_s0", 0.8, 0.8)
        cfg = tmp_path / ("th" if seed == 0 else "md") / "runs" / "fashion-mnist_L3_K35_s0" / "config.json"
        cfg.write_text(json.dumps({"gamma0": 35, "encode": encode}))
    rows = {}
    for name in ("th", "md"):
        md = reproduce_mlp.summarize(str(tmp_path / name), "fashion-mnist", layers_list=(3,), widths=[35])
        rows[name] = [line for line in md[str(tmp_path / name / "fashion-mnist_summary.md")].splitlines()
                      if line.startswith("| 3 | 35 |")][0]
    assert "gamma0 35, encode thermometer:10 |" in rows["th"] and "encode" not in rows["md"]


def test_reproduce_mlp_encode_replaces_the_protocols_encoder_for_both_peers():
    import argparse
    _, reproduce_mlp = _scripts()
    for encode, want in (("thermometer:10", "thermometer:10"), (None, "median")):
        args = argparse.Namespace(dataset="fashion-mnist", epochs=50, backend="numba", threads=1, encode=encode)
        for peer in ("bep", "qat-bn"):
            cmd = reproduce_mlp.command(args, 3, 35, peer, 0, "out", [])
            assert cmd.count("--encode") == 1 and cmd[cmd.index("--encode") + 1] == want


def test_grid_data_seed_follows_the_seed_only_when_asked(tmp_path, monkeypatch):
    grid, _ = _scripts()
    calls = []

    def fake_run(cmd):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1)  # "failed": run_one stops before writing command.txt
    monkeypatch.setattr(grid.subprocess, "run", fake_run)
    for spec in ({"base": [], "seeds": [3]}, {"base": [], "seeds": [3], "data_seed_is_seed": True}):
        assert grid.run_one(str(tmp_path), spec, "a", ["--nu", "0.4"], 3) == "a_s3: FAILED (exit 1)"
    assert "--data-seed" not in calls[0]
    i = calls[1].index("--data-seed")
    assert calls[1][i + 1] == "3" and calls[1][calls[1].index("--seed") + 1] == "3"
