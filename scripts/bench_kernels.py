"""Kernel benchmark on one GPU: xnor_matmul bit-MACs/s on CUDA cores and on the b1 tensor cores (xnor_matmul_tc,
with its fraction of the ~4.2 P bit-MAC/s H200 b1 ceiling) against cuBLAS (cupy.matmul fp32/fp16, torch bf16) on
the same +-1 matrices, plus the other BEP primitives at a training shape. Prints Markdown, writes CSV.

    PYTHONPATH=. python scripts/bench_kernels.py [--out DIR] [--quick]

Times are medians of CUDA-event-timed launches after warm-up; inputs larger than L2 are not rotated, so the
small shapes are L2-resident (as they are inside a training step).
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

# Square GEMMs, then BEP shapes: batch x layer width x fan-in (forward of a 784-525-525 MLP, evaluation batch).
GEMM_SHAPES = [(1024, 1024, 1024), (2048, 2048, 2048), (4096, 4096, 4096), (8192, 8192, 8192),
               (1024, 525, 784), (1024, 525, 525), (10000, 525, 784)]
QUICK_SHAPES = [(1024, 1024, 1024), (1024, 525, 784)]


def time_ms(cupy, fn, repeat: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop))
    times.sort()
    return times[len(times) // 2]


def torch_bf16_ms(cupy, a_pm1, b_pm1, repeat: int):
    """bf16 cuBLAS through torch (CuPy has no bfloat16); None when torch or its CUDA build is missing."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    ta = torch.from_dlpack(a_pm1).to(torch.bfloat16)
    tb = torch.from_dlpack(b_pm1).to(torch.bfloat16)
    torch.cuda.synchronize()

    def run():
        return ta @ tb.T

    for _ in range(3):
        run()
    times = []
    for _ in range(repeat):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        run()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
    times.sort()
    return times[len(times) // 2]


def bench_gemm(cupy, bk, shapes, repeat):
    """Yields one row per shape as it is measured."""
    for m, n, k in shapes:
        cupy.random.seed(m + n + k)
        # The same +-1 matrices for every contender: float32 on the device, packed by the backend's pack kernel.
        a32 = cupy.where(cupy.random.random((m, k)) < 0.5, 1, -1).astype(cupy.float32)
        b32 = cupy.where(cupy.random.random((n, k)) < 0.5, 1, -1).astype(cupy.float32)
        a_bits, b_bits = bk.pack(a32), bk.pack(b32)
        macs = m * n * k
        row = {"m": m, "n": n, "k": k}
        row["xnor_ms"] = time_ms(cupy, lambda: bk.xnor_matmul(a_bits, b_bits, k, impl="cuda_core"), repeat)
        try:  # the first call runs the backend's layout probe; a failure is reported, not fatal to the benchmark
            row["tc_ms"] = time_ms(cupy, lambda: bk.xnor_matmul(a_bits, b_bits, k, impl="tensor_core"), repeat)
        except RuntimeError as e:
            print(f"tensor-core xnor_matmul unavailable: {e}", file=sys.stderr)
            row["tc_ms"] = None
        row["fp32_ms"] = time_ms(cupy, lambda: cupy.matmul(a32, b32.T), repeat)
        a16, b16 = a32.astype(cupy.float16), b32.astype(cupy.float16)
        row["fp16_ms"] = time_ms(cupy, lambda: cupy.matmul(a16, b16.T), repeat)
        row["bf16_ms"] = torch_bf16_ms(cupy, a32, b32, repeat)
        for key in ("xnor", "tc", "fp32", "fp16", "bf16"):
            ms = row[f"{key}_ms"]
            row[f"{key}_tmacs"] = None if ms is None else macs / (ms * 1e-3) / 1e12
        yield row
        del a32, b32, a16, b16, a_bits, b_bits
        cupy.get_default_memory_pool().free_all_blocks()


def primitive_operands(bk, batch, k_out, k_in):
    """Random operands of every BEP primitive at one training-layer shape (batch x K_l x K_{l-1}), on bk's device
    (shared with profiling/kernel_workload.py)."""
    import numpy as np

    from bep_gpu import bits

    gen = np.random.default_rng(0)

    def rb(r, n):
        return bk.asarray(bits.pack_bits(gen.choice([-1, 1], size=(r, n)).astype(np.int8)))

    o = {"x": rb(batch, k_in), "w": rb(k_out, k_in), "t": rb(batch, k_out),
         "h": bk.asarray(gen.integers(-100, 100, size=(k_out, k_in)).astype(np.int16))}
    o["z"] = bk.xnor_matmul(o["x"], o["w"], k_in)
    o["g"] = bk.gate_pack(o["z"], k_in // 4)
    o["wt"] = bk.transpose_bits(o["w"], k_out, k_in)
    o["score"] = bk.xp.abs(o["z"])
    o["sel"] = bk.group_select(o["score"], o["t"], 5)
    o["a"] = bk.pack(o["z"])  # the layer's output bits
    o["labels"] = bk.asarray(gen.integers(0, k_out, size=batch))
    o["row_mask"] = bk.trigger(o["z"], o["labels"], k_out // 4)[1]
    o["step"] = bk.asarray(np.array([7], dtype=np.int64))
    o["w_rec"] = rb(k_out, k_out)  # a recurrent cell of K_l units on K_{l-1} inputs
    return o


def conv_calls(bk, n, hw=14, c_in=32, c_out=64, k=3):
    """{name: call} of the conv primitives of one 3x3, stride 1, padding 1 layer on n samples of hw x hw x c_in."""
    import numpy as np

    from bep_gpu import bits

    gen = np.random.default_rng(1)
    rows, fan_in = n * hw * hw, k * k * c_in
    x = bk.asarray(bits.pack_bits(gen.choice([-1, 1], size=(n, hw, hw, c_in)).astype(np.int8)))
    t, g, a = (bk.asarray(bits.pack_bits(gen.choice([-1, 1], size=(rows, c_out)).astype(np.int8))) for _ in range(3))
    z = bk.asarray(gen.integers(-fan_in, fan_in, size=(rows, c_out)).astype(np.int32))
    wt = bk.asarray(bits.pack_bits(gen.choice([-1, 1], size=(fan_in, c_out)).astype(np.int8)))
    sums = bk.gated_transposed_sum(t, g, wt).reshape(n, hw, hw, fan_in)
    row_mask = bk.asarray(np.full((n, 1), ~np.uint64(0)))
    shape = f"{n}x{hw}x{hw}x{c_in} -> {c_out}, k={k}"
    return {f"conv im2col ({shape})": lambda: bk.im2col(x, c_in, k, k, 1, 1),
            f"conv gated_transposed_sum ({shape})": lambda: bk.gated_transposed_sum(t, g, wt),
            f"conv col2im_sign ({shape})": lambda: bk.col2im_sign(sums, hw, hw, c_in, k, k, 1, 1),
            f"conv_select_wrong tile 4, gamma 8 ({shape})":
                lambda: bk.conv_select_wrong(z, a, t, row_mask, hw, hw, 4, 8)}


def primitive_calls(bk, batch=1024, k_out=525, k_in=784):
    """{name: call} of every BEP primitive at one training-layer shape (batch x K_l x K_{l-1}): each kernel of
    kernels/*.cu with both xnor_matmul implementations and both update forms, on bk's device (shared with
    profiling/kernel_workload.py, whose NVTX ranges take these names)."""
    o = primitive_operands(bk, batch, k_out, k_in)
    x, w, t, h, z, g, wt, score, sel = (o[k] for k in ("x", "w", "t", "h", "z", "g", "wt", "score", "sel"))
    popcount, sparse = bk.variant(matmul="cuda_core", update="popcount"), bk.variant(update="sparse")
    tc_popcount = bk.variant(matmul="tensor_core", update="popcount")
    cuda_core = bk.variant(matmul="cuda_core")
    half = x.shape[0] // 2

    def recurrence(b, gate=None):  # the batch's first 2 x half rows as two steps of half samples
        return b.sign_recurrence(x[:2 * half].reshape(2, half, -1), w, k_in, o["w_rec"], o["a"][:half], gate=gate)

    calls = {
        "xnor_matmul": lambda: bk.xnor_matmul(x, w, k_in, impl="cuda_core"),
        "xnor_matmul tensor cores": lambda: bk.xnor_matmul(x, w, k_in, impl="tensor_core"),
        "xnor_matmul + pack (unfused forward layer)": lambda: bk.pack(bk.xnor_matmul(x, w, k_in, impl="cuda_core")),
        "xnor_matmul_sign (fused forward layer)": lambda: bk.xnor_matmul_sign(x, w, k_in, impl="cuda_core"),
        "xnor_matmul_sign tensor cores": lambda: bk.xnor_matmul_sign(x, w, k_in, impl="tensor_core"),
        "xnor_matmul_sign gate= (forward layer + gate bits)":
            lambda: bk.xnor_matmul_sign(x, w, k_in, gate=k_in // 4, impl="cuda_core"),
        "xnor_matmul_sign gate= tensor cores":
            lambda: bk.xnor_matmul_sign(x, w, k_in, gate=k_in // 4, impl="tensor_core"),
        "xnor_matmul_sign add= (recurrent step)": lambda: bk.xnor_matmul_sign(x, w, k_in, add=z, impl="cuda_core"),
        "xnor_matmul_sign add= tensor cores": lambda: bk.xnor_matmul_sign(x, w, k_in, add=z, impl="tensor_core"),
        "sign_recurrence, 2 steps (per step: both products and signs in one kernel)": lambda: recurrence(cuda_core),
        "sign_recurrence, 2 steps, with gate bits": lambda: recurrence(cuda_core, k_in // 4),
        "sign_recurrence, 2 steps, tensor cores": lambda: recurrence(tc_popcount),
        "sign_recurrence, 2 steps, with gate bits, tensor cores": lambda: recurrence(tc_popcount, k_in // 4),
        "pack int32 z": lambda: bk.pack(z),
        "pack int16 H": lambda: bk.pack(h),
        "pack_both int16 H (W and W^T in one kernel)": lambda: bk.pack_both(h),
        "gate_pack": lambda: bk.gate_pack(z, k_in // 4),
        "transpose_bits W": lambda: bk.transpose_bits(w, k_out, k_in),
        "gated_transposed_product": lambda: cuda_core.gated_transposed_product(t, g, wt),
        "gated_transposed_product tensor cores": lambda: tc_popcount.gated_transposed_product(t, g, wt),
        "trigger (logits = z)": lambda: bk.trigger(z, o["labels"], k_out // 4),
        "group_select gamma=5": lambda: bk.group_select(score, t, 5),
        "group_select gamma=K_l": lambda: bk.group_select(score, t, k_out),
        "select_wrong gamma=5 (fused masks)": lambda: bk.select_wrong(z, o["a"], t, o["row_mask"], 5),
        "batch_update popcount (update_operands + kernel)": lambda: popcount.batch_update(h, sel, t, x, 32767),
        "batch_update sparse (update_operands + kernel)": lambda: sparse.batch_update(h, sel, t, x, 32767),
        "batch_update popcount tensor cores (update_operands with row counts + kernel)":
            lambda: tc_popcount.batch_update(h, sel, t, x, 32767),
        "batch_update_reinforce popcount (reinforcement in the update's store)":
            lambda: popcount.batch_update_reinforce(h, sel, t, x, 32767, 2**28, 1, 1, 0, 0),
        "batch_update_reinforce popcount tensor cores":
            lambda: tc_popcount.batch_update_reinforce(h, sel, t, x, 32767, 2**28, 1, 1, 0, 0),
        "update_delta popcount (data-parallel sum)": lambda: popcount.update_delta(sel, t, x, k_out, k_in),
        "update_delta popcount tensor cores": lambda: tc_popcount.update_delta(sel, t, x, k_out, k_in),
        "update_delta sparse (data-parallel sum)": lambda: sparse.update_delta(sel, t, x, k_out, k_in),
        "reinforce": lambda: bk.reinforce(h, 2**28, 1, 1, 0, 0, 32767),
        "reinforce, step on the device (CUDA graphs)":
            lambda: bk.reinforce(h, 2**28, 1, 1, o["step"], 0, 32767),
        "int_matmul": lambda: bk.int_matmul(x, h),
    }
    calls.update(conv_calls(bk, max(1, batch // 196)))
    try:  # the tensor-core kernels' layout probe has never met hardware: a refusal drops them, not the benchmark
        bk.xnor_matmul(x, w, k_in, impl="tensor_core")
    except RuntimeError as e:
        print(f"tensor-core kernels left out: {e}", file=sys.stderr)
        calls = {name: fn for name, fn in calls.items() if "tensor cores" not in name}
    return calls


def bench_primitives(cupy, bk, repeat, batch=1024, k_out=525, k_in=784):
    """Each BEP primitive once at a training-layer shape (batch x K_l x K_{l-1}); yields a row per primitive."""
    for name, fn in primitive_calls(bk, batch, k_out, k_in).items():
        yield {"primitive": name, "shape": f"{batch}x{k_out}x{k_in}", "ms": time_ms(cupy, fn, repeat)}


class CsvRows:
    """A CSV file written row by row (flushed), so a run stopped by a timeout keeps every row it measured."""

    def __init__(self, path: Path):
        self.f, self.w = open(path, "w", newline=""), None

    def add(self, row: dict) -> None:
        if self.w is None:
            self.w = csv.DictWriter(self.f, fieldnames=list(row))
            self.w.writeheader()
        self.w.writerow(row)
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def fmt(v, spec=".1f"):
    return "n/a" if v is None else format(v, spec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT") or "./out", help="directory for the CSV files")
    ap.add_argument("--repeat", type=int, default=15, help="timed launches per measurement (median reported)")
    ap.add_argument("--quick", action="store_true", help="two GEMM shapes only")
    args = ap.parse_args(argv)

    import cupy

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bep_gpu.backends.cuda_backend import CudaBackend
    from bep_gpu.cli.bench import B1_CEILING

    bk = CudaBackend()
    print(f"# bench_kernels on {bk.device}\n")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    print("| M x N x K | xnor ms | xnor T bit-MAC/s | tc ms | tc T bit-MAC/s | tc / b1 peak | fp32 T MAC/s "
          "| fp16 T MAC/s | bf16 T MAC/s | xnor / bf16 | tc / bf16 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    gemm_csv = CsvRows(out / "bench_xnor_matmul.csv")
    for r in bench_gemm(cupy, bk, QUICK_SHAPES if args.quick else GEMM_SHAPES, args.repeat):
        gemm_csv.add(r)
        ratio = None if r["bf16_ms"] is None else r["bf16_ms"] / r["xnor_ms"]
        tc_ratio = None if r["bf16_ms"] is None or r["tc_ms"] is None else r["bf16_ms"] / r["tc_ms"]
        tc_frac = None if r["tc_tmacs"] is None else r["tc_tmacs"] * 1e12 / B1_CEILING
        print(f"| {r['m']}x{r['n']}x{r['k']} | {r['xnor_ms']:.3f} | {r['xnor_tmacs']:.1f} | {fmt(r['tc_ms'], '.3f')} "
              f"| {fmt(r['tc_tmacs'])} | {fmt(tc_frac, '.1%')} | {fmt(r['fp32_tmacs'])} | {fmt(r['fp16_tmacs'])} "
              f"| {fmt(r['bf16_tmacs'])} | {fmt(ratio, '.2f')} | {fmt(tc_ratio, '.2f')} |")
    gemm_csv.close()

    print("\n| primitive | shape (batch x K_l x K_l-1) | ms |\n|---|---|---|")
    prim_csv = CsvRows(out / "bench_primitives.csv")
    for p in bench_primitives(cupy, bk, args.repeat):
        prim_csv.add(p)
        print(f"| {p['primitive']} | {p['shape']} | {p['ms']:.4f} |")
    prim_csv.close()
    print(f"\nCSV written to {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
