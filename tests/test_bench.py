import csv

from bep_gpu.cli.bench import main


def test_bench_quick_writes_csv_and_markdown(tmp_path, capsys):
    assert main(["--backend", "numpy", "--quick", "--sections", "gemm,step", "--min-time", "0.01", "--peers", "dense",
                 "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "bench.csv")))
    impls = {r["impl"] for r in rows}
    assert "xnor_matmul (numpy)" in impls and "BEP packed (numpy)" in impls and "dense integer BEP" in impls
    assert all(float(r["value"]) > 0 for r in rows)
    assert "| gemm |" in (tmp_path / "bench.md").read_text()


def test_bench_rejects_unknown_section(capsys):
    assert main(["--sections", "gpu-magic"]) == 2
    assert "--sections" in capsys.readouterr().err
