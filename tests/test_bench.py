import csv
import importlib.util
import subprocess
import sys

import pytest

from bep_gpu.cli.bench import main
from conftest import needs_emulator
from test_data import write_fmnist

HAS_TORCH = importlib.util.find_spec("torch") is not None


def rows_of(out):
    return list(csv.DictReader(open(out / "bench.csv")))


def test_bench_quick_writes_csv_and_markdown(tmp_path, capsys):
    assert main(["--backend", "numpy", "--quick", "--sections", "gemm,step", "--min-time", "0.01", "--peers", "dense",
                 "--out", str(tmp_path)]) == 0
    rows = rows_of(tmp_path)
    impls = {r["impl"] for r in rows}
    assert "xnor_matmul (numpy)" in impls and "BEP packed (numpy)" in impls and "dense integer BEP" in impls
    assert all(float(r["value"]) > 0 for r in rows)
    assert "| gemm |" in (tmp_path / "bench.md").read_text()
    # the RNN (BEP-TT) case: ours, the implied epoch, the dense integer peer with its ratio, the memory rows
    rnn = [r for r in rows if r["case"].startswith("small RNN T=28 100-105-105 batch 20")]
    by_impl = {(r["section"], r["impl"]): r for r in rnn}
    assert by_impl[("step", "BEP-TT packed (numpy)")]["unit"] == "ms/step"
    assert by_impl[("epoch", "BEP-TT packed (numpy)")]["unit"] == "s/epoch (50000 samples)"
    assert float(by_impl[("step", "dense integer BEP")]["ratio"]) > 0
    assert float(by_impl[("memory", "BEP training state")]["ratio"]) == pytest.approx(16 / 2.125, rel=1e-2)


def test_bench_update_section_times_both_forms(tmp_path, capsys):
    assert main(["--backend", "numpy", "--quick", "--sections", "update", "--min-time", "0.01", "--out",
                 str(tmp_path)]) == 0
    rows = {r["impl"]: r for r in rows_of(tmp_path)}
    assert set(rows) == {f"{what}{form} (numpy){tail}" for form in ("popcount", "sparse")
                         for what, tail in (("batch_update ", ", all layers"), ("whole step, update=", ""))}
    assert all(r["section"] == "update" and float(r["value"]) > 0 for r in rows.values())
    assert float(rows["batch_update sparse (numpy), all layers"]["ratio"]) > 0
    assert int(rows["batch_update popcount (numpy), all layers"]["note"].split()[0]) > 0  # real selections


@pytest.mark.skipif(not HAS_TORCH, reason="the QAT peer needs torch")
def test_bench_rnn_case_has_the_qat_peer(tmp_path, capsys, monkeypatch):
    from bep_gpu.peers import qat_torch  # the module bep-bench imports as its peer

    real = qat_torch.time_qat_step  # its timed epoch: 5 steps here instead of 100 (most of a minute on 2 cores)
    monkeypatch.setattr(qat_torch, "time_qat_step", lambda *a, n_samples, **kw: real(*a, n_samples=100, **kw))
    assert main(["--backend", "numpy", "--quick", "--sections", "step", "--cases", "rnn", "--min-time", "0.01",
                 "--peers", "qat", "--out", str(tmp_path)]) == 0
    rows = rows_of(tmp_path)
    assert {r["case"] for r in rows} == {"small RNN T=28 100-105-105 batch 20"}  # --cases rnn: no MLP rows
    qat = {r["section"]: r for r in rows if r["impl"] == "QAT torch"}
    assert float(qat["step"]["value"]) > 0 and float(qat["step"]["ratio"]) > 0
    assert qat["epoch"]["unit"] == "s/epoch (50000 samples)"
    assert "dense integer BEP" not in {r["impl"] for r in rows}


def test_bench_real_epoch_on_fashion_mnist_files(tmp_path, capsys):
    write_fmnist(tmp_path / "data", n_train=300, n_test=40)
    out = tmp_path / "out"
    assert main(["--backend", "numpy", "--sections", "epoch", "--data-dir", str(tmp_path / "data"),
                 "--epoch-samples", "250", "--peers", "qat", "--out", str(out)]) == 0
    rows = {r["impl"]: r for r in rows_of(out)}
    ours = rows["BEP trainer (numpy)"]
    assert ours["section"] == "epoch" and ours["unit"] == "s/epoch (250 samples, measured)"
    assert float(ours["value"]) > 0 and "encode median" in ours["note"]
    if HAS_TORCH:
        assert float(rows["QAT torch"]["value"]) > 0 and float(rows["QAT torch"]["ratio"]) > 0
        assert rows["QAT torch"]["unit"] == ours["unit"]


def test_bench_real_epoch_without_data_writes_a_skip_row(tmp_path, monkeypatch, capsys):
    from bep_gpu.data import sources

    monkeypatch.setattr(sources, "FASHION_MNIST_DIRS", [])
    (tmp_path / "empty").mkdir()
    assert main(["--backend", "numpy", "--sections", "epoch", "--data-dir", str(tmp_path / "empty"),
                 "--out", str(tmp_path / "out")]) == 0
    (row,) = rows_of(tmp_path / "out")
    assert row["value"] == "nan" and row["note"].startswith("skipped: Fashion-MNIST not found")


@pytest.mark.parametrize("args, flag", [(["--sections", "gpu-magic"], "--sections"), (["--cases", "cnn"], "--cases"),
                                        (["--epoch-samples", "0"], "--epoch-samples")])
def test_bench_rejects_bad_options(args, flag, capsys):
    assert main(args) == 2
    assert flag in capsys.readouterr().err


@needs_emulator
def test_graph_row_task_replays_the_same_steps():
    """bep-bench's CUDA-graph row drives GraphedSteps with _MLPTask; on the emulated kernels (no capture) its steps
    equal plain train_step calls with the step number counted on the device."""
    import emu
    import numpy as np

    from bep_gpu.bep_mlp import train_step
    from bep_gpu.cli.bench import _MLPTask, _step_case
    from bep_gpu.step_graph import GraphedSteps

    bk = emu.make_emulated_backend()
    sizes = [100, 70, 70]
    hidden_np, protos, x_pm, y, rules, thresholds, gammas = _step_case(sizes, 20, 7)
    p, x = bk.pack(protos), bk.pack(x_pm)
    h_graph, h_plain = [h.copy() for h in hidden_np], [h.copy() for h in hidden_np]
    counts = np.zeros(2, np.int64)
    graphed = GraphedSteps(bk, _MLPTask(bk, h_graph, sizes, p, rules), x, y, 20, gammas, thresholds, 5, counts)
    want = np.zeros(2, np.int64)
    for step in (5, 6, 7):
        graphed(np.arange(20))
        want += train_step(bk, h_plain, sizes, p, x, y, gammas, rules, thresholds, 0, step)
    assert np.array_equal(counts, want) and int(graphed.step[0]) == 8
    for a, b in zip(h_graph, h_plain):
        assert np.array_equal(a, b)


@needs_emulator
def test_gemm_rows_of_both_cuda_kernels_on_the_emulator():
    """The GPU form of the gemm section (CUDA-core and b1 tensor-core rows with their ceiling fractions, float
    GEMM peers with both ratios) runs on the emulated kernels."""
    import emu
    from bep_gpu.cli.bench import Table, bench_gemm

    table = Table()
    bench_gemm(emu.make_emulated_backend(), table, [(70, 65, 300)], 0.0, kernels=True)
    rows = {r["impl"]: r for r in table.rows}
    assert float(rows["xnor_matmul CUDA cores (cuda)"]["ratio"]) > 0
    assert float(rows["xnor_matmul b1 tensor cores (cuda)"]["ratio"]) > 0
    assert "b1 tensor cores / this" in rows["cuBLAS float32 on +-1"]["note"]


def test_sigterm_keeps_the_rows_measured(tmp_path):
    """`timeout` stops with SIGTERM: the rows measured so far are written, marked incomplete."""
    import os
    import select
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    out = tmp_path / "out"
    # a small GEMM first (rows within a second), then large ones that keep it busy for a minute
    proc = subprocess.Popen([sys.executable, "-m", "bep_gpu.cli.bench", "--backend", "numpy", "--sections", "gemm",
                             "--gemm-sizes", "128x128x128," + ",".join(["2048x2048x2048"] * 10), "--min-time", "1",
                             "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    # Stop it once it announces the first large GEMM, i.e. once the small one's rows are measured.
    seen, deadline = b"", time.monotonic() + 120
    while b"gemm 2048x2048x2048" not in seen:
        assert proc.poll() is None and time.monotonic() < deadline, seen.decode()
        if select.select([proc.stderr], [], [], 0.1)[0]:
            seen += os.read(proc.stderr.fileno(), 4096)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    err = seen + err
    assert proc.returncode == 130, err
    assert "INCOMPLETE" in (out / "bench.md").read_text()
    assert rows_of(out) and all(r["section"] == "gemm" for r in rows_of(out))


def test_unwritable_out_fails_before_measuring(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["--backend", "numpy", "--quick", "--sections", "gemm", "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot create --out" in err[0]


@pytest.mark.skipif(not HAS_TORCH, reason="the QAT peer needs torch")
def test_bench_conv_case_has_the_qat_conv_peer(tmp_path, capsys):
    assert main(["--backend", "numpy", "--quick", "--sections", "step", "--cases", "conv", "--min-time", "0.01",
                 "--peers", "qat", "--out", str(tmp_path)]) == 0
    rows = {(r["section"], r["impl"]): r for r in rows_of(tmp_path)}
    assert float(rows[("step", "BEP-Conv packed (numpy)")]["value"]) > 0
    assert float(rows[("step", "QAT torch conv")]["ratio"]) > 0
    assert rows[("epoch", "QAT torch conv")]["unit"] == "s/epoch (50000 samples)"


def test_peers_come_from_the_installed_package(tmp_path):
    """Outside the repository (no scripts/ around) the dense peer is still there: it ships in the package."""
    code = "from bep_gpu.cli.bench import _peers; print(_peers({'dense'})[0].__name__)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "bep_gpu.peers.dense_bep"


def test_qat_peer_without_torch_says_so_in_one_line(monkeypatch, capsys):
    import bep_gpu.peers
    from bep_gpu.cli import bench

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    monkeypatch.delitem(sys.modules, "bep_gpu.peers.qat_torch", raising=False)  # imported anew, as without torch
    monkeypatch.delattr(bep_gpu.peers, "qat_torch", raising=False)
    dense, qat = bench._peers({"dense", "qat"})
    assert dense is not None and qat is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bep-bench: no QAT peer rows: it needs torch") \
        and "pip install 'bep-gpu[baselines]'" in err[0]
