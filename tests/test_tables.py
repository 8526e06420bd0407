"""The tables of BENCHMARKS.md that quote run folders are what those folders hold (scripts/render_tables.py)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_benchmarks_tables_match_their_run_folders():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "render_tables.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_render_replaces_only_the_marked_block(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import render_tables
    finally:
        sys.path.pop(0)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "bench.md").write_text("bep-bench on numba, header line\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    text = "before\n<!-- table: run/bench.md -->\nstale\n<!-- end table -->\nafter\n"
    assert render_tables.render(text, tmp_path) == (
        "before\n<!-- table: run/bench.md -->\n| a | b |\n|---|---|\n| 1 | 2 |\n<!-- end table -->\nafter\n")
