"""profiling/sass_report.py runs on one kernel file and finds the tensor-core hot loops (static, no GPU; skipped
without nvcc and cuobjdump)."""
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "profiling"))
import sass_report  # noqa: E402

needs_tools = pytest.mark.skipif(not all(sass_report.tool(t) for t in ("nvcc", "cuobjdump", "nvdisasm")),
                                 reason="nvcc, cuobjdump and nvdisasm needed "
                                        "(pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)")


@needs_tools
def test_report_finds_the_bmma_loops(capsys):
    assert sass_report.main(["--markdown", "xnor_matmul_tc.cu"]) == 0
    out = capsys.readouterr().out
    loops = [r.split(" | ") for r in out.splitlines() if re.match(r"\| xnor_matmul\w*_tc \| \d+-byte", r)]
    kernels = set(re.findall(r'__global__ void __launch_bounds__\([^)]*\)\s+(\w+)\(',
                             (REPO / "kernels" / "xnor_matmul_tc.cu").read_text()))
    assert {r[0].strip("| ") for r in loops} == kernels
    for r in loops:
        assert r[1] in ("16-byte", "8-byte") and int(r[3]) > 0 and float(r[5]) > 1  # BMMA found, slots parsed
    predictions = [r for r in out.splitlines() if "| 8192^3 |" in r]  # the recurrence step: M x N x 2N
    assert len(predictions) == len(kernels) and all(re.search(r"\| \d+% \|", r) for r in predictions)


def test_report_rejects_an_unknown_file_or_missing_tools(capsys):
    assert sass_report.main(["no_such.cu"]) == 2
    assert "sass_report:" in capsys.readouterr().err
