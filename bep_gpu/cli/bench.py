"""bep-bench: measured rates and same-run ratios for the binary GEMM, whole BEP steps, and training memory.

Sections (--sections, comma-separated; default all five):
  gemm    xnor matmul in bit-MAC/s on square and training shapes, beside a dense float GEMM on the same +-1
          matrices (cuBLAS bf16/fp32 through cupy.matmul, bf16 through torch where CuPy has none, on a GPU; BLAS
          float32 on the CPU) and, on the CPU, the popcount-broadcast method the NumPy backend does not use. On a
          GPU both kernels: CUDA cores (fraction of the H200 POPC ceiling) and b1 tensor cores (fraction of the
          b1 ceiling).
  step    one BEP training step (and the epoch it implies) for the paper's MLPs, a large MLP and the paper's RNN
          (BEP-TT, sequential MNIST shape: 28 steps, Kx = Ks = Ky = 1875, batch 100) on random +-1 data: ours vs
          the dense integer implementation (bep_gpu.peers.dense_bep) and the QAT baseline
          (bep_gpu.peers.qat_torch, if torch is installed: the extra [baselines]).
          On a GPU also the MLP step replayed from a CUDA graph (bep-train --cuda-graph).
  memory  training-state bytes per weight and peak memory, ours vs QAT (same cases as step).
  update  the update in its two exact forms, popcount over every sample vs sparse over the samples that selected
          each unit (backend update='popcount' | 'sparse'): all layers' batch_update on one real step's
          selections, and whole steps, for the MLP cases.
  epoch   one real Fashion-MNIST epoch (L = 2, K = 525, batch 100, 50,000 training samples, bep-train's default
          encoding), timed as the epoch loop of bep-train's Trainer and of qat_torch.train_epoch on the same
          encoded samples in the same order (data loading, encoding, evaluation and checkpoints not timed).
          Needs the Fashion-MNIST files (--data-dir, or Debian's dataset-fashion-mnist); without them it writes
          one "skipped" row. --epoch-samples N trains on the first N images instead (no validation split).
Writes OUT/bench.csv and OUT/bench.md and prints the Markdown table.
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import signal
import statistics
import sys
import tempfile
import time

import numpy as np

from .. import bep_rnn
from ..backends import get_backend
from ..bep_mlp import StepRules, reinforcement_thresholds, select_updates, train_step
from ..bits import pack_bits, unpack_bits
from ..checkpoint import atomic_write
from ..errors import UserError
from ..mlp import init_hidden
from ..prototypes import make_prototypes
from ..threads import set_threads
from .common import StrictParser, add_version, run_cli

POPC_CEILING = 134e12  # H200 CUDA-core XOR+POPC bit-MAC/s (profiling/README.md, "H200 ceilings")
B1_CEILING = 4.2e15  # H200 b1 tensor cores, mma ... .and.popc (profiling/README.md, "H200 ceilings"; unmeasured)
QAT_STATE_BYTES = 16.0  # fp32 latent weight + gradient + Adam m and v
OURS_STATE_BYTES = 2.0 + 1 / 8  # int16 hidden weight + its packed visible bit
# The dense integer peer on the CPU runs NumPy's integer matmul (no BLAS, about 2 G MAC/s here): steps of more
# multiply-accumulates than this are skipped (a minute or more per step); steps of more than DENSE_CPU_ONE_CALL
# are timed from one call, without a warm-up call (NumPy has nothing to warm up; each call takes many seconds).
DENSE_CPU_MAX_MACS = 1e11
DENSE_CPU_ONE_CALL = 1e10
FMNIST_VAL_FRACTION = 1 / 6  # 60,000 official training images -> 50,000 train + 10,000 validation (the paper's split)


def _peers(wanted) -> tuple:
    """The peer modules named in wanted (dense, qat), None for the others; the QAT peer needs torch: without
    it, one line says so and its rows are left out."""
    from ..peers import dense_bep

    qat = None
    if "qat" in wanted:
        try:
            from ..peers import qat_torch as qat
        except ImportError as e:
            print(f"bep-bench: no QAT peer rows: it needs torch ({e}); pip install 'bep-gpu[baselines]'",
                  file=sys.stderr, flush=True)
    return (dense_bep if "dense" in wanted else None), qat


def timed(fn, sync, min_time: float, max_reps: int = 50, min_reps: int = 1, warmup: bool = True) -> float:
    """Median seconds of fn() over at least min_reps repetitions lasting about min_time (after one warm-up call)."""
    if warmup:
        fn()
        sync()
    times = []
    start = time.perf_counter()
    while len(times) < max_reps and (len(times) < min_reps or time.perf_counter() - start < min_time):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class Table:
    def __init__(self):
        self.rows = []

    def add(self, section, case, impl, value, unit, ratio=None, note=""):
        self.rows.append({"section": section, "case": case, "impl": impl, "value": f"{value:.4g}", "unit": unit,
                          "ratio": "" if ratio is None else f"{ratio:.3g}", "note": note})

    def write(self, out_dir, header):
        """bench.csv and bench.md in out_dir (each written to a temporary file, then renamed); the Markdown."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(self.rows[0]))
        w.writeheader()
        w.writerows(self.rows)
        lines = [header, "", "| section | case | impl | value | unit | ratio | note |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['section']} | {r['case']} | {r['impl']} | {r['value']} | {r['unit']} | {r['ratio']} | "
                  f"{r['note']} |" for r in self.rows]
        text = "\n".join(lines) + "\n"
        for name, content in (("bench.csv", buf.getvalue()), ("bench.md", text)):
            atomic_write(os.path.join(out_dir, name), lambda f, c=content: f.write(c.encode()))
        return text


def _dense_gemm(xp, a_pm, b_pm, dtype):
    """(a @ b.T as a call, its sync) in dtype on the backend's device; bfloat16 through torch where CuPy has none.
    None when neither can."""
    try:
        fa, fb = xp.asarray(a_pm).astype(dtype), xp.asarray(b_pm).astype(dtype)
        return (lambda: fa @ fb.T), None
    except TypeError:  # a CuPy without bfloat16
        pass
    try:
        import torch
    except ImportError:
        return None
    if xp is np or not torch.cuda.is_available():
        return None
    ta = torch.from_dlpack(xp.asarray(a_pm)).to(torch.bfloat16)
    tb = torch.from_dlpack(xp.asarray(b_pm)).to(torch.bfloat16)
    return (lambda: ta @ tb.T), torch.cuda.synchronize


def bench_gemm(bk, table, sizes, min_time, kernels=None, others=()):
    """kernels: time both CUDA kernels (default: on a GPU; the tests pass True with the emulated backend).
    others: more CPU backends timed beside bk (ratio = this / bk); the peers' ratios are against bk."""
    rng = np.random.default_rng(0)
    on_gpu = bk.name == "cuda" and bk.xp is not np if kernels is None else kernels
    for m, n, k in sizes:
        print(f"bep-bench: gemm {m}x{n}x{k}", file=sys.stderr, flush=True)
        a_pm = rng.choice(np.array([-1, 1], np.int8), size=(m, k))
        b_pm = rng.choice(np.array([-1, 1], np.int8), size=(n, k))
        a, b = bk.asarray(pack_bits(a_pm)), bk.asarray(pack_bits(b_pm))
        case = f"{m}x{n}x{k}"
        if on_gpu:
            ours = m * n * k / timed(lambda: bk.xnor_matmul(a, b, k, impl="cuda_core"), bk.synchronize, min_time)
            table.add("gemm", case, "xnor_matmul CUDA cores (cuda)", ours / 1e9, "G bit-MAC/s", ours / POPC_CEILING,
                      "ratio = fraction of the POPC ceiling")
            try:  # the first call runs the backend's fragment-layout probe; a failing probe is a row, not a crash
                tc = m * n * k / timed(lambda: bk.xnor_matmul(a, b, k, impl="tensor_core"), bk.synchronize, min_time)
                table.add("gemm", case, "xnor_matmul b1 tensor cores (cuda)", tc / 1e9, "G bit-MAC/s",
                          tc / B1_CEILING, "ratio = fraction of the b1 tensor-core ceiling")
            except RuntimeError as e:
                tc = None
                table.add("gemm", case, "xnor_matmul b1 tensor cores (cuda)", float("nan"), "G bit-MAC/s", None,
                          f"unavailable: {e}")
        else:
            ours = m * n * k / timed(lambda: bk.xnor_matmul(a, b, k), bk.synchronize, min_time)
            table.add("gemm", case, f"xnor_matmul ({bk.name})", ours / 1e9, "G bit-MAC/s")
            for ob in others:
                oa, obb = ob.asarray(pack_bits(a_pm)), ob.asarray(pack_bits(b_pm))
                rate = m * n * k / timed(lambda: ob.xnor_matmul(oa, obb, k), ob.synchronize, min_time)
                table.add("gemm", case, f"xnor_matmul ({ob.name})", rate / 1e9, "G bit-MAC/s", rate / ours,
                          f"ratio = this / {bk.name}")
        for dt in (("bfloat16", "float32") if on_gpu else ("float32",)):
            dense = _dense_gemm(bk.xp, a_pm, b_pm, dt)
            if dense is None:
                continue
            call, sync = dense
            rate = m * n * k / timed(call, sync or bk.synchronize, min_time)
            note = f"ratio = {bk.name} / this" if not on_gpu else "ratio = CUDA cores / this" + (
                f"; b1 tensor cores / this = {tc / rate:.3g}" if tc else "")
            table.add("gemm", case, f"{'cuBLAS' if on_gpu else 'BLAS'} {dt} on +-1", rate / 1e9, "MAC/s (G)",
                      ours / rate, note)
        if not on_gpu and m * n * k <= 2**28:
            au, bu = pack_bits(a_pm), pack_bits(b_pm)

            def popcount_broadcast():
                return k - 2 * np.bitwise_count(au[:, None, :] ^ bu[None, :, :]).sum(axis=2, dtype=np.int32)

            rate = m * n * k / timed(popcount_broadcast, bk.synchronize, min_time)
            table.add("gemm", case, "np.bitwise_count broadcast", rate / 1e9, "G bit-MAC/s", ours / rate,
                      f"ratio = {bk.name} / this")


def _step_case(sizes, batch, gamma):
    rng = np.random.default_rng(1)
    shapes = [(sizes[i + 1], sizes[i]) for i in range(len(sizes) - 1)]
    hidden_np = init_hidden(shapes, 8.0, 0)
    protos = make_prototypes(10, sizes[-1], 0, sweeps=2)
    x_pm = rng.choice(np.array([-1, 1], np.int8), size=(batch, sizes[0]))
    y = rng.integers(0, 10, size=batch)
    rules = StepRules.make(sizes, 0.75, 0.2, 32767)
    thresholds = reinforcement_thresholds(sizes[:-1], 0.5, 0.5)
    return hidden_np, protos, x_pm, y, rules, thresholds, [gamma] * len(shapes)


def _dense_row(bk, table, case, macs, t_ours, min_time, call):
    """Time the dense integer peer's step (call()), or a row saying why it was skipped on the CPU."""
    on_cpu = bk.name != "cuda"
    if on_cpu and macs > DENSE_CPU_MAX_MACS:
        table.add("step", case, "dense integer BEP", float("nan"), "ms/step", None,
                  f"skipped on the CPU: {macs:.3g} integer MACs per step and NumPy integer matmul has no BLAS "
                  "(minutes per step)")
        return
    one_call = on_cpu and macs > DENSE_CPU_ONE_CALL
    t = timed(call, bk.synchronize, min_time, warmup=not one_call)
    table.add("step", case, "dense integer BEP", t * 1e3, "ms/step", t / t_ours,
              "ratio = this / ours" + ("; one call, no warm-up" if one_call else ""))


def _qat_rows(bk, table, qat, case, kind, k_in, hidden, batch, epoch_samples, t_ours, seq_len=28):
    """QAT step time on the same shapes (fp32, and bf16 autocast on CUDA), the epoch it implies, peak memory."""
    device = "cuda" if bk.name == "cuda" else "cpu"
    steps = -(-epoch_samples // batch)
    for bf16 in ((False, True) if device == "cuda" else (False,)):
        r = qat.time_qat_step(kind, k_in, hidden, seq_len=seq_len, batch_size=batch, device=device, bf16=bf16,
                              n_samples=min(epoch_samples, max(20 * batch, 2000)))
        label = "QAT torch" + (" bf16" if bf16 else "")
        table.add("step", case, label, r["step_time_s"] * 1e3, "ms/step", r["step_time_s"] / t_ours,
                  "ratio = this / ours; no BN, batch gather included")
        table.add("epoch", case, label, r["step_time_s"] * steps, f"s/epoch ({epoch_samples} samples)",
                  r["step_time_s"] / t_ours)
        if r.get("peak_memory_bytes"):
            table.add("memory", case, label + " peak", r["peak_memory_bytes"] / 2**20, "MiB")


def _device_pool(bk):
    """CuPy's default memory pool on a GPU, else None."""
    if bk.name != "cuda" or bk.xp is np:
        return None
    import cupy

    return cupy.get_default_memory_pool()


def _fresh_pool(bk):
    """Empty the device pool before a case, so that its size right after our steps is our case's peak."""
    pool = _device_pool(bk)
    if pool is not None:
        bk.synchronize()
        pool.free_all_blocks()


def _memory_rows(bk, table, case, n_weights, pool_bytes=None):
    """pool_bytes: the device pool's size read right after our steps, before any peer ran (GPU only)."""
    if pool_bytes is not None:
        table.add("memory", case, "BEP packed peak (pool)", pool_bytes / 2**20, "MiB", None,
                  "CuPy pool after our steps: weights, batch and step temporaries")
    table.add("memory", case, "BEP training state", n_weights * OURS_STATE_BYTES / 2**20, "MiB",
              QAT_STATE_BYTES / OURS_STATE_BYTES, f"{OURS_STATE_BYTES} B/weight; ratio = QAT/ours")
    table.add("memory", case, "QAT training state", n_weights * QAT_STATE_BYTES / 2**20, "MiB", None,
              f"{QAT_STATE_BYTES:g} B/weight (fp32 latent, grad, Adam m, v)")


def _bench_case(bk, table, case, label, step, arrays, min_time, min_reps, batch, epoch_samples, n_weights,
                dense_macs, dense_step, qat_rows, others=()):
    """Rows of one step case: ours (step(bk, hidden, p, x, y, step_number) on the backend's copies of `arrays` =
    (hidden_np, protos, x_pm, y)), the epoch it implies, our device pool, the other backends' steps (ratio = this /
    bk), the dense peer (dense_step(xp, hidden, protos, x, y) on dense copies), QAT (qat_rows(t_ours)) and memory.
    Returns bk's arrays and step time."""
    hidden_np, protos, x_pm, y = arrays
    for ob in others:  # first, so that bk's arrays are the last made (the GPU pool figure below is bk's)
        oh = [ob.asarray(h) for h in hidden_np]
        op, ox, oy = ob.pack(ob.asarray(protos)), ob.pack(ob.asarray(x_pm)), ob.asarray(y)
        t_other = timed(lambda: step(ob, oh, op, ox, oy, 0), ob.synchronize, min_time, min_reps=min_reps)
        table.add("step", case, f"{label} ({ob.name})", t_other * 1e3, "ms/step")
        table.add("epoch", case, f"{label} ({ob.name})", t_other * -(-epoch_samples // batch),
                  f"s/epoch ({epoch_samples} samples)")
    _fresh_pool(bk)
    hidden = [bk.asarray(h) for h in hidden_np]
    p, x, yy = bk.pack(bk.asarray(protos)), bk.pack(bk.asarray(x_pm)), bk.asarray(y)
    counter = [0]

    def ours():
        step(bk, hidden, p, x, yy, counter[0])
        counter[0] += 1

    t_ours = timed(ours, bk.synchronize, min_time, min_reps=min_reps)
    pool = _device_pool(bk)
    pool_bytes = None if pool is None else pool.total_bytes()  # before any peer allocates from the same pool
    table.add("step", case, f"{label} ({bk.name})", t_ours * 1e3, "ms/step")
    table.add("epoch", case, f"{label} ({bk.name})", t_ours * -(-epoch_samples // batch),
              f"s/epoch ({epoch_samples} samples)")
    for row in table.rows[-2 * len(others) - 2:-2]:  # the other backends against bk: this / bk
        mine = t_ours * (1e3 if row["section"] == "step" else -(-epoch_samples // batch))
        row["ratio"], row["note"] = f"{float(row['value']) / mine:.3g}", f"ratio = this / {bk.name}"
    if dense_step is not None:
        xp = bk.xp
        dh = [xp.asarray(h) for h in hidden_np]
        dp, dx, dy = xp.asarray(protos), xp.asarray(x_pm), xp.asarray(y)
        _dense_row(bk, table, case, dense_macs, t_ours, min_time, lambda: dense_step(xp, dh, dp, dx, dy))
    if qat_rows is not None:
        qat_rows(t_ours)
    _memory_rows(bk, table, case, n_weights, pool_bytes)
    return (hidden, p, x, yy), t_ours


def bench_conv_steps(bk, table, min_time, qat, image=(28, 28, 1), specs=((16, 3, 2, 1), (32, 3, 2, 1)), dense=(256,),
                     batch=100, gamma=8, epoch_samples=50000):
    """One BEP-Conv step (the Fashion-MNIST convnet of RESULTS.md) beside the QAT peer's (bep_gpu.peers.qat_conv,
    no BN) on the same shapes."""
    from .. import bep_conv

    geoms = bep_conv.geometries(image, specs)
    sizes = [bep_conv.flat_size(geoms)] + list(dense)
    shapes = [(g.c_out, g.k, g.k, g.c_in) for g in geoms] + [(sizes[i + 1], sizes[i]) for i in range(len(dense))]
    rng = np.random.default_rng(1)
    hidden = [bk.asarray(h) for h in init_hidden(shapes, 8.0, 0)]
    protos = bk.pack(bk.asarray(make_prototypes(10, dense[-1], 0, sweeps=2)))
    x = bk.pack(bk.asarray(rng.choice(np.array([-1, 1], np.int8), size=(batch,) + tuple(image))))
    y = bk.asarray(rng.integers(0, 10, size=batch))
    rules = bep_conv.step_rules(geoms, dense, 0.75, 0.2, 32767)
    thresholds = reinforcement_thresholds([g.fan_in for g in geoms] + sizes[:-1], 0.5, 0.5)
    case = f"convnet {'x'.join(map(str, image))} {','.join(':'.join(map(str, c)) for c in specs)} -> " \
           f"{'-'.join(map(str, dense))} batch {batch}"
    print(f"bep-bench: step {case}", file=sys.stderr, flush=True)
    counter = [0]

    def ours():
        bep_conv.train_step(bk, hidden, geoms, dense, protos, x, y, [gamma] * len(shapes), 0, rules, thresholds, 0,
                            counter[0])
        counter[0] += 1

    t_ours = timed(ours, bk.synchronize, min_time)
    table.add("step", case, f"BEP-Conv packed ({bk.name})", t_ours * 1e3, "ms/step")
    table.add("epoch", case, f"BEP-Conv packed ({bk.name})", t_ours * -(-epoch_samples // batch),
              f"s/epoch ({epoch_samples} samples)")
    if qat is None:
        return
    try:
        from ..peers import qat_conv
    except ImportError:
        return
    r = qat_conv.time_qat_conv_step(image[:2], image[2], specs, dense, batch_size=batch, n_samples=20 * batch,
                                    device="cuda" if bk.name == "cuda" else "cpu")
    table.add("step", case, "QAT torch conv", r["step_time_s"] * 1e3, "ms/step", r["step_time_s"] / t_ours,
              "ratio = this / ours; no BN, batch gather included")
    table.add("epoch", case, "QAT torch conv", r["step_time_s"] * -(-epoch_samples // batch),
              f"s/epoch ({epoch_samples} samples)", r["step_time_s"] / t_ours)


def bench_steps(bk, table, cases, min_time, dense, qat, others=()):
    for name, sizes, batch, gamma, epoch_samples in cases:
        print(f"bep-bench: step {name} {sizes} batch {batch}", file=sys.stderr, flush=True)
        hidden_np, protos, x_pm, y, rules, thresholds, gammas = _step_case(sizes, batch, gamma)
        case = f"{name} {'-'.join(map(str, sizes))} batch {batch}"
        n_weights = sum(a * b for a, b in zip(sizes[1:], sizes[:-1]))
        (hidden, p, x, yy), t_ours = _bench_case(
            bk, table, case, "BEP packed",
            lambda b, h, p_, x_, y_, n: train_step(b, h, sizes, p_, x_, y_, gammas, rules, thresholds, 0, n),
            (hidden_np, protos, x_pm, y), min_time, 1, batch, epoch_samples, n_weights,
            3 * batch * n_weights,  # forward, targets and update: at most three products with every weight
            None if dense is None else lambda xp, h, p_, x_, y_: dense.dense_step(
                xp, h, p_, x_, y_, gammas, rules.trigger_margin, rules.gates, thresholds, rules.clip, 0, 0),
            None if qat is None else lambda t: _qat_rows(bk, table, qat, case, "mlp", sizes[0], sizes[1:], batch,
                                                         epoch_samples, t), others)
        _graph_row(bk, table, case, hidden, sizes, p, x, yy, gammas, rules, thresholds, t_ours, min_time)


class _MLPTask:
    """The `task.step` that GraphedSteps replays: one MLP train_step on given rows (the trainer's MLPTask without
    the data and checkpoint parts)."""

    def __init__(self, bk, hidden, sizes, prototypes, rules):
        self.bk, self.hidden, self.sizes, self.prototypes, self.rules = bk, hidden, sizes, prototypes, rules

    def step(self, x, labels, gammas, thresholds, step):
        return train_step(self.bk, self.hidden, self.sizes, self.prototypes, x, labels, gammas, self.rules,
                          thresholds, 0, step)


def _graph_row(bk, table, case, hidden, sizes, p, x, yy, gammas, rules, thresholds, t_ours, min_time):
    """The same step replayed from a CUDA graph (bep-train --cuda-graph), on a GPU only."""
    if bk.name != "cuda" or bk.xp is np:
        return
    from ..step_graph import GraphedSteps

    counts = bk.xp.zeros(2, dtype=bk.xp.int64)
    graphed = GraphedSteps(bk, _MLPTask(bk, hidden, sizes, p, rules), x, yy, x.shape[0], gammas, thresholds, 0,
                           counts)
    idx = bk.xp.arange(x.shape[0])
    graphed(idx)  # eager first step
    graphed(idx)  # capture, then the first replay
    t = timed(lambda: graphed(idx), bk.synchronize, min_time)
    table.add("step", case, f"BEP packed ({bk.name}, CUDA graph)", t * 1e3, "ms/step", t / t_ours,
              "ratio = this / ours (eager); bep-train --cuda-graph")


def bench_update(bk, table, cases, min_time):
    """The two forms of the update (backend update='popcount' or 'sparse'; the same integers): every layer's
    batch_update on the selections of one real step (random data at the initial weights, where most samples
    trigger), and whole steps. `auto` should be whichever is faster on the hardware."""
    for name, sizes, batch, gamma, _ in cases:
        print(f"bep-bench: update {name} {sizes} batch {batch}", file=sys.stderr, flush=True)
        hidden_np, protos, x_pm, y, rules, thresholds, gammas = _step_case(sizes, batch, gamma)
        case = f"{name} {'-'.join(map(str, sizes))} batch {batch} gamma {gamma}"
        first = {}
        for form in ("popcount", "sparse"):
            fb = bk.variant(update=form)
            hidden = [fb.asarray(h) for h in hidden_np]
            p, x, yy = fb.pack(fb.asarray(protos)), fb.pack(fb.asarray(x_pm)), fb.asarray(y)
            _, updates = select_updates(fb, hidden, sizes, p, x, yy, gammas, rules)
            picks = sum(int(np.bitwise_count(fb.to_numpy(sel)).sum()) for sel, _, _ in updates)  # padding is 0

            def update():
                for h, (sel, t, a) in zip(hidden, updates):
                    fb.batch_update(h, sel, t, a, rules.clip)

            step, fresh = [0], [fb.asarray(h) for h in hidden_np]  # both forms' steps start from the same weights

            def whole():
                train_step(fb, fresh, sizes, p, x, yy, gammas, rules, thresholds, 0, step[0])
                step[0] += 1

            t_upd, t_step = timed(update, fb.synchronize, min_time), timed(whole, fb.synchronize, min_time)
            ref = first.setdefault("t", (t_upd, t_step))
            ratio = None if form == "popcount" else ref[0] / t_upd
            table.add("update", case, f"batch_update {form} ({bk.name}), all layers", t_upd * 1e3, "ms", ratio,
                      (f"{picks} selections in the batch ({picks / sum(sizes[1:]):.3g} samples per unit)"
                       if form == "popcount" else "ratio = popcount / sparse (above 1: sparse is faster)"))
            table.add("update", case, f"whole step, update={form} ({bk.name})", t_step * 1e3, "ms/step",
                      None if form == "popcount" else ref[1] / t_step,
                      "" if form == "popcount" else "ratio = popcount / sparse")


def bench_rnn_steps(bk, table, cases, min_time, dense, qat, others=()):
    """One BEP-TT step (bep_rnn.train_step, as bep-train rnn calls it: all target steps, step masks) with the
    paper's sequential-MNIST settings r 0.5, nu 0.01, p_r 0.5, gamma 15, on random +-1 sequences."""
    for name, (kx, ks, ky), n_steps, batch, gamma, epoch_samples in cases:
        print(f"bep-bench: step {name} T={n_steps} [{kx}, {ks}, {ky}] batch {batch}", file=sys.stderr, flush=True)
        sizes = [kx, ks, ky]
        rng = np.random.default_rng(1)
        hidden_np = init_hidden([(ks, kx), (ks, ks), (ky, ks)], 8.0, 0)
        protos = make_prototypes(10, ky, 0, sweeps=2)
        x_pm = rng.choice(np.array([-1, 1], np.int8), size=(batch, n_steps, kx))
        y = rng.integers(0, 10, size=batch)
        rules = bep_rnn.step_rules(sizes, 0.5, 0.01, 32767)
        thresholds = reinforcement_thresholds([kx, ks, ks], 0.5, 0.5)
        gammas = [gamma, gamma]
        case = f"{name} T={n_steps} {kx}-{ks}-{ky} batch {batch}"
        _bench_case(
            bk, table, case, "BEP-TT packed",
            lambda b, h, p_, x_, y_, n: bep_rnn.train_step(b, h, sizes, p_, x_, y_, gammas, rules, 0, False,
                                                           thresholds, 0, n),
            (hidden_np, protos, x_pm, y), min_time, 3, batch, epoch_samples, ks * kx + ks * ks + ky * ks,
            # forward and update: two products per step with H_xs and H_ss; targets: one with H_ss; readout
            n_steps * batch * (2 * ks * kx + 3 * ks * ks) + 3 * batch * ky * ks,
            None if dense is None else lambda xp, h, p_, x_, y_: dense.dense_rnn_step(
                xp, h, p_, x_, y_, gammas, rules.trigger_margin, rules.gates, thresholds, rules.clip, 0, 0),
            None if qat is None else lambda t: _qat_rows(bk, table, qat, case, "rnn", kx, [ks, ky], batch,
                                                         epoch_samples, t, seq_len=n_steps), others)


def bench_real_epoch(bk, table, qat, data_dir, max_samples, others=()):
    """One real Fashion-MNIST epoch of bep-train's Trainer and one of the QAT baseline, on the same samples (the
    other backends' epochs beside bk's: ratio = this / bk)."""
    from ..config import TrainConfig
    from ..trainer import Trainer

    case = "Fashion-MNIST (real data) L=2 784-525-525 batch 100"
    print(f"bep-bench: epoch {case}", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="bep-bench-") as out:
        cfg = TrainConfig(kind="mlp", dataset="fashion-mnist", data_dir=data_dir, hidden=[525, 525], epochs=1,
                          batch_size=100, seed=0, out=out, quiet=True, distributed="none",
                          val_fraction=FMNIST_VAL_FRACTION if max_samples is None else 0.0, max_train=max_samples)
        try:
            trainer = Trainer(cfg, backend=bk)  # loads, encodes and packs the data: not timed
        except UserError as e:
            table.add("epoch", case, f"BEP trainer ({bk.name})", float("nan"), "s/epoch", None,
                      f"skipped: {e}")
            return
        n = trainer.data.n_train
        unit = f"s/epoch ({n} samples, measured)"
        res = trainer.run()
        t_ours = res["train_time_s"]  # the epoch loop alone (Trainer.run times it apart from evaluation and files)
        table.add("epoch", case, f"BEP trainer ({bk.name})", t_ours, unit, None,
                  f"bep-train's epoch loop (encode {cfg.encode}, gamma0 {cfg.gamma0}, r {cfg.r}, nu {cfg.nu}): "
                  f"shuffle, batch gather, steps, final sync; test acc after it {res['test_accuracy']:.4f}")
        for ob in others:
            with tempfile.TemporaryDirectory(prefix="bep-bench-") as other_out:
                cfg.out = other_out
                other = Trainer(cfg, backend=ob).run()
            table.add("epoch", case, f"BEP trainer ({ob.name})", other["train_time_s"], unit,
                      other["train_time_s"] / t_ours, f"ratio = this / {bk.name}; test acc after it "
                      f"{other['test_accuracy']:.4f}")
        if qat is None:
            return
        import torch

        device = torch.device("cuda" if bk.name == "cuda" else "cpu")
        x_tr, y_tr = trainer.data.train
        x_te, y_te = trainer.data.test
        n_in = trainer.data.n_in

        def tensors(x, y):  # our packed, encoded samples as the QAT baseline's int8 +-1 rows
            return (torch.as_tensor(unpack_bits(bk.to_numpy(x), n_in), device=device),
                    torch.as_tensor(bk.to_numpy(y), device=device))

        (xt, yt), (xe, ye) = tensors(x_tr, y_tr), tensors(x_te, y_te)
        order = np.random.default_rng([int(cfg.seed), 0]).permutation(n)  # the order of our epoch 0
        for bf16 in ((False, True) if device.type == "cuda" else (False,)):
            model, _ = qat.build_model("mlp", n_in, [525, 525], trainer.data.n_classes, bn=True,
                                       readout="prototypes", logit_scale=None, seed=0)
            model.to(device)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            _, _, t_qat, _ = qat.train_epoch(model, opt, xt, yt, cfg.batch_size, order, bf16=bf16, per_step=False)
            acc = qat.evaluate(model, xe, ye, bf16=bf16)
            threads = f", {torch.get_num_threads()} torch threads" if device.type == "cpu" else ", one sync per epoch"
            table.add("epoch", case, "QAT torch" + (" bf16" if bf16 else ""), t_qat, unit, t_qat / t_ours,
                      f"qat_torch.train_epoch (BN, Adam; same samples, order, batch{threads}); ratio = this / ours; "
                      f"test acc after it {acc:.4f}")


def _main(argv):
    p = StrictParser(prog="bep-bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version(p)
    p.add_argument("--backend", default="auto",
                   help="auto, numpy, numba or cuda; several, comma-separated, are timed in one run, ratios against "
                        "the first (e.g. numba,numpy) (default: auto)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for numba, BLAS and torch alike (0: the libraries' defaults)")
    p.add_argument("--sections", default="gemm,step,memory,update,epoch")
    p.add_argument("--quick", action="store_true", help="small shapes only (CI smoke run)")
    p.add_argument("--min-time", type=float, default=0.5, help="seconds of repetitions per measurement")
    p.add_argument("--gemm-sizes", default=None, help="GEMM shapes to time instead of the defaults, e.g. 1024x1024x4096")
    p.add_argument("--peers", default="dense,qat", help="baselines to time beside ours (dense, qat; '' for none)")
    p.add_argument("--cases", default="mlp,rnn", help="step/memory cases to run: mlp, rnn, conv (default: mlp,rnn)")
    p.add_argument("--data-dir", default=None, help="directory holding the Fashion-MNIST IDX files (epoch section)")
    p.add_argument("--epoch-samples", type=int, default=None,
                   help="epoch section: train on the first N training images, no validation split (default: the "
                        "50,000 of the 50k/10k split; --quick: 2000)")
    p.add_argument("--out", default="bench")
    args = p.parse_args(argv)
    sections = set(args.sections.split(","))
    if not sections <= {"gemm", "step", "memory", "update", "epoch"}:
        raise UserError(f"--sections takes gemm, step, memory, update, epoch; got {args.sections}")
    kinds = set(filter(None, args.cases.split(",")))
    if not kinds or not kinds <= {"mlp", "rnn", "conv"}:
        raise UserError(f"--cases takes mlp, rnn, conv or a comma list of them; got {args.cases!r}")
    if args.epoch_samples is not None and args.epoch_samples < 1:
        raise UserError(f"--epoch-samples must be at least 1, got {args.epoch_samples}")
    try:  # before minutes of measuring, not after them
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create --out {args.out} ({e.strerror}); choose another directory") from None
    if not os.access(args.out, os.W_OK):
        raise UserError(f"--out {args.out} is not writable; choose another directory")
    names = [n for n in args.backend.split(",") if n]
    if not names or len(set(names)) != len(names):
        raise UserError(f"--backend takes one or more distinct names (auto, numpy, numba, cuda), got {args.backend!r}")
    set_threads(args.threads)
    bks = [get_backend(n) for n in names]
    bk, others = bks[0], bks[1:]
    if any(b.name == "cuda" for b in others) or (others and bk.name == "cuda"):
        raise UserError("--backend: several backends are compared on the CPU only; time cuda alone")
    gpu = bk.name == "cuda"
    if args.quick:
        gemm = [(256, 256, 1024), (100, 525, 784)]
        cases = [("paper MLP L=2", [784, 525, 525], 100, 105, 50000)]
        rnn_cases = [("small RNN", (100, 105, 105), 28, 20, 15, 50000)]
        epoch_samples = args.epoch_samples or 2000
    else:
        squares = [1024, 2048, 4096, 8192, 16384] if gpu else [1024, 2048]
        gemm = [(s, s, s) for s in squares] + [(b, w, k) for b in (100, 1024, 4096) for w, k in
                                               ((525, 784), (4096, 4096), (8192, 8192)) if gpu or b * w * k <= 2**34]
        cases = [("paper MLP L=2", [784, 525, 525], 100, 105, 50000),
                 ("paper MLP L=3", [784, 525, 525, 525], 100, 105, 50000),
                 ("large MLP", [4096] * 5, 1024, 128, 50000)]
        # The paper's sequential-MNIST RNN (Ks = Ky = 1875, batch 100; inputs expanded to Kx = 1875 as our
        # `--expand 1875`), and the CPU-sized one of RESULTS.md (`--expand 525 --hidden 525`).
        rnn_cases = [("paper RNN seq. MNIST", (1875, 1875, 1875), 28, 100, 15, 50000),
                     ("CPU-sized RNN", (525, 525, 525), 28, 100, 15, 50000)]
        epoch_samples = args.epoch_samples
    if args.gemm_sizes:
        try:
            gemm = [tuple(int(v) for v in s.split("x")) for s in args.gemm_sizes.split(",")]
        except ValueError:
            gemm = []
        if not gemm or any(len(s) != 3 or min(s) <= 0 for s in gemm):
            raise UserError(f"--gemm-sizes takes MxNxK[,MxNxK...] with positive sizes, got {args.gemm_sizes!r}")
    peers = set(filter(None, args.peers.split(",")))
    dense, qat = _peers(peers) if sections & {"step", "memory", "epoch"} else (None, None)
    if qat is not None and args.threads:
        import torch

        torch.set_num_threads(args.threads)  # the same threads as ours
    table = Table()
    header = (f"bep-bench on {', '.join(f'{b.name} ({b.device})' for b in bks)}, {time.strftime('%Y-%m-%d')}, "
              f"{_threads_line(args.threads)}, `bep-bench {' '.join(argv or [])}`")
    done, text = False, ""
    # `timeout` and job schedulers stop with SIGTERM: turn it into an interruption, so the rows measured are kept
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        if "gemm" in sections:
            bench_gemm(bk, table, gemm, args.min_time, others=others)
        if sections & {"step", "memory"}:
            if "mlp" in kinds:
                bench_steps(bk, table, cases, args.min_time, dense, qat, others)
            if "rnn" in kinds:
                bench_rnn_steps(bk, table, rnn_cases, args.min_time, dense, qat, others)
            if "conv" in kinds and "step" in sections:
                quick = dict(image=(14, 14, 1), batch=20) if args.quick else {}
                bench_conv_steps(bk, table, args.min_time, qat, **quick)
                for ob in others:  # the same step on the other backends (the QAT row is bk's)
                    bench_conv_steps(ob, table, args.min_time, None, **quick)
        if "update" in sections and "mlp" in kinds:
            for b in bks:
                bench_update(b, table, cases, args.min_time)
        if "epoch" in sections:
            bench_real_epoch(bk, table, qat, args.data_dir, epoch_samples, others)
        done = True
    finally:  # an interrupted run still leaves the rows it measured
        signal.signal(signal.SIGTERM, previous)
        if table.rows:
            text = table.write(args.out, header + ("" if done else " (INCOMPLETE: stopped early)"))
    print(text)


def _threads_line(threads: int) -> str:
    """The thread counts every CPU path ran with, for the table's header."""
    parts = []
    try:
        import numba

        parts.append(f"numba {numba.get_num_threads()} threads")
    except ImportError:
        pass
    from threadpoolctl import threadpool_info

    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    if blas:
        parts.append(f"BLAS {blas[0]['num_threads']} threads")
    if "torch" in sys.modules:
        parts.append(f"torch {sys.modules['torch'].get_num_threads()} threads")
    return ", ".join(parts) if parts else f"--threads {threads}"


def _stop(signum, frame):
    raise KeyboardInterrupt(f"stopped by signal {signum}; the rows measured so far are written")


_main.prog = "bep-bench"


def main(argv=None) -> int:
    return run_cli(_main, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
