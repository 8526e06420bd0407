"""The numba backend as users reach it: --backend numba, auto's choice and its one line, --threads, bep-bench's
rows of several backends in one run."""
import csv
import json

import numba
import pytest

import bep_gpu.backends as backends
from bep_gpu.cli.bench import main as bench_main
from bep_gpu.cli.train import main as train_main
from bep_gpu.errors import UserError

TINY = ["--hidden", "10", "--gamma0", "5", "--epochs", "1", "--max-train", "300"]


@pytest.fixture(autouse=True)
def default_threads():
    """--threads changes process-wide thread counts: back to the defaults after each test."""
    from bep_gpu.threads import set_threads

    yield
    set_threads(0)


def test_train_with_backend_numba_records_it(tmp_path):
    out = tmp_path / "run"
    assert train_main(["mlp", "--backend", "numba", "--quiet", "--out", str(out)] + TINY) == 0
    assert json.loads((out / "results.json").read_text())["backend"] == "numba"
    assert json.loads((out / "config.json").read_text())["backend_used"] == "numba"


@pytest.fixture
def fresh_auto(monkeypatch):
    """get_backend("auto") as in a new process: no cached backends, the choice not yet announced."""
    monkeypatch.setattr(backends, "_cache", {})
    monkeypatch.setattr(backends, "_auto_said", False)
    monkeypatch.setitem(backends._REASONS, "cuda", lambda: "no GPU in this test")


def test_auto_picks_numba_and_says_why_once(fresh_auto, capsys):
    assert backends.get_backend("auto").name == "numba"
    backends.get_backend("auto")
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["backend auto: using numba (cpu); no cuda: no GPU in this test"]


def test_auto_is_quiet_when_asked(fresh_auto, capsys):
    assert backends.get_backend("auto", quiet=True).name == "numba"
    assert capsys.readouterr().err == ""


def test_auto_falls_back_to_numpy_when_numba_does_not_import(fresh_auto, monkeypatch, capsys):
    monkeypatch.setitem(backends._REASONS, "numba", lambda: "numba is not importable (ImportError: test)")
    assert backends.get_backend("auto").name == "numpy"
    assert "using numpy (cpu); no cuda: no GPU in this test; no numba: numba is not importable" in \
        capsys.readouterr().err
    with pytest.raises(UserError, match="--backend numba: numba is not importable"):
        backends.get_backend("numba")


def test_threads_flag_sets_numba_threads_and_rejects_too_many(tmp_path, capsys):
    from threadpoolctl import threadpool_info

    from bep_gpu.threads import set_threads

    try:
        assert train_main(["mlp", "--backend", "numba", "--threads", "1", "--quiet", "--out", str(tmp_path / "a")]
                          + TINY) == 0
        assert numba.get_num_threads() == 1
        assert {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"} == {1}
        assert json.loads((tmp_path / "a" / "config.json").read_text())["threads"] == 1
    finally:
        set_threads(0)
    assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS
    too_many = numba.config.NUMBA_NUM_THREADS + 1
    assert train_main(["mlp", "--threads", str(too_many), "--quiet", "--out", str(tmp_path / "b")] + TINY) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--threads {too_many}" in err[0]
    assert train_main(["mlp", "--threads", "-1", "--quiet", "--out", str(tmp_path / "c")] + TINY) == 2


def test_bench_times_several_backends_in_one_run(tmp_path, capsys):
    assert bench_main(["--backend", "numba,numpy", "--quick", "--sections", "gemm,step", "--cases", "mlp",
                       "--min-time", "0.01", "--peers", "", "--threads", "1", "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "bench.csv")))
    by = {(r["section"], r["case"], r["impl"]): r for r in rows}
    other = by[("gemm", "100x525x784", "xnor_matmul (numpy)")]
    assert other["note"] == "ratio = this / numba" and float(other["ratio"]) > 0
    assert by[("gemm", "100x525x784", "BLAS float32 on +-1")]["note"] == "ratio = numba / this"
    step = by[("step", "paper MLP L=2 784-525-525 batch 100", "BEP packed (numpy)")]
    assert step["note"] == "ratio = this / numba" and float(step["ratio"]) > 0
    assert float(by[("step", "paper MLP L=2 784-525-525 batch 100", "BEP packed (numba)")]["value"]) > 0
    assert "numba 1 threads, BLAS 1 threads" in (tmp_path / "bench.md").read_text().splitlines()[0]



@pytest.mark.parametrize("backend", ["numba,numba", "numba,cuda", ""])
def test_bench_rejects_bad_backend_lists(backend, tmp_path, capsys):
    assert bench_main(["--backend", backend, "--out", str(tmp_path)]) == 2
    assert "--backend" in capsys.readouterr().err
