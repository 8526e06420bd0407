"""Static performance model of the CUDA kernels, without a GPU: compile kernels/*.cu for sm_90 (nvcc), disassemble
them (cuobjdump), find each kernel's hot loops (backward branches whose body holds BMMA or POPC), and print

- the instruction mix and issue slots per BMMA (tensor cores) or per POPC (CUDA cores) of each hot loop (a static
  count of the whole loop body, every path included: an upper bound of what one iteration issues),
- registers, static and dynamic shared memory, resident blocks per SM,
- the bound this implies at 8192^3 and at training shapes: tensor or POPC pipe, instruction issue, shared memory
  bandwidth (tensor cores: ldmatrix reads and cp.async writes), L2 and HBM traffic, each as time; the prediction
  is the largest, and "of peak" the ideal pipe time (no padding, no wave tail) over it.

It is a prediction, not a measurement: the H200 figures below are datasheet or H100-class assumptions (see
"H200 ceilings" in profiling/README.md); bep-bench and scripts/bench_kernels.py measure the real thing.

    python profiling/sass_report.py [--markdown]          (needs nvcc, cuobjdump, nvdisasm: PATH or venv)
"""
from __future__ import annotations

import argparse
import collections
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KERNELS = REPO / "kernels"

# H200 SXM, per SM and clock unless noted (assumptions, unmeasured on this project's hardware).
SMS, CLOCK = 132, 1.98e9
ISSUE_PER_SM = 4  # one warp instruction per SM sub-partition per clock
BMMA_PER_SM = 0.5  # m16n8k256 = 32768 bit-MACs at ~16384 bit-MACs/clk/SM (A100-class b1 rate)
POPC_WARP_PER_SM = 0.5  # 16 POPC lanes/clk/SM = half a warp instruction
L2_BW, HBM_BW = 5.5e12, 4.3e12  # bytes/s: L2 hits (H100-class, conservative), measured-copy HBM
SMEM_BYTES_PER_SM = 128  # shared memory bytes per clock per SM
LDSM_BYTES = 512  # one ldmatrix.x4: 32 lanes x 16 bytes
REGS_PER_SM, SMEM_PER_SM, MAX_BLOCKS, MAX_THREADS = 65536, 228 * 1024, 32, 2048
THREADS = 256  # every kernel launches 256-thread blocks (bep_gpu/backends/cuda_backend.py)
TC_SMEM = 3 * 2 * 128 * 128  # dynamic shared memory of the tensor-core kernels (cuda_backend.TC_SMEM)

# GEMM-like families: (block rows, block cols, BMMA or POPC per output per 256 K bits, bytes moved per output
# element: int32 z (4) or bits (1/8) or int16 h read + write (4)). "tc": per 16x8x256 BMMA; "cc": per 64-bit word
# and output, 2 POPC (a u64 is two 32-bit POPCs).
FAMILIES = {
    "xnor_matmul_tc": ("tc", 128, 128, 1, 4), "xnor_matmul_sign_tc": ("tc", 128, 128, 1, 4 + 1 / 8),
    "xnor_matmul_sign_add_tc": ("tc", 128, 128, 1, 8 + 1 / 8),
    "xnor_matmul_sign_gate_tc": ("tc", 128, 128, 1, 4 + 2 / 8),
    "gated_transposed_product_tc": ("tc", 64, 128, 2, 1 / 8), "batch_update_tc": ("tc", 64, 128, 2, 4),
    "update_delta_tc": ("tc", 64, 128, 2, 4),
    "xnor_matmul2_sign_tc": ("tc", 128, 128, 1, 4 + 1 / 8), "xnor_matmul2_sign_gate_tc": ("tc", 128, 128, 1, 4 + 2 / 8),
    "xnor_matmul2_sign": ("cc", 64, 64, 1, 4 + 1 / 8), "xnor_matmul2_sign_gate": ("cc", 64, 64, 1, 4 + 2 / 8),
    "xnor_matmul": ("cc", 64, 64, 1, 4), "xnor_matmul_sign": ("cc", 64, 64, 1, 4 + 1 / 8),
    "xnor_matmul_sign_gate": ("cc", 64, 64, 1, 4 + 2 / 8), "xnor_matmul_sign_add": ("cc", 64, 64, 1, 8 + 1 / 8),
    "gated_transposed_product": ("cc", 64, 64, 1, 1 / 8), "batch_update": ("cc", 64, 64, 1, 4),
    "update_delta": ("cc", 64, 64, 1, 4),
}
# (label, batch, K_out, K_in): forward is batch x K_out x K_in, the targets batch x K_in x K_out, the update
# K_out x K_in x batch (M x N x K); a recurrence step (xnor_matmul2_*: input and state products in one tile) is
# batch x K_out x (K_in + K_out), its state being K_out wide.
SHAPES = [("8192^3", 8192, 8192, 8192), ("1024x4096x4096", 1024, 4096, 4096), ("1024x525x784", 1024, 525, 784)]


def tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for cand in (Path(sys.prefix) / "lib").glob(f"python3*/site-packages/nvidia/*/bin/{name}"):
        return str(cand)
    cuda = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin" / name
    return str(cuda) if cuda.exists() else None


def compile_all(nvcc: str, cuobjdump: str, nvdisasm: str, tmp: Path, files) -> tuple[dict, dict]:
    """({kernel: {regs, smem}}, {kernel: [(address, instruction)]}) for the given kernels/*.cu files."""
    info, sass = {}, {}
    # cuobjdump -sass runs nvdisasm, found only on PATH (the PyPI wheels put it in the venv, not on PATH).
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(nvdisasm).parent), os.environ.get("PATH", "")])}
    for cu in files:
        cubin = tmp / (cu.stem + ".cubin")
        res = subprocess.run([nvcc, "-arch=sm_90", "-cubin", "-Xptxas", "-v", f"-I{KERNELS}", str(cu), "-o",
                              str(cubin)], capture_output=True, text=True)
        if res.returncode:
            raise RuntimeError(f"nvcc failed on {cu.name}:\n{res.stderr[-4000:]}")
        for entry in re.split(r"Compiling entry function '", res.stdout + res.stderr)[1:]:
            name = entry.split("'", 1)[0]
            regs = re.search(r"Used (\d+) registers", entry)
            smem = re.search(r"(\d+) bytes smem", entry)
            info[name] = {"regs": int(regs.group(1)) if regs else 0, "smem": int(smem.group(1)) if smem else 0}
        res = subprocess.run([cuobjdump, "-sass", str(cubin)], capture_output=True, text=True, env=env)
        if res.returncode:
            raise RuntimeError(f"cuobjdump failed on {cubin.name}:\n{res.stderr[-4000:]}")
        dump = res.stdout
        for block in re.split(r"\n\s+Function : ", dump)[1:]:
            name = block.split("\n", 1)[0].strip()
            sass[name] = [(int(a, 16), t.strip()) for a, t in re.findall(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);", block)]
    return info, sass


def opcode(text: str) -> str:
    return re.sub(r"^@!?U?P\w+\s+", "", text).split()[0]


def copy_width(mix) -> str:
    """The cp.async width of a loop body: LDGSTS.E.BYPASS.128[.ZFILL] (16 bytes) or LDGSTS.E.64 (8 bytes)."""
    for op in mix:
        if op.startswith("LDGSTS.E.BYPASS.128"):
            return "16-byte"
    return "8-byte" if any(op.startswith("LDGSTS.E.64") for op in mix) else ""


def hot_loops(ins) -> list[dict]:
    """Backward-branch loop bodies holding BMMA or POPC, innermost first per distinct body."""
    index = {a: i for i, (a, _) in enumerate(ins)}
    loops = []
    for i, (a, text) in enumerate(ins):
        m = re.search(r"\bBRA\s+`?\(?0x([0-9a-f]+)", text)
        if not m or int(m.group(1), 16) > a or int(m.group(1), 16) not in index:
            continue
        body = [opcode(t) for _, t in ins[index[int(m.group(1), 16)]:i + 1]]
        mix = collections.Counter(body)
        bmma = sum(v for k, v in mix.items() if k.startswith("BMMA"))
        popc = mix.get("POPC", 0)
        if bmma or popc:
            loops.append({"len": len(body), "bmma": bmma, "popc": popc, "mix": mix,
                          "copies": copy_width(mix)})
    return loops


def occupancy(regs: int, smem: int, dynamic: int) -> int:
    regs_block = math.ceil(max(regs, 1) * 32 / 256) * 256 * (THREADS // 32)  # allocation: 256 registers per warp
    by_smem = SMEM_PER_SM // (smem + dynamic + 1024)  # 1 KB reserved per block
    return max(0, min(REGS_PER_SM // regs_block, by_smem, MAX_BLOCKS, MAX_THREADS // THREADS))


def predict(name: str, loop: dict, blocks_per_sm: int, m: int, n: int, k: int) -> dict:
    """Times (s) of each bound for an M x N x K product and the predicted fraction of the pipe's peak."""
    kind, bm, bn, per, out_bytes = FAMILIES[name]
    tiles = math.ceil(m / bm) * math.ceil(n / bn)
    waves = math.ceil(tiles / (SMS * blocks_per_sm)) / (tiles / (SMS * blocks_per_sm))  # quantisation >= 1
    ksteps = math.ceil(k / 256)
    if kind == "tc":
        ops = tiles * (bm // 16) * (bn // 8) * ksteps * per  # BMMA issued, padding included
        t_pipe = ops / (BMMA_PER_SM * SMS * CLOCK)
        t_issue = ops * loop["len"] / loop["bmma"] / (ISSUE_PER_SM * SMS * CLOCK)
        a_rows = bm * (2 if per == 2 else 1)
        l2 = tiles * (a_rows + bn) * math.ceil(k / 1024) * 128  # every block stages its slabs from L2
        smem = ops * loop["mix"].get("LDSM.16.M88.4", 0) / loop["bmma"] * LDSM_BYTES + l2  # reads + ring writes
        ideal = m * n * k * per / (BMMA_PER_SM * 32768 * SMS * CLOCK)
    else:
        words = math.ceil(k / 64)
        ops = tiles * bm * bn * words * 2 / 32 * per  # warp POPC instructions (2 per u64 word and output)
        t_pipe = ops / (POPC_WARP_PER_SM * SMS * CLOCK)
        t_issue = ops * loop["len"] / loop["popc"] / (ISSUE_PER_SM * SMS * CLOCK)
        a_rows = bm * (2 if name in ("gated_transposed_product", "batch_update", "update_delta") else 1)
        l2 = tiles * (a_rows + bn) * words * 8
        smem = ops * 32 * 8 * sum(v for op, v in loop["mix"].items() if op.startswith("LDS")) / loop["popc"] + l2
        ideal = m * n * words * 2 / 32 / (POPC_WARP_PER_SM * SMS * CLOCK)
    a_bytes = (m * (2 if per == 2 else 1) + n) * math.ceil(k / 64) * 8
    t_hbm = (a_bytes + m * n * out_bytes) / HBM_BW
    bounds = {"pipe": t_pipe * waves, "issue": t_issue * waves, "smem": smem / (SMEM_BYTES_PER_SM * SMS * CLOCK) * waves,
              "L2": l2 / L2_BW, "HBM": t_hbm}
    bound = max(bounds, key=bounds.get)
    return {"bound": bound, "t": bounds[bound], "frac": ideal / bounds[bound], **bounds}


BOUNDS = ("pipe", "issue", "smem", "L2", "HBM")


def gemm_dims(name: str, batch: int, k_out: int, k_in: int) -> tuple[int, int, int]:
    if "gated" in name:
        return batch, k_in, k_out
    if "update" in name:
        return k_out, k_in, batch
    if "matmul2" in name:
        return batch, k_out, k_in + k_out
    return batch, k_out, k_in


def report(markdown: bool, names=()) -> int:
    nvcc, cuobjdump, nvdisasm = tool("nvcc"), tool("cuobjdump"), tool("nvdisasm")
    if not (nvcc and cuobjdump and nvdisasm):
        print("sass_report: needs nvcc, cuobjdump and nvdisasm (pip install nvidia-cuda-cuobjdump "
              "nvidia-cuda-nvdisasm)", file=sys.stderr)
        return 2
    files = [KERNELS / n for n in names] if names else sorted(KERNELS.glob("*.cu"))
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        print(f"sass_report: no such kernel file in kernels/: {', '.join(missing)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        info, sass = compile_all(nvcc, cuobjdump, nvdisasm, Path(tmp), files)
    sep = " | " if markdown else "  "
    head = ["kernel", "loop", "instr", "BMMA", "POPC", "slots/op", "regs", "smem KB", "blocks/SM", "top instructions"]
    rows = []
    pred_rows = []
    for name in sorted(sass):
        loops = hot_loops(sass[name])
        dyn = TC_SMEM if name.endswith("_tc") else 0
        regs, smem = info.get(name, {}).get("regs", 0), info.get(name, {}).get("smem", 0)
        blocks = occupancy(regs, smem, dyn)
        biggest = {}  # per copy width, the loop with the most BMMA / POPC (unrolled remainders are smaller)
        for lp in loops:
            old = biggest.get(lp["copies"])
            if old is None or (lp["bmma"] or lp["popc"]) > (old["bmma"] or old["popc"]):
                biggest[lp["copies"]] = lp
        for lp in sorted(biggest.values(), key=lambda lp: lp["copies"]):
            ops = lp["bmma"] or lp["popc"]
            top = ", ".join(f"{k} {v}" for k, v in lp["mix"].most_common(6))
            rows.append([name, lp["copies"] or "-", str(lp["len"]), str(lp["bmma"]), str(lp["popc"]),
                         f"{lp['len'] / ops:.2f}", str(regs), f"{(smem + dyn) / 1024:.1f}", str(blocks), top])
        if name in FAMILIES and biggest:
            for label, batch, k_out, k_in in SHAPES:
                m, n, k = gemm_dims(name, batch, k_out, k_in)
                # The loop the shape runs: 16-byte copies for even word counts, 8-byte ones for odd.
                main = biggest.get("16-byte" if math.ceil(k / 64) % 2 == 0 else "8-byte") or max(
                    biggest.values(), key=lambda lp: lp["bmma"] or lp["popc"])
                p = predict(name, main, max(blocks, 1), m, n, k)
                pred_rows.append([name, label, f"{m}x{n}x{k}", *(f"{p[b] * 1e6:.1f}" for b in BOUNDS), p["bound"],
                                  f"{100 * p['frac']:.0f}%", ""])
    out = [head] + rows
    print_table(out, markdown, sep)
    print()
    print_table([["kernel", "shape", "M x N x K", *(f"{b} us" for b in BOUNDS), "bound",
                  "predicted % of peak", "measured"]] + pred_rows, markdown, sep)
    return 0


def print_table(rows, markdown, sep):
    if markdown:
        print("| " + " | ".join(rows[0]) + " |")
        print("|" + "---|" * len(rows[0]))
        for r in rows[1:]:
            print("| " + " | ".join(r) + " |")
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print(sep.join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables")
    ap.add_argument("files", nargs="*", help="kernel files of kernels/ to report (default: every .cu)")
    args = ap.parse_args(argv)
    return report(args.markdown, args.files)


if __name__ == "__main__":
    sys.exit(main())
